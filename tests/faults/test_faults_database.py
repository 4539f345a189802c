"""PostgreSQL away or slow, seen through the whole engine (reliability rows 3 and 2b).

The engine talks to the run's PostgreSQL through a ``FaultProxy``; the proxy, not the shared
server, is cut, stalled or slowed. Promises checked:

- cut (``fast`` acks): no crash; answers keep being accepted up to the write-behind bound, then
  refused with a retryable ``busy``; ``/health`` shows the depth, the lag and the failures
  rising; after the path comes back the queue empties (catch-up) and every accepted answer is
  in the database exactly once. The outage lasts ``PUBQUIZ_FAULT_DB_OUTAGE`` seconds (3 by
  default; the issue's 30 s: ``PUBQUIZ_FAULT_DB_OUTAGE=30``).
- stall (``durable`` acks): the acks wait (nothing acked that is not committed), then all arrive
  after the path resumes.
- slow (seconds per commit, ``durable``): acks arrive, late; the lag is visible meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import trio
from engine_fixtures import engine_at, short_quiz
from faultkit import health, wait_until
from proxykit import FaultProxy

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.store import open_store

pytestmark = pytest.mark.postgres

OUTAGE = float(os.environ.get("PUBQUIZ_FAULT_DB_OUTAGE", "3"))
PLAYERS = 30
QUEUE = 20  # write-behind bound: fewer than PLAYERS, so some answers must meet ``busy``


async def _stored_answers(postgres_url: str, code: str) -> list[tuple[int, int]]:
    """(participant, question) of every stored answer, read straight from PostgreSQL."""
    store = await open_store(postgres_url)
    try:
        results = await store.session_results(code)
    finally:
        await store.aclose()
    return sorted((a.participant_id, a.question) for a in results.answers)


async def test_database_cut_fast_acks_busy_lag_and_catch_up(
    tmp_path: Path, postgres_url: str, pg_proxy: FaultProxy
) -> None:
    with trio.fail_after(60 + 2 * OUTAGE):
        async with engine_at(tmp_path, database_url=pg_proxy.url_for(postgres_url),
                             ack_mode="fast", write_queue=QUEUE, write_batch=10,
                             message_rate=1000.0, message_burst=1000) as (engine, address):
            session, host_token = engine.create_session(short_quiz(time_limit=600), mode="solo")
            async with contextlib.AsyncExitStack() as stack:
                host, players = await _players(stack, address.url, session.code, host_token,
                                               PLAYERS)
                assert await engine.persister.drain(timeout=10)
                await host.request(m.Start)
                question = await players[0].next_event(m.Question)
                assert await engine.persister.drain(timeout=10)  # all up to date

                pg_proxy.cut()
                cut_at = trio.current_time()
                accepted: list[Client] = []
                busy: list[Client] = []
                for client in players:
                    try:
                        await client.request(m.Answer, q=question.q, value=0)
                    except RemoteError as exc:
                        assert exc.code is ErrorCode.BUSY and exc.retryable, exc
                        busy.append(client)
                    else:
                        accepted.append(client)
                # Exactly up to the bound (an answer is one record), and not one more.
                assert len(accepted) == QUEUE
                assert len(busy) == PLAYERS - len(accepted)
                # Alive: pings answered, the session goes on, /health answers.
                assert isinstance(await host.request(m.Ping), m.Pong)
                await trio.sleep(max(0.0, OUTAGE - (trio.current_time() - cut_at)))
                during = await health(address.port)
                assert during["status"] == "ok" and session.end_reason is None
                wb = during["write_behind"]
                assert wb["depth"] == len(accepted) and wb["max_queue"] == QUEUE
                assert wb["lag_seconds"] >= OUTAGE * 0.8
                assert wb["failures"] >= 2

                pg_proxy.restore()
                catch_up = await wait_until(lambda: engine.persister.stats().depth == 0,
                                            timeout=30)
                # The refused ones retry now and get in.
                for client in busy:
                    ack = await client.request(m.Answer, q=question.q, value=0)
                    assert isinstance(ack, m.AnswerAck)
                assert await engine.persister.drain(timeout=10)
                after = await health(address.port)
                assert after["write_behind"]["depth"] == 0
                assert after["write_behind"]["lag_seconds"] == 0
                print(f"\nPG cut {OUTAGE:.0f}s, fast acks: {len(accepted)} accepted, "
                      f"{len(busy)} busy; lag at restore {wb['lag_seconds']:.2f}s, "
                      f"{wb['failures']} failed commits; queue empty {catch_up:.2f}s "
                      f"after restore")
    stored = await _stored_answers(postgres_url, session.code)
    assert stored == sorted({(pid, 0) for pid in range(1, PLAYERS + 1)})  # each once


async def _players(stack: contextlib.AsyncExitStack, url: str, code: str, host_token: str,
                   n: int) -> tuple[Client, list[Client]]:
    """A host and ``n`` joined players (connections opened in the caller's task: each is a
    nursery and must close in the task that opened it)."""
    host = await stack.enter_async_context(open_client(url))
    await host.host(code, host_token)
    players = [await stack.enter_async_context(open_client(url)) for _ in range(n)]
    for i, client in enumerate(players):
        for attempt in range(100):  # a small queue may say busy: back off, as a phone does
            try:
                await client.join(code, f"P{i:02}")
                break
            except RemoteError as exc:
                assert exc.code is ErrorCode.BUSY, exc
                await trio.sleep(0.01 * (attempt + 1))
    return host, players


async def _answer_all(players: list[Client], q: int, acks: dict[int, float],
                      started: float) -> None:
    async with trio.open_nursery() as nursery:
        for i, client in enumerate(players):
            async def one(i: int = i, client: Client = client) -> None:
                await client.request(m.Answer, q=q, value=i % 3)
                acks[i] = trio.current_time() - started
            nursery.start_soon(one)


@pytest.mark.parametrize("fault", ["stall", "slow"])
async def test_database_stalled_or_slow_durable_acks_wait_then_arrive(
    tmp_path: Path, postgres_url: str, pg_proxy: FaultProxy, fault: str
) -> None:
    players_n = 10
    hold = 2.0  # seconds the path is stalled
    delay = 0.2  # seconds per chunk when slow: a commit is several round trips
    with trio.fail_after(60):
        async with engine_at(tmp_path, database_url=pg_proxy.url_for(postgres_url),
                             ack_mode="durable") as (engine, address):
            session, host_token = engine.create_session(short_quiz(time_limit=600), mode="solo")
            async with contextlib.AsyncExitStack() as stack:
                host, players = await _players(stack, address.url, session.code, host_token,
                                               players_n)
                await host.request(m.Start)
                question = await players[0].next_event(m.Question)
                assert await engine.persister.drain(timeout=10)

                acks: dict[int, float] = {}
                started = trio.current_time()
                if fault == "stall":
                    pg_proxy.stall()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_answer_all, players, question.q, acks, started)
                        await trio.sleep(hold)
                        # Nothing is acked while nothing can be committed.
                        assert acks == {}
                        wb = (await health(address.port))["write_behind"]
                        assert wb["depth"] >= 1 and wb["lag_seconds"] >= hold * 0.8
                        pg_proxy.restore()
                    assert min(acks.values()) >= hold
                else:
                    pg_proxy.slow(delay)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_answer_all, players, question.q, acks, started)
                        await wait_until(lambda: engine.persister.stats().depth > 0,
                                         timeout=5)
                        await trio.sleep(delay * 2)
                        wb = (await health(address.port))["write_behind"]
                        assert wb["depth"] >= 1 and wb["lag_seconds"] >= delay
                    pg_proxy.restore()
                    # Seconds per commit: slow, and never a wrong ack.
                    assert max(acks.values()) >= 4 * delay
                    assert engine.persister.stats().last_flush_seconds >= 4 * delay
                assert len(acks) == players_n
                print(f"\nPG {fault}: {players_n} durable acks after "
                      f"{min(acks.values()):.2f}..{max(acks.values()):.2f}s; "
                      f"lag seen {wb['lag_seconds']:.2f}s")
                assert await engine.persister.drain(timeout=10)
    stored = await _stored_answers(postgres_url, session.code)
    assert stored == [(pid, 0) for pid in range(1, players_n + 1)]
