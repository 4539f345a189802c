"""Failover through the engine: two engines, one Redis, one PostgreSQL database.

A session created on engine A is taken over by engine B when A dies (its lease lapses): every
acked answer is in B's restored session and in the database exactly once, players resume with
their identity, and the question keeps its deadline. A node that lost its lease while paused is
fenced: it stops serving and its writes are refused.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
import trio

from pubquiz_engine.client import Client, Redirected, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.protocol.codec import pack_stored
from pubquiz_engine.server import failover
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.snapshot import decode_snapshot, encode_snapshot, open_redis_store
from pubquiz_engine.store import (
    AnswerRecord,
    EventRecord,
    ScoreRecord,
    SessionRecord,
    open_store,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

QUIZ = {
    "format": 1,
    "title": "Failover night",
    "rounds": [{"title": "R", "items": [
        {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon"],
         "answer": "Paris", "time_limit": 60, "points": 2},
        {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True, "time_limit": 60},
    ]}],
}


@contextlib.asynccontextmanager
async def node(tmp_path: Path, name: str, postgres_url: str, redis_url: str, prefix: str,
               orphan_scan_interval: float = 0.0, lease_ttl_ms: int = 1000,
               ack_mode: str = "durable", clock: Callable[[], float] = time.time,
               operator_key: str | None = None,
               ) -> AsyncIterator[tuple[Engine, EngineAddress, Callable[[], Awaitable[None]]]]:
    """An engine that the test can crash with the yielded ``crash()``: no drain, no final
    snapshot, no lease release, and it returns only once the engine has stopped (see
    ``crash``). Its periodic orphan scan is off unless asked for: tests call ``scan_orphans``
    when they mean it."""
    config = ServerConfig(port=0, data_dir=str(tmp_path), database_url=postgres_url,
                          redis_url=redis_url, redis_prefix=prefix, node_id=name,
                          lease_ttl_ms=lease_ttl_ms, join_rate=1000.0, join_burst=1000,
                          message_rate=1000.0, message_burst=1000,
                          orphan_scan_interval=orphan_scan_interval, ack_mode=ack_mode,
                          operator_key=operator_key)
    store = await open_store(postgres_url)
    try:
        engine = Engine(config, store, clock=clock)
        # The engine's own scope: cancelling it must not cancel the test body, which runs
        # inside this nursery too and goes on to check the survivor.
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[EngineAddress]) -> None:
            try:
                with scope:
                    await engine.run(task_status=task_status)
            finally:
                stopped.set()

        async def crash() -> None:
            """Die like kill -9 would, as far as Redis can tell, and return once dead.

            Waiting matters: ``scope.cancel()`` alone leaves the engine running until its tasks
            reach their next checkpoint, and a lease renewal already on a Redis worker thread
            still lands after that. A test that then lets the lease lapse (``expire_lease``)
            would see it renewed behind its back; a killed process renews nothing.
            """
            engine.coord = None  # no lease release, no final snapshot on the way out
            scope.cancel()
            await stopped.wait()

        async with trio.open_nursery() as nursery:
            address = await nursery.start(run)
            yield engine, address, crash
            scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


def expire_lease(redis_url: str, prefix: str, code: str) -> None:
    """Let the dead node's lease lapse now (its TTL, without waiting for it).

    The key is deleted, which is what an expired key is to every reader. (``PEXPIRE key 1``
    left it readable for up to a millisecond more: a scan that came sooner found the dead
    node still holding the session.)
    """
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.delete(f"{prefix}lease:{{{code}}}") == 1
    finally:
        client.close()


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path, postgres_url: str, redis_url: str, prefix: str, *,
                    b_scan: float = 0.0,
                    ) -> AsyncIterator[tuple[Engine, EngineAddress,
                                             Callable[[str], Awaitable[None]],
                                             Engine, EngineAddress]]:
    """Nodes a and b on one Redis and one database: (a, its address, kill_a, b, its address).
    ``kill_a(code)`` crashes a and lets its lease on ``code`` lapse at once. Leases last 10 s:
    a live node keeps its sessions however loaded the machine is (only kill_a ends one)."""
    async with node(tmp_path, "a", postgres_url, redis_url, prefix,
                    lease_ttl_ms=10_000) as (a, addr_a, crash_a), \
            node(tmp_path, "b", postgres_url, redis_url, prefix, orphan_scan_interval=b_scan,
                 lease_ttl_ms=10_000) as (b, addr_b, _):
        async def kill_a(code: str) -> None:
            await crash_a()
            expire_lease(redis_url, prefix, code)

        yield a, addr_a, kill_a, b, addr_b


async def resume_with_retry(url: str, token: str, last_seq: int, stack: Any,
                            attempts: list[int] | None = None) -> Client:
    """What a phone does after losing its node: reconnect with back-off until served. The
    number of attempts it took is appended to ``attempts`` when given."""
    for attempt in range(50):
        client = await stack.enter_async_context(open_client(url))
        try:
            await client.resume(token, last_seq)
            if attempts is not None:
                attempts.append(attempt + 1)
            return client
        except RemoteError as exc:
            assert exc.retryable, exc
        await trio.sleep(0.05 * (attempt + 1))
    raise AssertionError("never resumed")


async def test_takeover_after_the_owner_dies_keeps_every_acked_answer(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    players = 60
    with trio.fail_after(60):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, addr_b):
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code, first_epoch = session.code, session.epoch
            acked: dict[int, tuple[str, int, int]] = {}
            deadline_ms = 0
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(addr_a.url))
                await host.host(code, host_token)
                clients = []
                for i in range(players):
                    client = await stack.enter_async_context(open_client(addr_a.url))
                    await client.join(code, f"P{i}")
                    clients.append(client)
                await host.request(m.Start)
                async with trio.open_nursery() as nursery:
                    async def answer(i: int, client: Client) -> None:
                        nonlocal deadline_ms
                        question = await client.next_event(m.Question)
                        deadline_ms = question.deadline_ms
                        await client.answer(question.q, i % 2)
                        assert client.token is not None and client.welcome is not None
                        acked[client.welcome.participant or 0] = (
                            client.token, client.last_seq, i % 2)
                    for i, client in enumerate(clients):
                        nursery.start_soon(answer, i, client)
            assert len(acked) == players
            await kill_a(code)

            async with contextlib.AsyncExitStack() as stack:
                resumed: dict[int, Client] = {}
                attempts: list[int] = []
                for pid, (token, last_seq, _) in acked.items():
                    resumed[pid] = await resume_with_retry(addr_b.url, token, last_seq, stack,
                                                           attempts)
                # Once the lease has lapsed, the first resume takes the session over and every
                # player is served at the first attempt: no one is told to retry. (How long that
                # takes is the bench's to measure, not a timed assertion's.)
                assert attempts == [1] * players
                restored = b.sessions[code]
                assert restored.epoch > first_epoch
                for pid, client in resumed.items():
                    assert client.welcome is not None
                    assert client.welcome.participant == pid
                    assert client.welcome.epoch == restored.epoch
                    assert client.welcome.replay == "state"  # the epoch changed
                    state = await client.next_event(m.State)
                    assert state.state["phase"] == "question_open"
                    assert state.state["question"]["deadline_ms"] == deadline_ms
                    assert state.state["you"]["answer"] == acked[pid][2]
                host_b = await stack.enter_async_context(open_client(addr_b.url))
                await host_b.host(code, host_token)
                await host_b.request(m.Close)
                await host_b.request(m.Reveal)
                for pid, client in resumed.items():
                    result = await client.next_event(m.Result)
                    assert result.correct == (acked[pid][2] == 0)
            assert await b.persister.drain(timeout=10)
            results = await b.store.session_results(code)
            stored = [(r.participant_id, r.question) for r in results.answers]
            assert sorted(stored) == sorted((pid, 0) for pid in acked)  # each exactly once
            row = await b.store.load_session(code)
            assert row is not None and row.epoch == restored.epoch


async def test_a_player_who_left_the_lobby_stays_gone_after_a_takeover(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Lobby leavers are forgotten by the game; their database rows must not bring them back
    when another node replays the joins that came after the snapshot."""
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, addr_b):
            session, _host_token = await a.open_session(load_quiz_data(QUIZ), mode="team")
            code = session.code
            seen: dict[str, tuple[int, str, int]] = {}
            async with contextlib.AsyncExitStack() as stack:
                for name, team in (("Stay", "Reds"), ("Go", "Blues"), ("Also", "Reds")):
                    client = await stack.enter_async_context(open_client(addr_a.url))
                    await client.join(code, name, team=team)
                    assert client.welcome is not None and client.token is not None
                    seen[name] = (client.welcome.participant or 0, client.token,
                                  client.last_seq)
                    if name == "Go":
                        await client.request(m.Leave)
                assert sorted(session.game.participants) == [seen["Stay"][0], seen["Also"][0]]
                await session.wait_snapshot()
                assert await a.persister.drain(timeout=10)  # the leaver's row is stored
            await kill_a(code)
            async with contextlib.AsyncExitStack() as stack:
                _, token, last_seq = seen["Stay"]
                await resume_with_retry(addr_b.url, token, last_seq, stack)
                restored = b.sessions[code].game
                assert sorted(restored.participants) == [seen["Stay"][0], seen["Also"][0]]
                assert [t.name for t in restored.teams.values()] == ["Reds"]
                gone = await stack.enter_async_context(open_client(addr_b.url))
                with pytest.raises(RemoteError) as refused:
                    await gone.resume(seen["Go"][1], seen["Go"][2])
                assert refused.value.code == "bad_token"
                newcomer = await stack.enter_async_context(open_client(addr_b.url))
                await newcomer.join(code, "Go", team="Blues")  # the name and team are free
                assert newcomer.welcome is not None
                assert newcomer.welcome.participant == 4  # ids are never reused


