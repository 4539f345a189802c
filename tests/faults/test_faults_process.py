"""Real engine processes killed and stopped mid-question (reliability rows 1 and 2).

- kill -9 of a single engine (SQLite, no Redis, ``durable``) while answers are in flight:
  after a restart on the same database file every acked answer is stored exactly once. The
  session itself is gone (without Redis nothing holds its live state), and a client learns it
  plainly: ``resume`` -> ``bad_token``, ``join`` -> ``bad_code``.
- kill -9 of an engine with PostgreSQL + Redis, restarted: the session is taken over from its
  snapshot, every player resumes, and each *resends* its answer with the same ``rid`` (what a
  phone does when it never saw the ack): acked again, stored once.
- SIGTERM mid-question: exit (code 0, members told 1012) well inside ``--drain-timeout``; with
  the database path cut the drain cannot finish, and the process still exits inside
  ``drain_timeout`` + the engine's stop margin (what systemd's TimeoutStopSec must exceed).

``PUBQUIZ_FAULT_PLAYERS`` sets the number of players (default 200).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import trio
from engine_fixtures import SHORT_QUIZ
from faultkit import serve_process, sqlite_file
from proxykit import FaultProxy
from trio_websocket import ConnectionClosed

from pubquiz_engine.client import Client, ClientClosed, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.engine import STOP_MARGIN
from pubquiz_engine.store import open_store

KEY = "faults-operator-key"
PLAYERS = int(os.environ.get("PUBQUIZ_FAULT_PLAYERS", "200"))
ANSWER_RID = 500  # every player's answer carries this rid: the idempotency key of a resend
OPEN_DOORS = ("--operator-key", KEY, "--join-rate", "10000", "--join-burst", "10000",
              "--max-connections-per-address", "5000")


async def _stored(url: str, code: str) -> list[tuple[int, int]]:
    store = await open_store(url)
    try:
        results = await store.session_results(code)
    finally:
        await store.aclose()
    return sorted((a.participant_id, a.question) for a in results.answers)


async def _session(url: str) -> m.SessionCreated:
    async with open_client(url) as operator:
        return await operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo")


async def _open_players(stack: contextlib.AsyncExitStack, url: str, n: int) -> list[Client]:
    # Opened in the caller's task: each connection is a nursery that must close there.
    return [await stack.enter_async_context(open_client(url)) for _ in range(n)]


async def _join_and_start(host: Client, players: list[Client], code: str) -> int:
    async with trio.open_nursery() as nursery:
        for i, client in enumerate(players):
            nursery.start_soon(client.join, code, f"P{i:03}")
    await host.request(m.Start)
    question = await players[-1].next_event(m.Question, timeout=30)
    return question.q


async def _answer(client: Client, q: int, value: int) -> None:
    """Answer with the fixed rid and wait for its ack (a reply to a rid the client did not
    allocate arrives as an event)."""
    await client.send(m.Answer(rid=ANSWER_RID, q=q, value=value))
    while True:
        event = await client.next_event(timeout=30)
        if isinstance(event, m.AnswerAck) and event.rid == ANSWER_RID:
            return
        if isinstance(event, m.ErrorReply) and event.rid == ANSWER_RID:
            raise RemoteError(ErrorCode(event.code), event.message)


async def test_kill_9_of_a_single_engine_loses_no_acked_answer(tmp_path: Path) -> None:
    database = sqlite_file(tmp_path)
    acked: set[int] = set()
    with trio.fail_after(120):
        async with serve_process("--data-dir", str(tmp_path), *OPEN_DOORS) as engine:
            created = await _session(engine.url)
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(engine.url))
                await host.host(created.code, created.host_token)
                players = await _open_players(stack, engine.url, PLAYERS)
                q = await _join_and_start(host, players, created.code)
                tokens = [(c.token, c.welcome.participant if c.welcome else None)
                          for c in players]
                half = trio.Event()

                async def answer(i: int, client: Client) -> None:
                    # A stream of answers (one every 5 ms), so that the kill at half way finds
                    # some acked, some committed but not yet acked, some not yet sent.
                    await trio.sleep(i * 0.005)
                    with contextlib.suppress(ClientClosed, ConnectionClosed, trio.TooSlowError):
                        await _answer(client, q, 0)
                        assert client.welcome is not None and client.welcome.participant
                        acked.add(client.welcome.participant)
                        if len(acked) >= PLAYERS // 2:
                            half.set()

                async with trio.open_nursery() as nursery:
                    for i, client in enumerate(players):
                        nursery.start_soon(answer, i, client)
                    await half.wait()
                    engine.kill_9()  # mid-question, with answers still in flight
                    await engine.process.wait()
                killed_with = len(acked)

        # The same engine again, on the same database file.
        async with serve_process("--data-dir", str(tmp_path), *OPEN_DOORS) as engine:
            stored = await _stored(database, created.code)
            assert len(stored) == len(set(stored))  # nothing twice
            assert {(pid, q) for pid in acked} <= set(stored)  # every acked answer
            # What a phone sees now: its session is gone, in plain words.
            token, _pid = tokens[0]
            assert token is not None
            async with open_client(engine.url) as phone:
                with pytest.raises(RemoteError) as resumed:
                    await phone.resume(token, 0)
                assert resumed.value.code is ErrorCode.BAD_TOKEN
                with pytest.raises(RemoteError) as joined:
                    await phone.join(created.code, "Back again")
                assert joined.value.code is ErrorCode.BAD_CODE
                with pytest.raises(RemoteError) as answered:
                    await phone.request(m.Answer, q=q, value=0)
                assert answered.value.code is ErrorCode.NOT_JOINED
    print(f"\nkill -9 single engine: {killed_with} of {PLAYERS} acked before the kill, "
          f"{len(stored)} stored (in flight ones may or may not be), 0 acked lost")


@pytest.mark.postgres
@pytest.mark.redis
async def test_kill_9_restart_with_redis_and_resent_answers_are_stored_once(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    args = ("--data-dir", str(tmp_path), "--database-url", postgres_url, "--redis-url",
            redis_url, "--redis-prefix", redis_prefix, "--node-id", "solo",
            "--lease-ttl-ms", "1500", *OPEN_DOORS)
    acked: dict[int, tuple[str, int]] = {}
    with trio.fail_after(150):
        async with serve_process(*args) as engine:
            created = await _session(engine.url)
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(engine.url))
                await host.host(created.code, created.host_token)
                players = await _open_players(stack, engine.url, PLAYERS)
                q = await _join_and_start(host, players, created.code)
                async with trio.open_nursery() as nursery:
                    for i, client in enumerate(players):
                        nursery.start_soon(_answer, client, q, i % 3)
                for i, client in enumerate(players):
                    assert client.welcome is not None and client.welcome.participant
                    assert client.token is not None
                    acked[client.welcome.participant] = (client.token, i % 3)
                engine.kill_9()
                killed_at = trio.current_time()
                await engine.process.wait()

        async with serve_process(*args) as engine:
            resumed_after = 0.0
            async with contextlib.AsyncExitStack() as stack:
                clients: dict[int, Client] = {}
                for pid, (token, _value) in acked.items():
                    for attempt in range(200):  # with back-off, as a phone does
                        client = await stack.enter_async_context(open_client(engine.url))
                        try:
                            await client.resume(token, 0)
                            break
                        except RemoteError as exc:
                            assert exc.retryable, exc
                        await trio.sleep(min(0.5, 0.02 * (attempt + 1)))
                    else:
                        raise AssertionError("never resumed")
                    clients[pid] = client
                    resumed_after = resumed_after or trio.current_time() - killed_at
                for pid, client in clients.items():  # the taken-over state has the answer
                    state = await client.next_event(m.State)
                    assert state.state["you"]["answer"] == acked[pid][1]
                # Each resends its answer with the same rid: acked, changes nothing.
                async with trio.open_nursery() as nursery:
                    for pid, client in clients.items():
                        nursery.start_soon(_answer, client, q, acked[pid][1])
            engine.sigterm()
            with trio.fail_after(30):
                assert await engine.process.wait() == 0
    stored = await _stored(postgres_url, created.code)
    assert stored == sorted((pid, q) for pid in acked)  # every acked answer, exactly once
    print(f"\nkill -9 + restart (PG + Redis): first resume {resumed_after:.2f}s after the "
          f"kill; {len(acked)} answers resent, {len(stored)} stored")


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres-cut",
                                                             marks=pytest.mark.postgres)])
async def test_sigterm_exits_inside_the_drain_timeout(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    drain_timeout = 5.0
    extra: tuple[str, ...] = ()
    proxy: FaultProxy | None = None
    players_n = min(PLAYERS, 100)
    async with trio.open_nursery() as nursery:
        if database == "postgres-cut":
            postgres_url: str = request.getfixturevalue("postgres_url")
            proxy = FaultProxy.for_url(postgres_url)
            await nursery.start(proxy.run)
            extra = ("--database-url", proxy.url_for(postgres_url))
        with trio.fail_after(90):
            async with serve_process("--data-dir", str(tmp_path), "--ack-mode", "fast",
                                     "--drain-timeout", str(drain_timeout), *extra,
                                     *OPEN_DOORS) as engine:
                created = await _session(engine.url)
                async with contextlib.AsyncExitStack() as stack:
                    host = await stack.enter_async_context(open_client(engine.url))
                    await host.host(created.code, created.host_token)
                    players = await _open_players(stack, engine.url, players_n)
                    q = await _join_and_start(host, players, created.code)
                    if proxy is not None:
                        proxy.cut()  # the queue cannot be flushed now
                    async with trio.open_nursery() as answering:
                        for client in players:
                            answering.start_soon(_answer, client, q, 0)
                    engine.sigterm()
                    started = trio.current_time()
                    with trio.fail_after(drain_timeout + STOP_MARGIN + 5):
                        code = await engine.process.wait()
                    took = trio.current_time() - started
                    for client in players:
                        assert (await client.wait_closed()).code == CloseCode.SERVICE_RESTART
        nursery.cancel_scope.cancel()
    assert code == 0
    if proxy is None:
        assert took < drain_timeout
        stored = await _stored(sqlite_file(tmp_path), created.code)
        assert len(stored) == players_n  # fast acks, graceful stop: 0 lost
    else:
        # The drain gives up at drain_timeout (once: a second shutdown call waits for the
        # first instead of draining again); closing the clients takes at most 2 s more.
        assert drain_timeout <= took < drain_timeout + 4
        assert any("not committed" in line for line in engine.output)
    print(f"\nSIGTERM ({database}, {players_n} players, fast acks): exit after {took:.2f}s "
          f"(--drain-timeout {drain_timeout:.0f}, stop margin {STOP_MARGIN:.0f})")
