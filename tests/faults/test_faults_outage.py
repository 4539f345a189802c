"""A database or Redis outage on a client's path is a retryable ``unavailable``, never 1011
(issue 24 point 3).

Every store or Redis call a client frame or an HTTP request reaches is in one of these families,
and each is cut here, through a ``FaultProxy`` on the engine's path (the shared servers stay up):

- **takeover** (``resume``, ``join``, ``host``, ``watch`` of a session whose owner died): the
  database cut (or black-holed) before each of its steps (reading the session row, claiming it,
  replaying the answers, reading the last seq). Each client gets ``unavailable`` with
  ``retry_after_ms`` and keeps its connection; the lease taken for the failed attempt is
  released (no epoch has two owners); once the path is back every player resumes, exactly once,
  with its answer.
- **find / create** with Redis cut (``resume`` asks Redis who owns the session;
  ``create_session`` takes a lease), or cut as the takeover takes its lease: ``unavailable``,
  no session, no lease.
- **results** (``GET /results``) with the database cut: 503 with ``Retry-After``, then 200.

And over a real takeover, the epoch rule (SPEC 13.4): ``resume``, ``host`` and ``watch`` with
a ``last_seq`` of another epoch, or of no named epoch once the session was taken over, get a
full ``state``, never an ``events`` replay against the new owner's seqs.

Answers (durable acks wait for the commit) and joins on a live session make no store call on
the client's path: the write-behind queue takes them, and its bound answers ``busy``
(``test_faults_database``). ``/health`` reads no store at all.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from httpkit import http_get
from proxykit import FaultProxy

from pubquiz_engine.client import Backoff, Client, open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine
from pubquiz_engine.server.failover import OUTAGE_RETRY_AFTER_MS
from pubquiz_engine.store import open_store
from pubquiz_engine.web import serve

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

QUIZ = {
    "format": 1,
    "title": "Outage night",
    "rounds": [{"title": "R", "items": [
        {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon"],
         "answer": "Paris", "time_limit": 600, "points": 2},
    ]}],
}
PLAYERS = 6
KEY = "operator-key-for-outage-tests"


def _config(tmp_path: Path, name: str, database_url: str, redis_url: str, prefix: str,
            **settings: Any) -> ServerConfig:
    return ServerConfig(port=0, data_dir=str(tmp_path / name), database_url=database_url,
                        redis_url=redis_url, redis_prefix=prefix, node_id=name,
                        lease_ttl_ms=10_000, join_rate=1000.0, join_burst=1000,
                        message_rate=1000.0, message_burst=1000, orphan_scan_interval=0.0,
                        operator_key=KEY, **settings)


@contextlib.asynccontextmanager
async def _node(config: ServerConfig
                ) -> AsyncIterator[tuple[Engine, EngineAddress, Callable[[], Awaitable[None]]]]:
    """An engine and ``crash()``: die as kill -9 would as far as Redis can tell (no lease
    release, no final snapshot), returning once the engine has stopped."""
    store = await open_store(config.resolved_database_url())
    try:
        engine = Engine(config, store)
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[EngineAddress]) -> None:
            try:
                with scope:
                    await engine.run(task_status=task_status)
            finally:
                stopped.set()

        async def crash() -> None:
            engine.coord = None
            scope.cancel()
            await stopped.wait()

        async with trio.open_nursery() as nursery:
            address = await nursery.start(run)
            yield engine, address, crash
            scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


def _lease_owner(redis_url: str, prefix: str, code: str) -> bytes | None:
    client = redis.Redis.from_url(redis_url)
    try:
        value: bytes | None = client.get(f"{prefix}lease:{{{code}}}")
        return value
    finally:
        client.close()


def _expire_lease(redis_url: str, prefix: str, code: str) -> None:
    """The dead owner's lease lapses now (deleted: what an expired key is to every reader)."""
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.delete(f"{prefix}lease:{{{code}}}") == 1
    finally:
        client.close()


async def _refused_unavailable(client: Client, cls: type[m.Message], **fields: Any) -> None:
    """``client``'s request is refused ``unavailable`` with ``retry_after_ms``, and the
    connection stays open (a ping is answered): no 1011, no dropped connection."""
    with pytest.raises(RemoteError) as refused:
        await client.request(cls, **fields)
    assert refused.value.code is ErrorCode.UNAVAILABLE, refused.value
    assert refused.value.retryable
    assert refused.value.retry_after_ms == OUTAGE_RETRY_AFTER_MS
    assert isinstance(await client.request(m.Ping), m.Pong)
    assert client.closed is None


