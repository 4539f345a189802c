"""SIGTERM under continuous load loses nothing, in either mode (issue 16.4, reliability row 2).

A real ``pubquiz-engine serve`` process; players answer in a loop (each answer a new rid and a
new value, one every few milliseconds) and keep answering while SIGTERM arrives, until the
engine refuses them (``shutting_down``, retryable) or closes them (1012). Then:

- the process exits 0;
- every acked answer is in the database (``fast`` acks included: intake stopped before the
  drain, so each of them was in the queue the drain emptied), and each player's last acked
  answer is the one the database holds last for them;
- nothing was refused but with ``shutting_down`` (or ``busy``), both retryable;
- without Redis the session is recorded ``interrupted`` with its end time (nobody will carry
  it on, issue 16.6); with Redis it stays ``live``, and a second node resumes it from the final
  snapshot with every player's last acked answer in place.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import trio
from engine_fixtures import SHORT_QUIZ
from faultkit import serve_process, sqlite_file
from trio_websocket import ConnectionClosed

from pubquiz_engine.client import Client, ClientClosed, open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.store import open_store

KEY = "sigterm-operator-key"
PLAYERS = min(int(os.environ.get("PUBQUIZ_FAULT_PLAYERS", "200")), 40)
#: Answers acked in all before the signal is sent (the load is well under way by then).
SIGNAL_AFTER = 300
#: Each player's loop ends by itself after this many answers (a bound, never reached: the
#: stop ends it first, which the test checks).
MAX_ANSWERS = 5_000
DOORS = ("--operator-key", KEY, "--join-rate", "10000", "--join-burst", "10000",
         "--message-rate", "10000", "--message-burst", "10000")


@pytest.mark.parametrize("ack_mode", ["fast", "durable"])
@pytest.mark.parametrize("redis", [False, pytest.param(
    True, marks=[pytest.mark.postgres, pytest.mark.redis])], ids=["sqlite", "postgres+redis"])
async def test_sigterm_under_continuous_load_loses_no_acked_answer(
        tmp_path: Path, request: pytest.FixtureRequest, ack_mode: str, redis: bool) -> None:
    if redis:
        database = request.getfixturevalue("postgres_url")
        extra: tuple[str, ...] = (
            "--database-url", database, "--redis-url", request.getfixturevalue("redis_url"),
            "--redis-prefix", request.getfixturevalue("redis_prefix"))
    else:
        database = sqlite_file(tmp_path)
        extra = ()
    args = ("--data-dir", str(tmp_path), "--ack-mode", ack_mode, *DOORS, *extra)
    acked: list[tuple[int, int, int]] = []  # (participant, rid, value), in ack order
    endings: dict[str, int] = {}
    signalled = trio.Event()
    with trio.fail_after(120):
        async with serve_process(*args, "--node-id", "first") as engine:
            async with open_client(engine.url) as operator:
                created = await operator.create_session(
                    KEY, quiz=SHORT_QUIZ, mode="solo",
                    options={"close_when_all_answered": False})
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(engine.url))
                await host.host(created.code, created.host_token)
                players = [await stack.enter_async_context(open_client(engine.url))
                           for _ in range(PLAYERS)]
                async with trio.open_nursery() as nursery:
                    for i, client in enumerate(players):
                        nursery.start_soon(client.join, created.code, f"P{i:02}")
                await host.request(m.Start)
                q = (await players[-1].next_event(m.Question, timeout=30)).q
                tokens = {c.welcome.participant: c.token for c in players
                          if c.welcome is not None and c.welcome.participant is not None}

                async def play(client: Client) -> None:
                    assert client.welcome is not None and client.welcome.participant
                    pid = client.welcome.participant
                    for n in range(MAX_ANSWERS):
                        value = (pid + n) % 3
                        try:
                            reply = await client.request(m.Answer, q=q, value=value)
                        except RemoteError as exc:
                            endings[str(exc.code)] = endings.get(str(exc.code), 0) + 1
                            assert exc.retryable, exc
                            if exc.code is ErrorCode.SHUTTING_DOWN:
                                return  # the engine closes this connection (1012) now
                            continue
                        except (ClientClosed, ConnectionClosed):
                            endings["closed"] = endings.get("closed", 0) + 1
                            return
                        assert isinstance(reply, m.AnswerAck) and reply.q == q
                        acked.append((pid, reply.rid, value))
                        if len(acked) == SIGNAL_AFTER:
                            signalled.set()
                        await trio.sleep(0.005)  # pacing: a steady stream, not a flood
                    endings["gave up"] = endings.get("gave up", 0) + 1

                async with trio.open_nursery() as nursery:
                    for client in players:
                        nursery.start_soon(play, client)
                    await signalled.wait()
                    engine.sigterm()
                    signalled_with = len(acked)
                with trio.fail_after(60):
                    assert await engine.process.wait() == 0

        # Every player was still answering when the stop reached it: continuous load.
        assert "gave up" not in endings
        assert endings.get("closed", 0) + endings.get(str(ErrorCode.SHUTTING_DOWN), 0) == PLAYERS
        assert set(endings) <= {"closed", str(ErrorCode.SHUTTING_DOWN), str(ErrorCode.BUSY)}
        store = await open_store(database)
        try:
            results = await store.session_results(created.code)
            row = await store.load_session(created.code)
        finally:
            await store.aclose()
        stored = {(a.participant_id, a.request_id): a for a in results.answers}
        missing = [key for key in ((pid, rid) for pid, rid, _ in acked) if key not in stored]
        assert not missing, f"{len(missing)} acked answers lost, e.g. {missing[:5]}"
        assert all(stored[(pid, rid)].value == value for pid, rid, value in acked)
        last_acked = {pid: value for pid, _rid, value in acked}
        last_stored = {a.participant_id: a.value
                       for a in sorted(results.answers, key=lambda a: a.seq)}
        assert last_stored == last_acked
        assert row is not None
        if redis:
            assert (row.status, row.ended_at) == ("live", None)  # another node carries it on
            async with serve_process(*args, "--node-id", "second") as second:
                pid, token = next(iter(tokens.items()))
                assert token is not None
                async with contextlib.AsyncExitStack() as phones:
                    for attempt in range(50):  # with back-off on a retryable refusal
                        phone = await phones.enter_async_context(open_client(second.url))
                        try:
                            welcome = await phone.resume(token, 0)
                            break
                        except RemoteError as exc:
                            assert exc.retryable, exc
                        await trio.sleep(0.05 * (attempt + 1))
                    else:
                        raise AssertionError("the second node never resumed the session")
                    assert welcome.replay == "state"
                    state = await phone.next_event(m.State)
                    assert state.state["you"]["answer"] == last_acked[pid]
                second.sigterm()
                assert await second.process.wait() == 0
        else:
            assert row.status == "interrupted" and row.ended_at is not None
    print(f"\nSIGTERM under load ({ack_mode}, {'PG + Redis' if redis else 'SQLite'}): "
          f"{PLAYERS} players, signal after {signalled_with} acks, {len(acked)} acked in all, "
          f"{len(stored)} stored, 0 acked lost; endings {endings}")
