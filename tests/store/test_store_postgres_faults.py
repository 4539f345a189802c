"""Real PostgreSQL faults under the write-behind: the writer's backend killed in the middle of
a batch (``pg_terminate_backend``), and the database refusing connections for a while.

Both use a private admin connection (to the ``postgres`` database) of the test's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from storekit import FlakyStore, answer, session

from pubquiz_engine.errors import QueueFull
from pubquiz_engine.store import Ticket, WriteBehind, open_store

pytestmark = pytest.mark.postgres

Codes = Callable[[], str]
WRITER = "pubquiz-engine:writer"


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Any]:
    import psycopg

    base, _, _ = postgres_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
        yield conn


def _dbname(url: str) -> str:
    return url.rpartition("/")[2]


async def _sql(conn: Any, query: str, *params: object) -> list[tuple[Any, ...]]:
    def run() -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []

    return await trio.to_thread.run_sync(run)


async def test_writer_killed_mid_batch(postgres_url: str, admin: Any, codes: Codes) -> None:
    import psycopg

    code = codes()
    db = _dbname(postgres_url)
    with trio.fail_after(60):
        store = await open_store(postgres_url)
        flaky = FlakyStore(store)  # injects nothing here: only counts the real failures
        try:
            async with trio.open_nursery() as nursery:
                wb = WriteBehind(flaky, max_batch=500, min_backoff=0.01, max_backoff=0.1)
                await nursery.start(wb.run)
                await wb.submit(session(code)).wait()

                # Hold a lock that blocks INSERTs into answers, so the next batch stops inside
                # its transaction (sessions locked, answers pending): "mid-flush" for sure.
                locker = psycopg.connect(postgres_url, autocommit=False, connect_timeout=5)
                try:
                    await _sql(locker, "LOCK TABLE answers IN SHARE ROW EXCLUSIVE MODE")
                    first = [wb.submit(answer(code, 1, rid)) for rid in range(300)]
                    pid = None
                    for _ in range(500):  # bounded poll of the server's view: no event exists
                        rows = await _sql(
                            admin,
                            "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                            " AND application_name = %s AND wait_event_type = 'Lock'",
                            db,
                            WRITER,
                        )
                        if rows:
                            pid = rows[0][0]
                            break
                        await trio.sleep(0.01)
                    assert pid is not None, "the writer never blocked inside its batch"
                    # Submits keep working while the flush is stuck.
                    second = [wb.submit(answer(code, 2, rid)) for rid in range(300)]
                    assert wb.stats().lag_seconds > 0
                    assert await _sql(admin, "SELECT pg_terminate_backend(%s)", pid) == [(True,)]
                finally:
                    await trio.to_thread.run_sync(locker.close)  # rolls back: lock released

                for ticket in first + second:
                    await ticket.wait()
                assert flaky.failed >= 1  # the killed batch failed and was retried
                assert await wb.drain(timeout=10)
                assert wb.stats().lag_seconds == 0.0
                nursery.cancel_scope.cancel()
            stored = await store.load_answers(code)
        finally:
            await store.aclose()
    keys = [(a.participant_id, a.request_id) for a in stored]
    assert len(keys) == len(set(keys)) == 600


async def test_database_refusing_connections(postgres_url: str, admin: Any, codes: Codes) -> None:
    code = codes()
    db = _dbname(postgres_url)
    with trio.fail_after(60):
        store = await open_store(postgres_url)
        flaky = FlakyStore(store)
        try:
            async with trio.open_nursery() as nursery:
                wb = WriteBehind(
                    flaky, max_queue=400, max_batch=100, min_backoff=0.01, max_backoff=0.05
                )
                await nursery.start(wb.run)
                await wb.submit(session(code)).wait()
                acked: list[Ticket] = [wb.submit(answer(code, 1, rid)) for rid in range(100)]
                for ticket in acked:
                    await ticket.wait()
                try:
                    await _sql(admin, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
                    await _sql(
                        admin,
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = %s AND application_name LIKE 'pubquiz-engine:%%'",
                        db,
                    )
                    pending = [wb.submit(answer(code, 2, rid)) for rid in range(400)]
                    with pytest.raises(QueueFull):
                        wb.submit(answer(code, 2, 400))
                    await flaky.wait_failures(4)  # reconnects refused, back-off rounds went by
                    lag_down = wb.stats().lag_seconds
                    assert lag_down > 0.02
                    assert not any(t.committed for t in pending)
                finally:
                    await _sql(admin, f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
                for ticket in pending:
                    await ticket.wait()
                late = wb.submit(answer(code, 2, 400))  # backpressure lifted
                await late.wait()
                assert await wb.drain(timeout=10)
                assert wb.stats().lag_seconds == 0.0
                nursery.cancel_scope.cancel()
            stored = await store.load_answers(code)
        finally:
            await store.aclose()
    keys = [(a.participant_id, a.request_id) for a in stored]
    assert len(keys) == len(set(keys)) == 501