@contextlib.asynccontextmanager
async def _played_then_dead(tmp_path: Path, postgres_url: str, redis_url: str, prefix: str,
                            b_database_url: str, b_redis_url: str, **b_settings: Any
                            ) -> AsyncIterator[tuple[Engine, EngineAddress, str, str, int,
                                                     dict[int, tuple[str, int]]]]:
    """Node a runs a session: PLAYERS players join and answer question 0 (player i answers
    i % 2, acked durably), then a dies and its lease lapses. Yields node b (reaching the
    database and Redis at the given URLs), its address, the code, the host token, a's epoch
    and {participant: (resume token, last_seq)}."""
    async with _node(_config(tmp_path, "a", postgres_url, redis_url, prefix)) as (
            a, addr_a, crash_a), \
            _node(_config(tmp_path, "b", b_database_url, b_redis_url, prefix,
                          **b_settings)) as (
            b, addr_b, _):
        session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
        code, epoch = session.code, session.epoch
        seen: dict[int, tuple[str, int]] = {}
        async with contextlib.AsyncExitStack() as stack:
            host = await stack.enter_async_context(open_client(addr_a.url))
            await host.host(code, host_token)
            players = []
            for i in range(PLAYERS):
                player = await stack.enter_async_context(open_client(addr_a.url))
                await player.join(code, f"P{i}")
                players.append(player)
            await host.request(m.Start)
            for i, player in enumerate(players):
                question = await player.next_event(m.Question)
                await player.answer(question.q, i % 2)
                assert player.welcome is not None and player.token is not None
                seen[player.welcome.participant or 0] = (player.token, player.last_seq)
        await crash_a()
        _expire_lease(redis_url, prefix, code)
        yield b, addr_b, code, host_token, epoch, seen


@pytest.mark.parametrize("step", ["load_session", "claim_session", "load_answers",
                                  "last_seq"])
