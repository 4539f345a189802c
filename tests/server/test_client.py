"""The thin Python client against a real engine: request ids across reconnects, retries of
retryable errors, and the join code in the URL (issue 16 point 1, issue 24 point 3, issue 17
point 2, client side)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from engine_fixtures import engine_at, short_quiz
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from pubquiz_engine.client import (
    Backoff,
    Client,
    ClientClosed,
    open_client,
    open_session_client,
    session_url,
)
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m


def test_session_url_adds_or_replaces_the_code() -> None:
    assert session_url("ws://127.0.0.1:8765/", "K7QX") == "ws://127.0.0.1:8765/?code=K7QX"
    assert session_url("wss://q.example/ws?x=1&code=OLD", "K7QX") == \
        "wss://q.example/ws?x=1&code=K7QX"


def test_backoff_doubles_up_to_its_limit_with_jitter() -> None:
    backoff = Backoff(first=1.0, factor=2.0, limit=5.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (50, 5.0)]:
        for _ in range(20):
            assert ceiling / 2 <= backoff.delay(attempt) <= ceiling


def test_backoff_honours_the_servers_retry_after_with_jitter_above_it() -> None:
    backoff = Backoff(first=0.1, factor=2.0, limit=5.0)
    for _ in range(20):
        assert 1.0 <= backoff.after(0, 1000) <= 2.0  # never sooner than the server asked
        assert 8.0 <= backoff.after(3, 8000) <= 8.0  # past the limit: exactly what it asked
        assert 0.05 <= backoff.after(0, None) <= 0.1  # no hint: the back-off


async def test_an_answer_after_a_resume_is_not_taken_for_an_earlier_one(tmp_path: Path) -> None:
    """rid is the answer's idempotency key per participant across connections: the resumed
    connection's requests must not reuse the ids of the first connection's."""
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host:
                await host.host(session.code, host_token)
                async with open_client(address.url) as first:
                    await first.join(session.code, "Ann")
                    token, last_seq = first.token, first.last_seq
                    await host.request(m.Start)
                    question = await first.next_event(m.Question)
                    await first.answer(question.q, 1)  # Lyon: wrong
                assert token is not None
                async with open_client(address.url) as second:
                    await second.resume(token, last_seq)
                    await second.answer(question.q, 0)  # Paris: the answer that counts
                    await host.request(m.Close)
                    await host.request(m.Reveal)
                    result = await second.next_event(m.Result)
                    assert result.correct and result.points == 2


async def test_request_ids_continue_from_a_saved_first_rid(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url, first_rid=41) as player:
                welcome = await player.join(session.code, "Ann")
                assert welcome.rid == 41 and player.next_rid == 42
            async with open_client(address.url) as a, open_client(address.url) as b:
                assert a.next_rid != b.next_rid  # random bases (a 1 in 2^30 chance to fail)
                assert 1 <= a.next_rid <= 2**30


async def test_a_retryable_refusal_is_retried_after_a_back_off(tmp_path: Path) -> None:
    """Joins are rate-limited per address (retryable): with retry the second join waits for
    the bucket to refill and gets in; without it the refusal is raised."""
    with trio.fail_after(30):
        async with engine_at(tmp_path, join_rate=5.0, join_burst=1) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
            async with open_client(address.url) as eager:
                with pytest.raises(RemoteError) as refused:
                    await eager.join(session.code, "Ben")
                assert refused.value.code is ErrorCode.RATE_LIMITED
            retry = Backoff(first=0.1, factor=2.0, limit=1.0, attempts=40)
            async with open_client(address.url, retry=retry) as patient:
                welcome = await patient.join(session.code, "Ben")
                assert welcome.name == "Ben"


async def test_a_session_client_puts_the_join_code_in_the_url(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")

            async def attach(client: Client) -> m.Welcome:
                return await client.host(session.code, host_token)

            async with open_session_client(address.url, session.code, attach) as host:
                assert host.ws.path == f"/?code={session.code}"
                assert host.welcome is not None and host.welcome.role == "host"


@contextlib.asynccontextmanager
async def _scripted_server(after_accept: bytes, after_close: bytes, *,
                           answer_close: bool = True) -> AsyncIterator[str]:
    """A WebSocket server (wsproto) that sends ``after_accept`` right behind its 101, and on
    the client's close frame ``after_close`` (frames as bytes), then (``answer_close``) its
    close's answer, and EOF. Yields its URL."""
    async def serve(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection(
                        subprotocol=event.subprotocols[0])) + after_accept)
                elif isinstance(event, CloseConnection):
                    answer = ws.send(event.response()) if answer_close else b""
                    await stream.send_all(after_close + answer)
                    await stream.aclose()
                    return

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        yield f"ws://127.0.0.1:{listener.socket.getsockname()[1]}/"
        nursery.cancel_scope.cancel()


async def test_a_ping_that_crosses_our_close_is_not_an_error() -> None:
    """The server pings while the client's close is on its way (an engine's keepalive does):
    trio-websocket 0.12 answers it with a pong that wsproto refuses in LOCAL_CLOSING
    (python-trio/trio-websocket#184), and its reader task dies. Leaving ``open_client`` must
    still be a clean exit; it takes the close's 5 s bound, since the dead reader never sees the
    close's answer."""
    # The ping, then the close's answer: the client reads the ping in LOCAL_CLOSING. (wsproto
    # will not send a ping after a close: the frame by hand.)
    with trio.fail_after(10):
        async with _scripted_server(b"", b"\x89\x01k") as url, open_client(url):
            pass  # connected; leaving closes it


async def test_a_request_after_the_server_closed_raises_client_closed() -> None:
    """The server may close at any moment (a takeover's 4104): a request sent after that must
    fail with ``ClientClosed`` and the server's code, as one whose reply never came does, not
    with the library's own exception (a flake of the zombie test under load)."""
    reason = b"another node took over this session"
    close_4104 = bytes((0x88, 2 + len(reason))) + (4104).to_bytes(2, "big") + reason
    with trio.fail_after(10):
        async with _scripted_server(close_4104, b"", answer_close=False) as url, \
                open_client(url) as client:
            assert (await client.wait_closed()).code == 4104
            with pytest.raises(ClientClosed) as closed:
                await client.request(m.Ping)
            assert closed.value.code == 4104
            with pytest.raises(ClientClosed):
                await client.send_raw(b"\x80")