async def test_the_new_owner_numbers_above_rows_written_after_the_last_snapshot(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The old owner may store events and score rows after its last snapshot (write-behind
    commits them, the snapshot lags). The new owner must number its events above them (else
    its event rows collide and are dropped) and its score rows must win over the old ones."""
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, addr_b):
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            async with open_client(addr_a.url) as ann:
                await ann.join(code, "Ann")
                assert ann.welcome is not None and ann.token is not None
                pid, token = ann.welcome.participant or 0, ann.token
                await session.wait_snapshot()
                assert await a.persister.drain(timeout=10)
            late = session.seq + 40
            # What a dying owner could have committed after its last snapshot: events, and a
            # score row that the restored game does not know (a reveal not in the snapshot).
            await a.store.write([EventRecord(code, late - 1, "revealed", {}, 1.0, session.epoch),
                                 ScoreRecord(code, pid, 777, late, session.epoch)])
            await kill_a(code)
            async with contextlib.AsyncExitStack() as stack:
                await resume_with_retry(addr_b.url, token, 0, stack)
                restored = b.sessions[code]
                assert restored.seq > late
                host = await stack.enter_async_context(open_client(addr_b.url))
                await host.host(code, host_token)
                await host.request(m.Start)
            assert await b.persister.drain(timeout=10)
            # The restored game's score (0) replaced the row it knew nothing of.
            results = await b.store.session_results(code)
            assert [(s.participant_id, s.score) for s in results.standings] == [(pid, 0)]
            assert await b.store.last_seq(code) > late  # B's own events were stored


async def test_an_orphaned_session_is_adopted_without_anyone_reconnecting(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The owner dies and nobody reconnects: the orphan scan of another node takes the session
    over, so its question still closes at the deadline and its answers are kept."""
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, _):
            assert b.coord is not None
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            # A live row with no snapshot (e.g. from a run without Redis): never adoptable.
            stray = "ZZ" + code[2:] if not code.startswith("ZZ") else "YY" + code[2:]
            await a.store.write([SessionRecord(stray, "Old", QUIZ, "solo", 1.0, 1, "h")])
            async with open_client(addr_a.url) as host, open_client(addr_a.url) as ann:
                await host.host(code, host_token)
                await ann.join(code, "Ann")
                await host.request(m.Start)
                question = await ann.next_event(m.Question)
                await ann.answer(question.q, 0)  # durable: committed and snapshotted
            assert await b.coord.scan_orphans() == 0  # A is alive and holds its lease
            assert code not in b.sessions
            await kill_a(code)
            assert await b.coord.scan_orphans() == 1
            adopted = b.sessions[code]
            assert adopted.game.phase == "question_open"
            deadline = adopted.game.next_deadline
            assert deadline is not None and round(deadline * 1000) == question.deadline_ms
            assert list(adopted.game.answers(question.q)) == [1]
            assert await b.coord.scan_orphans() == 0  # nothing left; the stray is skipped
            assert stray not in b.sessions