async def test_a_database_cut_during_a_takeover_is_unavailable_then_everyone_resumes(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    pg_proxy: FaultProxy, step: str
) -> None:
    with trio.fail_after(60):
        async with _played_then_dead(tmp_path, postgres_url, redis_url, redis_prefix,
                                     pg_proxy.url_for(postgres_url), redis_url) as (
                b, addr_b, code, host_token, first_epoch, seen):
            # The path to the database goes away just before ``step`` of b's takeover (the
            # issue's 1011 was a cut before ``claim_session``, with the lease already taken).
            original = getattr(b.store, step)
            calls = 0

            async def cut_then_call(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == 1:
                    pg_proxy.cut()
                return await original(*args, **kwargs)

            setattr(b.store, step, cut_then_call)
            async with contextlib.AsyncExitStack() as stack:
                first = await stack.enter_async_context(open_client(addr_b.url))
                token, last_seq = next(iter(seen.values()))
                await _refused_unavailable(first, m.Resume, token=token, last_seq=last_seq)
                assert calls == 1
                # Nothing half done: no session, the lease released, b renews nothing.
                assert code not in b.sessions
                assert b.coord is not None and b.coord.keeper.lease_of(code) is None
                assert _lease_owner(redis_url, redis_prefix, code) is None
                # While the database is away every way in is refused the same way.
                await _refused_unavailable(first, m.Resume, token=token, last_seq=last_seq)
                other = await stack.enter_async_context(open_client(addr_b.url))
                await _refused_unavailable(other, m.Host, code=code, token=host_token)
                other = await stack.enter_async_context(open_client(addr_b.url))
                await _refused_unavailable(other, m.Watch, code=code)
                other = await stack.enter_async_context(open_client(addr_b.url))
                await _refused_unavailable(other, m.Join, code=code, name="Late", team=None)
                assert code not in b.sessions

            pg_proxy.restore()
            async with contextlib.AsyncExitStack() as stack:
                # Every player resumes once the path is back, all at once and each at the first
                # attempt (no retry): one takeover, the others on b wait for it (before, they
                # got ``busy``: "another node is taking this session over").
                resumed = {pid: await stack.enter_async_context(open_client(addr_b.url))
                           for pid in seen}
                async with trio.open_nursery() as nursery:  # all at once, as a pub does
                    for pid, (token, last_seq) in seen.items():
                        nursery.start_soon(resumed[pid].resume, token, last_seq)
                restored = b.sessions[code]
                assert restored.epoch > first_epoch
                for pid, client in resumed.items():
                    assert client.welcome is not None
                    assert client.welcome.participant == pid
                    assert client.welcome.epoch == restored.epoch
                    assert client.welcome.replay == "state"
                    state = await client.next_event(m.State)
                    assert state.state["phase"] == "question_open"
                    assert state.state["you"]["answer"] == (pid - 1) % 2
            assert b.coord is not None and b.coord.keeper.lease_of(code) is not None
            row = await b.store.load_session(code)
            assert row is not None and row.epoch == restored.epoch and row.owner_node == "b"


async def test_a_database_black_hole_during_a_takeover_is_unavailable_not_a_timeout(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    pg_proxy: FaultProxy
) -> None:
    """The path to the database goes silent (no error, no FIN): the takeover is abandoned
    after half the join timeout and the client is told ``unavailable``; before, it waited
    out its join timeout and was closed (``handshake_timeout``, 1008)."""
    with trio.fail_after(60):
        async with _played_then_dead(tmp_path, postgres_url, redis_url, redis_prefix,
                                     pg_proxy.url_for(postgres_url), redis_url,
                                     join_timeout=4.0) as (
                b, addr_b, code, _host_token, first_epoch, seen):
            token, last_seq = next(iter(seen.values()))
            pg_proxy.stall()
            async with open_client(addr_b.url) as client:
                await _refused_unavailable(client, m.Resume, token=token, last_seq=last_seq)
            assert code not in b.sessions
            assert b.coord is not None and b.coord.keeper.lease_of(code) is None
            assert _lease_owner(redis_url, redis_prefix, code) is None
            pg_proxy.restore()
            async with open_client(addr_b.url,
                                   retry=Backoff(first=0.05, limit=2.0, attempts=20)) as client:
                welcome = await client.resume(token, last_seq, first_epoch)
                assert welcome.epoch > first_epoch and welcome.replay == "state"


async def test_redis_cut_find_and_create_are_unavailable_and_take_no_lease(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    nursery: trio.Nursery
) -> None:
    redis_proxy = FaultProxy.for_url(redis_url)
    await nursery.start(redis_proxy.run)
    with trio.fail_after(60):
        async with _played_then_dead(tmp_path, postgres_url, redis_url, redis_prefix,
                                     postgres_url, redis_proxy.url_for(redis_url)) as (
                b, addr_b, code, _host_token, first_epoch, seen):
            redis_proxy.cut()
            token, last_seq = next(iter(seen.values()))
            async with open_client(addr_b.url) as client:
                await _refused_unavailable(client, m.Resume, token=token, last_seq=last_seq)
            async with open_client(addr_b.url) as operator:
                await _refused_unavailable(operator, m.CreateSession, key=KEY,
                                           quiz=QUIZ, mode="solo")
            assert code not in b.sessions and not b.sessions
            assert b.coord is not None and b.coord.keeper.stats().held == 0
            redis_proxy.restore()
            async with open_client(addr_b.url,
                                   retry=Backoff(first=0.05, limit=2.0, attempts=20)) as client:
                welcome = await client.resume(token, last_seq)
                assert welcome.epoch > first_epoch and welcome.replay == "state"
            async with open_client(addr_b.url,
                                   retry=Backoff(first=0.05, limit=2.0, attempts=20)) as op:
                created = await op.create_session(KEY, quiz=QUIZ, mode="solo")
                assert created.code in b.sessions


async def test_redis_cut_in_the_middle_of_a_takeover_is_unavailable(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
    nursery: trio.Nursery
) -> None:
    """Redis goes away after the takeover read the session row, as it takes the lease: the
    client gets ``unavailable``, no lease is held, and the next attempt takes the session."""
    redis_proxy = FaultProxy.for_url(redis_url)
    await nursery.start(redis_proxy.run)
    with trio.fail_after(60):
        async with _played_then_dead(tmp_path, postgres_url, redis_url, redis_prefix,
                                     postgres_url, redis_proxy.url_for(redis_url)) as (
                b, addr_b, code, _host_token, first_epoch, seen):
            assert b.coord is not None
            keeper = b.coord.keeper
            original = keeper.acquire

            async def cut_then_acquire(*args: Any, **kwargs: Any) -> Any:
                redis_proxy.cut()
                return await original(*args, **kwargs)

            keeper.acquire = cut_then_acquire  # type: ignore[method-assign]
            token, last_seq = next(iter(seen.values()))
            async with open_client(addr_b.url) as client:
                await _refused_unavailable(client, m.Resume, token=token, last_seq=last_seq)
            keeper.acquire = original  # type: ignore[method-assign]
            assert code not in b.sessions and keeper.lease_of(code) is None
            assert _lease_owner(redis_url, redis_prefix, code) is None
            redis_proxy.restore()
            async with open_client(addr_b.url) as client:
                welcome = await client.resume(token, last_seq, first_epoch)
                assert welcome.epoch > first_epoch and welcome.replay == "state"


@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_results_while_the_database_is_away_is_503_with_retry_after(
    tmp_path: Path, postgres_url: str, pg_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
    fault: str
) -> None:
    """Cut (errors at once) or stalled (silence: before, the request hung until TCP gave up),
    ``/results`` answers 503 with ``Retry-After``, then 200 once the path is back."""
    monkeypatch.setattr(serve, "RESULTS_DRAIN_SECONDS", 0.5)
    monkeypatch.setattr(serve, "RESULTS_READ_SECONDS", 1.0)
    config = ServerConfig(port=0, data_dir=str(tmp_path),
                          database_url=pg_proxy.url_for(postgres_url), ack_mode="fast",
                          join_rate=1000.0, join_burst=1000)
    with trio.fail_after(60):
        async with running_engine(config) as (engine, address):
            session, host_token = engine.create_session(load_quiz_data(QUIZ), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                assert await engine.persister.drain(timeout=10)
                await host.request(m.Start)
                question = await ann.next_event(m.Question)
                if fault == "cut":
                    pg_proxy.cut()
                else:
                    pg_proxy.stall()
                await ann.answer(question.q, 0)  # fast: acked, queued, not committed
                headers = {"Authorization": f"Bearer {host_token}"}
                target = f"/results?code={session.code}&format=json"
                status, response_headers, _ = await http_get(address.port, target,
                                                             headers=headers)
                assert status == 503
                assert response_headers.get("retry-after") == "5"
                pg_proxy.restore()
                assert await engine.persister.drain(timeout=20)
                status, _, body = await http_get(address.port, target, headers=headers)
                assert status == 200
                answers = json.loads(body)["answers"]
                assert [(a["participant_id"], a["question"]) for a in answers] == [(1, 0)]


async def test_a_changed_epoch_always_gives_state(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """SPEC 13.4 over a real takeover (issue 24, issue 16 point 5): a ``last_seq`` of the old
    epoch is never compared with the new epoch's seqs. The client's ``last_seq`` is set to the
    new owner's current seq, the one value an ``events`` replay would accept: what a client
    holds when the old owner broadcast events it never stored and the new owner reused their
    seqs."""
    with trio.fail_after(60):
        async with _played_then_dead(tmp_path, postgres_url, redis_url, redis_prefix,
                                     postgres_url, redis_url) as (
                b, addr_b, code, host_token, old_epoch, seen):
            (first_pid, (first_token, first_seq)), *others = seen.items()
            async with contextlib.AsyncExitStack() as stack:
                taker = await stack.enter_async_context(open_client(addr_b.url))
                await taker.resume(first_token, first_seq, old_epoch)  # takes it over
                restored = b.sessions[code]
                new_epoch = restored.epoch
                assert new_epoch > old_epoch
                host = await stack.enter_async_context(open_client(addr_b.url))
                await host.host(code, host_token, epoch=new_epoch)
                await host.request(m.Close)  # a few events of the new epoch
                await host.request(m.Reveal)
                seq = restored.seq
                assert seq > 0

                async def welcome(cls: type[m.Message], **fields: Any) -> m.Welcome:
                    client = await stack.enter_async_context(open_client(addr_b.url))
                    reply = await client.request(cls, **fields)
                    assert isinstance(reply, m.Welcome) and reply.epoch == new_epoch
                    return reply

                token = others[0][1][0]
                for epoch in (old_epoch, None):  # the old epoch, or none named: state
                    for cls, fields in ((m.Resume, {"token": token}),
                                        (m.Host, {"code": code, "token": host_token}),
                                        (m.Watch, {"code": code})):
                        reply = await welcome(cls, last_seq=seq, epoch=epoch, **fields)
                        assert reply.replay == "state", (cls.TYPE, epoch)
                # The current epoch: the seqs compare, the missed events follow.
                reply = await welcome(m.Resume, token=token, last_seq=seq, epoch=new_epoch)
                assert reply.replay == "events"
                reply = await welcome(m.Watch, code=code, last_seq=seq - 1, epoch=new_epoch)
                assert reply.replay == "events"
            assert first_pid in restored.game.participants
