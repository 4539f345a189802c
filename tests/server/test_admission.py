"""What the engine admits, and what it never drops (issue 16, points 3 and 6 in process).

- The write-behind bound refuses *new work* (answers, joins, host commands, new sessions) with
  a retryable ``busy`` before anything changes; the records of work it accepted (a reveal's
  score rows and events) are never dropped, however full the queue is.
- ``create_session`` checks for room first: no 1011, no session half made, and with Redis no
  lease left held (and renewed for ever) for a session that does not exist.
- A graceful stop without Redis marks the sessions nobody will carry on: ``interrupted`` (or
  ``finished`` for a game played out) with their end time; a node killed without Redis has
  its sessions recorded ``interrupted`` by its next start.

The database is made slow on purpose with a gate (``GatedStore``): writes wait until the test
opens it, so the queue fills deterministically; nothing waits on a timer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from engine_fixtures import SHORT_QUIZ, short_quiz

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine
from pubquiz_engine.store import (
    AnswerRow,
    EventRecord,
    EventRow,
    ParticipantRow,
    Record,
    Results,
    SessionRow,
    Store,
    WriteOutcome,
    open_store,
)

KEY = "admission-operator-key"


class GatedStore:
    """A real store whose writes wait while the gate is shut (a database that is slow)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._open = trio.Event()
        self._open.set()

    def shut(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    def open(self) -> None:
        self._open.set()

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        await self._open.wait()
        return await self.inner.write(records)

    async def claim_session(self, code: str, epoch: int, *, owner: str | None = None) -> None:
        await self.inner.claim_session(code, epoch, owner=owner)

    async def session_results(self, code: str) -> Results:
        return await self.inner.session_results(code)

    async def load_answers(self, code: str, *, after_seq: int = 0) -> list[AnswerRow]:
        return await self.inner.load_answers(code, after_seq=after_seq)

    async def load_participants(self, code: str) -> list[ParticipantRow]:
        return await self.inner.load_participants(code)

    async def load_events(self, code: str, *, after_seq: int,
                          types: Sequence[str]) -> list[EventRow]:
        return await self.inner.load_events(code, after_seq=after_seq, types=types)

    async def last_seq(self, code: str) -> int:
        return await self.inner.last_seq(code)

    async def interrupt_sessions(self, owner: str, *, created_before: float,
                                 ended_at: float) -> list[str]:
        return await self.inner.interrupt_sessions(owner, created_before=created_before,
                                                   ended_at=ended_at)

    async def load_session(self, code: str) -> SessionRow | None:
        return await self.inner.load_session(code)

    async def list_sessions(self, *, status: str | None = None) -> list[SessionRow]:
        return await self.inner.list_sessions(status=status)

    async def cache_get(self, key: str) -> str | None:
        return await self.inner.cache_get(key)

    async def cache_put(self, key: str, value: str, ttl_seconds: float) -> None:
        await self.inner.cache_put(key, value, ttl_seconds)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def gated_engine(tmp_path: Path, **settings: Any
                       ) -> AsyncIterator[tuple[Engine, EngineAddress, GatedStore]]:
    settings.setdefault("port", 0)
    settings.setdefault("data_dir", str(tmp_path))
    settings.setdefault("operator_key", KEY)
    settings.setdefault("join_rate", 1000.0)
    settings.setdefault("join_burst", 1000)
    settings.setdefault("message_rate", 1000.0)
    settings.setdefault("message_burst", 1000)
    url = settings.pop("database_url", f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}")
    gated = GatedStore(await open_store(url))
    try:
        async with running_engine(ServerConfig(database_url=url, **settings),
                                  store=gated) as (engine, address):
            yield engine, address, gated
    finally:
        with trio.CancelScope(shield=True):
            await gated.aclose()


async def _busy(call: Any) -> None:
    with pytest.raises(RemoteError) as refused:
        await call
    assert refused.value.code is ErrorCode.BUSY and refused.value.retryable


async def test_a_reveal_at_a_full_queue_keeps_every_score_row(tmp_path: Path) -> None:
    """Issue 16.3: a reveal queues a score row per scorer plus its events. Before, it reserved
    room for 8 and a QueueFull past that was swallowed: those score rows never reached the
    database. Now the reveal is admitted (room for one record) and all it writes is queued."""
    players, queue = 12, 20
    with trio.fail_after(60):
        async with gated_engine(tmp_path, write_queue=queue, ack_mode="fast") as (
                engine, address, gated):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(address.url))
                await host.host(session.code, host_token)
                clients: list[Client] = []
                for i in range(players):
                    client = await stack.enter_async_context(open_client(address.url))
                    await client.join(session.code, f"P{i:02}")
                    clients.append(client)
                await host.request(m.Start)
                question = await clients[-1].next_event(m.Question)
                assert await engine.persister.drain(timeout=10)
                gated.shut()
                for client in clients:  # all right: every player gets a score row
                    await client.answer(question.q, 0)
                depth = engine.persister.stats().depth
                assert depth == players and depth + 8 <= queue  # the old code admitted this
                # Its ``ok`` waits for the reveal's commit (output commit): do not wait for it.
                await host.send(m.Reveal(rid=4242))
                await engine.sessions[session.code].wait_held()
                stats = engine.persister.stats()
                assert stats.depth > stats.max_queue  # accepted work's records, all of them
                # At the bound new work is refused, and refused before anything changed.
                phase = engine.sessions[session.code].game.phase
                await _busy(host.request(m.Next))
                assert engine.sessions[session.code].game.phase == phase
                async with open_client(address.url) as late:
                    await _busy(late.join(session.code, "Late"))
                async with open_client(address.url) as operator:
                    await _busy(operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo"))
                    # No 1011: the operator's connection is still there.
                    assert isinstance(await operator.request(m.Ping), m.Pong)
                assert set(engine.sessions) == {session.code}
                gated.open()
                assert await engine.persister.drain(timeout=20)
                totals = {pid: engine.sessions[session.code].game.score_of(pid)
                          for pid in engine.sessions[session.code].game.participants}
                results = await engine.store.session_results(session.code)
    assert all(score > 0 for score in totals.values()) and len(totals) == players
    assert {row.participant_id: row.score for row in results.standings} == totals


@pytest.mark.postgres
@pytest.mark.redis
async def test_create_session_refused_at_the_bound_holds_no_lease(
        tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> None:
    """Issue 16.3 with Redis: the room check comes before the lease; and if the queue fills
    while the lease is being taken, the lease is released (before: QueueFull escaped as 1011
    and the keeper renewed that lease for ever)."""
    queue = 5
    with trio.fail_after(60):
        async with gated_engine(tmp_path, database_url=postgres_url, redis_url=redis_url,
                                redis_prefix=redis_prefix, write_queue=queue,
                                orphan_scan_interval=0.0) as (engine, address, gated):
            assert engine.coord is not None
            keeper, redis = engine.coord.keeper, engine.coord.redis
            reserve = engine.coord.reserve
            reserved: list[str] = []

            async def reserve_then_fill() -> tuple[str, int]:
                code, epoch = await reserve()
                reserved.append(code)
                # Other sessions' work fills the queue while this lease was being taken.
                engine.persister.submit_many([EventRecord(code="filler", seq=i, type="tick",
                                                     payload={}, at=1.0, epoch=1)
                                         for i in range(1, queue + 1)])
                return code, epoch

            gated.shut()
            engine.coord.reserve = reserve_then_fill  # type: ignore[method-assign]
            async with open_client(address.url) as operator:
                await _busy(operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo"))
                (code,) = reserved
                assert keeper.lease_of(code) is None and await redis.owner(code) is None
                # The queue is full now: refused before any lease is taken.
                await _busy(operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo"))
                assert reserved == [code] and not engine.sessions
                assert isinstance(await operator.request(m.Ping), m.Pong)
            gated.open()
            assert await engine.persister.drain(timeout=20)


async def test_a_stop_refuses_new_work_while_it_drains_and_acks_what_it_accepted(
        tmp_path: Path) -> None:
    """Issue 16.4 in process: once a stop begins, answers, joins, host commands and new
    sessions get the retryable ``shutting_down`` (and 1012) while the drain runs; a durable
    answer accepted before the stop gets its ack before its connection is closed."""
    with trio.fail_after(60):
        async with gated_engine(tmp_path, ack_mode="durable") as (engine, address, gated):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(address.url))
                await host.host(session.code, host_token)
                ann, bob = [await stack.enter_async_context(open_client(address.url))
                            for _ in range(2)]
                await ann.join(session.code, "Ann")
                await bob.join(session.code, "Bob")
                await host.request(m.Start)
                q = (await ann.next_event(m.Question)).q
                assert await engine.persister.drain(timeout=10)
                gated.shut()
                replies: list[m.Message] = []

                async def ann_answers() -> None:
                    replies.append(await ann.answer(q, 0))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ann_answers)
                    await host.next_event(m.AnswerCount)  # accepted; its commit waits
                    assert not replies
                    nursery.start_soon(engine.shutdown)
                    await trio.testing.wait_all_tasks_blocked()
                    live = engine.sessions[session.code]
                    depth, phase = engine.persister.stats().depth, live.game.phase
                    for client, request in ((bob, bob.answer(q, 1)),
                                            (host, host.request(m.Close))):
                        with pytest.raises(RemoteError) as refused:
                            await request
                        assert refused.value.code is ErrorCode.SHUTTING_DOWN
                        assert refused.value.retryable
                        assert (await client.wait_closed()).code == CloseCode.SERVICE_RESTART
                    async with open_client(address.url) as late:
                        assert (await late.wait_closed()).code == CloseCode.SERVICE_RESTART
                    # Nothing changed and nothing was queued: the drain can only shrink it.
                    assert engine.persister.stats().depth == depth
                    assert live.game.phase == phase and not live.game.answers(q).keys() - {1}
                    gated.open()
                assert replies == [m.AnswerAck(rid=replies[0].rid, q=q)]  # type: ignore[attr-defined]
                assert (await ann.wait_closed()).code == CloseCode.SERVICE_RESTART
            results = await engine.store.session_results(session.code)
    assert [(a.participant_id, a.value) for a in results.answers] == [(1, 0)]


async def test_a_graceful_stop_without_redis_marks_what_nobody_carries_on(
        tmp_path: Path) -> None:
    """Issue 16.6: stopped without Redis, a live session is ``interrupted`` and a finished one
    ``finished``, each with its end time (before: both stayed ``live`` with no end)."""
    url = f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}"
    with trio.fail_after(60):
        async with gated_engine(tmp_path) as (engine, address, _gated):
            playing, _ = engine.create_session(short_quiz(), mode="solo")
            played, played_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host:
                await host.host(played.code, played_token)
                await host.request(m.End)
                await host.next_event(m.Ended)
            before = engine.clock()
            async with open_client(address.url) as player:
                await player.join(playing.code, "Ann")
                await engine.shutdown()
                closed = await player.wait_closed()
                assert closed.code == CloseCode.SERVICE_RESTART
    store = await open_store(url)
    try:
        rows = {code: await store.load_session(code) for code in (playing.code, played.code)}
    finally:
        await store.aclose()
    status = {code: (row.status, row.ended_at is not None and row.ended_at >= before)
              for code, row in rows.items() if row is not None}
    assert status == {playing.code: ("interrupted", True), played.code: ("finished", True)}


async def test_a_node_without_redis_interrupts_what_its_killed_run_left_live(
        tmp_path: Path) -> None:
    """Issue 16.6 after a kill: a run of node "n1" dies without a graceful stop (its sessions
    stay ``live`` in the database, nobody can carry them on); the next start of "n1" records
    them ``interrupted``. Another node's session and this run's own stay ``live``."""
    url = f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}"
    config = ServerConfig(port=0, data_dir=str(tmp_path), database_url=url, node_id="n1")
    with trio.fail_after(60):
        store = await open_store(url)
        try:
            for node in ("n1", "n2"):
                killed = Engine(attrs.evolve(config, node_id=node), store)
                async with trio.open_nursery() as nursery:
                    await nursery.start(killed.run)
                    session, _ = killed.create_session(short_quiz(), mode="solo")
                    if node == "n1":
                        left = session.code
                    else:
                        other = session.code
                    assert await killed.persister.drain(timeout=10)
                    nursery.cancel_scope.cancel()  # no graceful stop: as kill -9 leaves it
        finally:
            await store.aclose()
        assert (await _row(url, left)).status == "live"  # what the kill left
        started = time.time()
        async with running_engine(config) as (engine, _address):
            mine, _ = engine.create_session(short_quiz(), mode="solo")
            assert await engine.persister.drain(timeout=10)
            rows = {code: await engine.store.load_session(code)
                    for code in (left, other, mine.code)}
    status = {code: (row.status, row.owner_node, row.ended_at is not None
                     and row.ended_at >= started)
              for code, row in rows.items() if row is not None}
    assert status == {left: ("interrupted", "n1", True), other: ("live", "n2", False),
                      mine.code: ("live", "n1", False)}


async def _row(url: str, code: str) -> SessionRow:
    store = await open_store(url)
    try:
        row = await store.load_session(code)
    finally:
        await store.aclose()
    assert row is not None
    return row