async def test_the_periodic_orphan_scan_adopts_on_its_own(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix, b_scan=0.2) as (
                a, addr_a, kill_a, b, _):
            assert b.coord is not None
            session, _ = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            async with open_client(addr_a.url) as ann:
                await ann.join(session.code, "Ann")
                await session.wait_snapshot()
            # The scan adopts what the database lists as live: the session's row must be
            # committed before A dies, or there is nothing to find.
            assert await a.persister.drain(timeout=10)
            await kill_a(session.code)
            await b.coord.wait_adopted()  # no client came back: the scan did it
            assert session.code in b.sessions


async def test_leaves_and_kicks_after_the_snapshot_are_replayed(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """A leave or a kick stored after the owner's last snapshot (it died before the snapshot
    that follows every leave was written) must not come back as a player on the new node."""
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, addr_b):
            session, _host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            tokens: dict[str, tuple[int, str]] = {}
            async with contextlib.AsyncExitStack() as stack:
                for name in ("Stay", "Go", "Out"):
                    client = await stack.enter_async_context(open_client(addr_a.url))
                    await client.join(code, name)
                    assert client.welcome is not None and client.token is not None
                    tokens[name] = (client.welcome.participant or 0, client.token)
                await session.wait_snapshot()
                assert await a.persister.drain(timeout=10)
            after = session.seq
            # What the owner committed after its last snapshot, just before it died.
            await a.store.write([
                EventRecord(code, after + 1, "participant_left",
                            {"type": "participant_left", "participant": tokens["Go"][0]},
                            2.0, session.epoch),
                EventRecord(code, after + 2, "participant_kicked",
                            {"type": "participant_kicked", "participant": tokens["Out"][0]},
                            3.0, session.epoch)])
            await kill_a(code)
            async with contextlib.AsyncExitStack() as stack:
                await resume_with_retry(addr_b.url, tokens["Stay"][1], 0, stack)
                game = b.sessions[code].game
                assert tokens["Go"][0] not in game.participants  # left the lobby: forgotten
                assert game.participants[tokens["Out"][0]].kicked
                assert game.active_count() == 1
                for name, code_expected in (("Go", "bad_token"), ("Out", "kicked")):
                    gone = await stack.enter_async_context(open_client(addr_b.url))
                    with pytest.raises(RemoteError) as refused:
                        await gone.resume(tokens[name][1], 0)
                    assert refused.value.code == code_expected


