"""PostgreSQL black-holed while a statement is in flight (issue 16, point 7).

A black hole: no bytes, no FIN, no RST. The ``FaultProxy`` in ``stall`` mode is one the kernel
cannot see through: it keeps acknowledging what the engine sends, so neither TCP keepalives nor
``tcp_user_timeout`` ever fire through it, and ``statement_timeout`` is the server's, which never
got the statement. What must still hold:

- a cancelled database call returns at once (the store shuts its socket down) and reports the
  cancel; the store reconnects once the path is back;
- a graceful stop with a statement stalled ends while the database is *still* black-holed,
  and nothing was acked that was not committed.

Each test has a safety valve: if the path is still stalled after ``VALVE`` seconds it restores
it, so that an engine that waits for the database (as it did before) makes the test fail, not
hang. The tests assert the valve never opened.

The connection settings for a real network (keepalives, ``tcp_user_timeout``) are checked on
the socket itself.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio
from engine_fixtures import short_quiz
from proxykit import FaultProxy

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import running_engine
from pubquiz_engine.store import Store, open_store
from pubquiz_engine.store.postgres import PostgresStore
from pubquiz_engine.store.records import WriteOutcome

pytestmark = pytest.mark.postgres

VALVE = 60.0


class _Valve:
    """Restores the proxy after ``VALVE`` seconds unless closed first; ``opened`` says if it
    had to."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.opened = False
        self.scope = trio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            await trio.sleep(VALVE)
            self.opened = True
            self.proxy.restore()


class _WriteSeen:
    """A store whose ``writing`` event is set when a write starts (everything else passes)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writing = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, records: Any) -> WriteOutcome:
        self.writing.set()
        result: WriteOutcome = await self.inner.write(records)
        return result


async def test_a_cancelled_call_on_a_black_holed_connection_returns_at_once(
        postgres_url: str, pg_proxy: FaultProxy, nursery: trio.Nursery) -> None:
    valve = _Valve(pg_proxy)
    with trio.fail_after(VALVE + 30):
        store = await open_store(pg_proxy.url_for(postgres_url))
        try:
            assert await store.load_session("NOSUCH") is None  # the reader is connected
            pg_proxy.stall()
            nursery.start_soon(valve.run)
            with trio.move_on_after(0.5) as scope:
                await store.load_session("NOSUCH")
            assert scope.cancelled_caught  # reported as the cancel, not as a store error
            assert not valve.opened
            valve.scope.cancel()
            pg_proxy.restore()
            assert await store.load_session("NOSUCH") is None  # a fresh connection
        finally:
            await store.aclose()


async def test_a_stop_with_a_statement_black_holed_ends_and_acks_nothing_uncommitted(
        tmp_path: Path, postgres_url: str, pg_proxy: FaultProxy, nursery: trio.Nursery) -> None:
    valve = _Valve(pg_proxy)
    store = _WriteSeen(await open_store(pg_proxy.url_for(postgres_url)))
    config = ServerConfig(port=0, data_dir=str(tmp_path), drain_timeout=1.0, join_rate=1000.0,
                          join_burst=1000)
    try:
        with trio.fail_after(VALVE + 60):
            async with running_engine(config, store=store) as (engine, address):  # type: ignore[arg-type]
                session, host_token = engine.create_session(short_quiz(), mode="solo")
                async with open_client(address.url) as host, open_client(address.url) as ann:
                    await host.host(session.code, host_token)
                    await ann.join(session.code, "Ann")
                    await host.request(m.Start)
                    question = await ann.next_event(m.Question)
                    assert await engine.persister.drain(timeout=10)  # nothing in flight yet
                    pg_proxy.stall()
                    nursery.start_soon(valve.run)
                    store.writing = trio.Event()
                    await ann.send(m.Answer(rid=99, q=question.q, value=0))
                    await store.writing.wait()  # its batch is in psycopg, stalled
                    assert not await engine.shutdown()  # the drain gives up (drain_timeout)
                    assert (await ann.wait_closed()).code == CloseCode.SERVICE_RESTART
                    seen = []
                    while True:
                        try:
                            seen.append(ann.events.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    assert not [e for e in seen if isinstance(e, m.AnswerAck)]
            # running_engine's exit cancelled the write-behind, its statement still stalled.
            assert not valve.opened, "the stop waited for the database to come back"
    finally:
        valve.scope.cancel()
        pg_proxy.restore()
        with trio.fail_after(30):
            await store.inner.aclose()


async def test_connections_carry_keepalives_and_a_tcp_user_timeout(postgres_url: str) -> None:
    if not postgres_url.startswith("postgresql://") or "@/" in postgres_url:
        pytest.skip("needs a TCP connection to PostgreSQL")
    with trio.fail_after(30):
        store = await open_store(postgres_url)
        assert isinstance(store, PostgresStore)
        try:
            def options(conn: Any) -> tuple[int, int, int, int, int]:
                sock = socket.socket(fileno=conn.fileno())
                try:
                    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
                finally:
                    sock.detach()  # the descriptor is psycopg's

            for call in (store._write_call, store._read):
                assert await call(options) == (1, 10, 5, 3, 20_000)
        finally:
            await store.aclose()