async def test_a_paused_owner_is_fenced_and_its_writes_refused(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    from snapkit import RedisProxy

    with trio.fail_after(60):
        async with trio.open_nursery() as proxies:
            proxy = RedisProxy(redis_url)  # A reaches Redis through it: stall = A is paused
            await proxies.start(proxy.run)
            await _fenced_scenario(tmp_path, postgres_url, redis_url, redis_prefix, proxy)
            proxies.cancel_scope.cancel()


async def _fenced_scenario(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
                           proxy: Any) -> None:
    async with node(tmp_path, "a", postgres_url, proxy.url, redis_prefix) as (a, addr_a, _), \
            node(tmp_path, "b", postgres_url, redis_url, redis_prefix) as (b, addr_b, _):
        session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
        code = session.code
        async with open_client(addr_a.url) as host, open_client(addr_a.url) as ann:
            await host.host(code, host_token)
            await ann.join(code, "Ann")
            await host.request(m.Start)
            question = await ann.next_event(m.Question)
            acked = await ann.answer(question.q, 0)
            assert ann.token is not None
            await a.coord.snapshotter.flush()  # type: ignore[union-attr]
            # A stops renewing (as if SIGSTOPped past its lease); B takes the session.
            proxy.stall()
            expire_lease(redis_url, redis_prefix, code)
            async with open_client(addr_b.url) as ann_b:
                await ann_b.resume(ann.token, ann.last_seq)
                assert b.sessions[code].epoch > session.epoch
                # A wakes up: its next renewal finds a newer owner; it stops serving.
                proxy.restore()
                closed = await host.wait_closed(timeout=10)
                assert closed.code == CloseCode.FENCED
                assert session.end_reason is not None
                # Nothing A could still write counts: the database refuses its epoch.
                late = AnswerRecord(code=code, participant_id=1, team=None, question=0,
                                    value=1, request_id=999, submitted_at=0.0, seq=999,
                                    epoch=session.epoch)
                outcome = await a.store.write([late])
                assert outcome.refused == frozenset({code})
                row = await b.store.load_session(code)
                assert row is not None and row.epoch == b.sessions[code].epoch
                # The player goes on at B: resending the acked answer with its rid is
                # recognised as the same answer, not a second one.
                assert (await ann_b.answer(question.q, 0, rid=acked.rid)).q == 0
        assert await b.persister.drain(timeout=10)
        results = await b.store.session_results(code)
        assert [(r.participant_id, r.question) for r in results.answers] == [(1, 0)]


async def test_sessions_go_on_while_redis_is_away(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """While Redis is away a phase change is held, not lost and not shown (output commit: no
    snapshot could cover it, so a takeover could undo it); it goes out once Redis is back."""
    from snapkit import RedisProxy

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            proxy = RedisProxy(redis_url)
            await nursery.start(proxy.run)
            async with node(tmp_path, "a", postgres_url, proxy.url, redis_prefix) as (
                    a, addr_a, _):
                session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
                async with open_client(addr_a.url) as host, open_client(addr_a.url) as ann:
                    await host.host(session.code, host_token)
                    await ann.join(session.code, "Ann")
                    await session.wait_snapshot()
                    proxy.cut()
                    started = trio.Event()

                    async def start() -> None:
                        await host.request(m.Start)  # a phase change while Redis is away
                        started.set()

                    nursery.start_soon(start)
                    await session.wait_held()
                    assert session.game.phase == "question_open"
                    assert session.released < session.outbox_mark  # held: nobody saw it
                    assert not started.is_set()
                    assert a.coord is not None
                    proxy.restore()
                    question = await ann.next_event(m.Question)
                    with trio.fail_after(15):
                        await started.wait()
                    ack = await ann.answer(question.q, 0)
                    assert ack.q == question.q
                    assert session.snapshot_seq >= session.critical_seq
                    assert a.coord.snapshotter.stats().redis_up
            nursery.cancel_scope.cancel()


async def test_a_corrupt_snapshot_is_a_typed_error_the_takeover_handles(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """A snapshot whose record reads but whose session state does not (damaged in Redis) is
    ``SnapshotCorrupt``: the client is told ``unavailable`` (retryable), the lease the
    takeover took is handed back, the orphan scan skips it without raising, and the node
    goes on serving. Before, the raw ``msgpack.unpackb`` of the state raised whatever msgpack
    or a missing key raised."""
    with trio.fail_after(30):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, kill_a, b, addr_b):
            assert b.coord is not None
            session, _ = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            async with open_client(addr_a.url) as ann:
                await ann.join(code, "Ann")
                await session.wait_snapshot()
                token = ann.token
            assert token is not None
            assert await a.persister.drain(timeout=10)
            await kill_a(code)
            key = f"{redis_prefix}snap:{{{code}}}"
            client = redis.Redis.from_url(redis_url)
            try:
                good = decode_snapshot(client.get(key))  # type: ignore[arg-type]
                for damage in (b"\xc1 not msgpack", pack_stored({"format": 1, "seq": 3}),
                               good.data[: len(good.data) // 2]):
                    client.set(key, encode_snapshot(attrs.evolve(good, data=damage)))
                    async with open_client(addr_b.url) as again:
                        with pytest.raises(RemoteError) as refused:
                            await again.resume(token, 0)
                    assert refused.value.code == ErrorCode.UNAVAILABLE
                    assert refused.value.retryable
                    assert code not in b.sessions
                    assert client.get(f"{redis_prefix}lease:{{{code}}}") is None  # released
                    assert await b.coord.scan_orphans() == 0  # skipped, not raised
                # The real snapshot back: the very next attempt takes the session over.
                client.set(key, encode_snapshot(good))
            finally:
                client.close()
            async with open_client(addr_b.url) as again:
                await again.resume(token, 0)
            assert code in b.sessions
            assert b.sessions[code].game.participants[1].name == "Ann"


class _WatchedEvent:
    """A stand-in for one of the engine's events that says (``waited``) when ``enough`` tasks
    wait on it."""

    def __init__(self, enough: int = 1) -> None:
        self.inner = trio.Event()
        self.waited = trio.Event()
        self.waiting = 0
        self.enough = enough

    def is_set(self) -> bool:
        return self.inner.is_set()

    def set(self) -> None:
        self.inner.set()

    async def wait(self) -> None:
        self.waiting += 1
        if self.waiting >= self.enough:
            self.waited.set()
        await self.inner.wait()


async def _first(*events: trio.Event | _WatchedEvent) -> None:
    """Return once any of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        async def on(event: trio.Event | _WatchedEvent) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()
        for event in events:
            nursery.start_soon(on, event)


async def test_a_starting_node_waits_for_its_directory_before_answering(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A node listens before it has opened Redis (with an admin port, its start awaits in
    between): a join arriving then, for a session another node holds, waits and is
    redirected, never answered ``bad_code`` as by a node without Redis; a session created
    then is created under a lease."""
    gate, opening = trio.Event(), trio.Event()
    serve = Engine._serve

    async def gated_serve(self: Engine, scope: trio.CancelScope, host: str, port: int,
                          websockets: bool, *, task_status: Any = trio.TASK_STATUS_IGNORED
                          ) -> None:
        if not websockets:  # the admin port: the game port listens, coordination not open
            opening.set()
            await gate.wait()
        await serve(self, scope, host, port, websockets, task_status=task_status)

    with trio.fail_after(60):
        async with node(tmp_path, "a", postgres_url, redis_url, redis_prefix,
                        lease_ttl_ms=10_000) as (a, addr_a, _crash):
            session, _token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            monkeypatch.setattr(Engine, "_serve", gated_serve)
            config = ServerConfig(port=0, admin_port=0, data_dir=str(tmp_path / "b"),
                                  database_url=postgres_url, redis_url=redis_url,
                                  redis_prefix=redis_prefix, node_id="b", lease_ttl_ms=10_000,
                                  orphan_scan_interval=0.0)
            store = await open_store(postgres_url)
            try:
                b = Engine(config, store)
                directory = _WatchedEvent()
                b._directory_opened = directory  # type: ignore[assignment]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(b.run)
                    await opening.wait()
                    assert b._listener is not None and b.coord is None and not b.ready
                    outcome: list[RemoteError | None] = []
                    created: list[LiveSession] = []
                    answered, made = trio.Event(), trio.Event()
                    async with open_client(f"ws://127.0.0.1:{b._listener.port}/") as client:
                        async def join() -> None:
                            try:
                                await client.join(session.code, "Early")
                                outcome.append(None)
                            except RemoteError as exc:
                                outcome.append(exc)
                            answered.set()

                        async def create() -> None:
                            new, _ = await b.open_session(load_quiz_data(QUIZ), mode="solo")
                            created.append(new)
                            made.set()

                        nursery.start_soon(join)
                        await _first(directory.waited, answered)
                        assert not outcome, f"answered before the directory opened: {outcome}"
                        nursery.start_soon(create)
                        gate.set()
                        await answered.wait()
                        await made.wait()
                    assert isinstance(outcome[0], Redirected), outcome
                    assert outcome[0].url == addr_a.url
                    redis_store = open_redis_store(redis_url, prefix=redis_prefix)
                    try:
                        owner = await redis_store.owner(created[0].code)
                    finally:
                        redis_store.close()
                    assert owner is not None and owner.node == "b"
                    assert created[0].epoch == owner.epoch
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await store.aclose()


async def test_players_refused_by_a_node_that_lost_the_takeover_race_get_every_event(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner dies; its players come back to node b, whose takeover loses the lease race
    to node c's orphan scan: the first is told ``busy``, those waiting behind it ``unavailable``.
    They resume on c and from then on receive every event, like everyone else."""
    players = 6
    with trio.fail_after(60):
        async with node(tmp_path, "a", postgres_url, redis_url, redis_prefix,
                        lease_ttl_ms=10_000) as (a, addr_a, crash_a), \
                node(tmp_path, "b", postgres_url, redis_url, redis_prefix,
                     lease_ttl_ms=10_000) as (b, addr_b, _), \
                node(tmp_path, "c", postgres_url, redis_url, redis_prefix,
                     lease_ttl_ms=10_000) as (c, addr_c, _):
            assert c.coord is not None
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            tokens: list[tuple[str, int]] = []
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(addr_a.url))
                await host.host(code, host_token)
                clients = [await stack.enter_async_context(open_client(addr_a.url))
                           for _ in range(players)]
                for i, client in enumerate(clients):
                    await client.join(code, f"P{i}")
                await host.request(m.Start)
                for client in clients:
                    question = await client.next_event(m.Question)
                    await client.answer(question.q, 0)
                    assert client.token is not None
                    tokens.append((client.token, client.last_seq))
            assert await a.persister.drain(timeout=10)
            await crash_a()
            expire_lease(redis_url, redis_prefix, code)

            # b's takeover is held after it found the lease free, until c has adopted.
            gate, held = trio.Event(), trio.Event()
            load_session = b.store.load_session

            async def gated_load(code_: str) -> Any:
                held.set()
                await gate.wait()
                return await load_session(code_)

            monkeypatch.setattr(b.store, "load_session", gated_load)
            # And every other player waits behind that takeover before c scans.
            behind = _WatchedEvent(enough=players - 1)

            class WatchedAttempt(failover._Attempt):
                def __init__(self) -> None:
                    super().__init__()
                    self.done = behind  # type: ignore[assignment]

            monkeypatch.setattr(failover, "_Attempt", WatchedAttempt)
            refusals: list[RemoteError] = []
            async def resume_at_b(token: str, last_seq: int) -> None:
                async with open_client(addr_b.url) as client:
                    with pytest.raises(RemoteError) as info:
                        await client.resume(token, last_seq)
                    refusals.append(info.value)

            async with trio.open_nursery() as nursery:
                for token, last_seq in tokens:
                    nursery.start_soon(resume_at_b, token, last_seq)
                await held.wait()
                await behind.waited.wait()
                assert await c.coord.scan_orphans() == 1
                gate.set()
            assert sorted(r.code for r in refusals) == sorted(
                [ErrorCode.BUSY] + [ErrorCode.UNAVAILABLE] * (players - 1)), refusals
            assert all(r.retryable for r in refusals)

            async with contextlib.AsyncExitStack() as stack:
                resumed = []
                for token, last_seq in tokens:
                    client = await stack.enter_async_context(open_client(addr_c.url))
                    await client.resume(token, last_seq)
                    await client.next_event(m.State)
                    resumed.append(client)
                host = await stack.enter_async_context(open_client(addr_c.url))
                await host.host(code, host_token)
                await host.request(m.Close)
                await host.request(m.Reveal)
                for client in resumed:
                    assert (await client.next_event(m.Closed, timeout=10)).q == 0
                    assert (await client.next_event(m.Revealed, timeout=10)).q == 0
