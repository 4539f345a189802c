"""Tests of the WebSocket/HTTP transport over real sockets.

Rules: every server binds 127.0.0.1 port 0; every test body runs under ``trio.fail_after``;
conditions are awaited (events, reads), never slept for. Clients are trio-websocket (the real
client the project uses) or, where a test needs a misbehaving peer (never answering pings,
fragmenting, stopping reads, slowloris), a raw socket driven by wsproto's client side.
Tests that exercise the write path run with and without ``coalesce_writes``.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import hypothesis
import pytest
import trio
import trio.lowlevel
import trio_websocket
from httpkit import http_exchange, http_get
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.frame_protocol import FrameProtocol

from pubquiz_engine.errors import CloseCode, PubquizError
from pubquiz_engine.server.http import HttpRequest, HttpResponse, Router, text_response
from pubquiz_engine.server.transport import (
    ConnectionClosed,
    ListenerInfo,
    TransportConfig,
    WebSocket,
    frame_binary,
    serve,
)
from pubquiz_engine.server.transport import server as transport_server
from pubquiz_engine.server.transport.reader import epoll_available

SUB = "pubquiz.v1"
HOST = "127.0.0.1"
both_write_modes = pytest.mark.parametrize("coalesce", [True, False], ids=["coalesce", "eager"])


@pytest.fixture(autouse=True, params=["epoll", "portable"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every transport test runs on both readers: the Linux one (one task reads every ready
    socket per pass) and the portable one (a task per connection)."""
    kind: str = request.param
    if kind == "epoll" and not epoll_available():
        pytest.skip("no select.epoll here")
    original = transport_server.make_reader
    monkeypatch.setattr(
        transport_server, "make_reader",
        lambda config, counters: original(attrs.evolve(config, reader=kind), counters),
    )
    return kind


async def start(
    nursery: trio.Nursery,
    handler: Callable[[WebSocket], Awaitable[object]],
    config: TransportConfig | None = None,
    http_handler: Callable[[HttpRequest], Awaitable[HttpResponse]] | None = None,
) -> ListenerInfo:
    info: ListenerInfo = await nursery.start(
        functools.partial(
            serve, handler, host=HOST, port=0, config=config, http_handler=http_handler
        )
    )
    return info


async def echo(ws: WebSocket) -> None:
    while True:
        data = await ws.receive()
        if isinstance(data, str):
            ws.send_text(data)
        else:
            ws.send(data)


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"k3y!") -> bytes:
    """A client frame built by hand (for payloads a client library refuses to send)."""
    n = len(payload)
    head = bytes((opcode | (0x80 if fin else 0),))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@asynccontextmanager
async def client(
    port: int, *, subprotocols: list[str] | None = None, **kwargs: object
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    async with trio_websocket.open_websocket(
        HOST,
        port,
        "/play?code=ABCD",
        use_ssl=False,
        subprotocols=[SUB] if subprotocols is None else subprotocols,
        **kwargs,  # type: ignore[arg-type]
    ) as ws:
        try:
            yield ws
        finally:
            # trio-websocket 0.12 leaks the client socket when the server closes first (its
            # aclose() returns early once a close reason is known): close it ourselves.
            await ws._stream.aclose()


class RawClient:
    """A WebSocket client on a raw trio socket, doing only what a test tells it to."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawClient:
        sock = trio.socket.socket()
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect((HOST, port))
        self = cls(trio.SocketStream(sock))
        await self.stream.send_all(self.ws.send(Request(host=HOST, target="/", subprotocols=[SUB])))
        accept = await self.next_event()
        assert isinstance(accept, AcceptConnection)
        return self

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def next_event(self) -> Event:
        """The next event (pings are NOT answered); raises EOFError at end of stream."""
        while not self.events:
            if self.eof:
                raise EOFError
            data = await self.stream.receive_some(65536)
            if not data:
                self.eof = True
                self.ws.receive_data(None)
            else:
                self.ws.receive_data(data)
            self.events.extend(self.ws.events())
        return self.events.pop(0)

    async def close_event(self) -> CloseConnection:
        """Read (dropping data and pings) until the server's close frame."""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                return event


RawConnect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def raw_connect() -> AsyncIterator[RawConnect]:
    """``await raw_connect(port, rcvbuf=None)``: a handshaken RawClient, closed after the test."""
    opened: list[RawClient] = []

    async def connect(port: int, *, rcvbuf: int | None = None) -> RawClient:
        raw = await RawClient.connect(port, rcvbuf=rcvbuf)
        opened.append(raw)
        return raw

    yield connect
    for raw in opened:
        await raw.stream.aclose()


async def rejected(
    port: int, *, subprotocols: list[str], extra_headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes]:
    """Attempt a handshake expected to be refused; the HTTP status and body.

    (Not trio-websocket: 0.12 leaks its socket when a connection is rejected.)
    """
    async with await trio.open_tcp_stream(HOST, port) as stream:
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=HOST, target="/", subprotocols=subprotocols, extra_headers=extra_headers or []
        )
        await stream.send_all(ws.send(request))
        status, body = 0, b""
        while chunk := await stream.receive_some(65536):
            ws.receive_data(chunk)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    status = event.status_code
                elif isinstance(event, RejectData):
                    body += event.data
                else:  # pragma: no cover - only reached if the server accepted
                    raise AssertionError(f"not rejected: {event!r}")
        return status, body


# -- framing (pure) ----------------------------------------------------------------------------


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    st.one_of(
        st.binary(max_size=300),
        st.integers(min_value=125, max_value=70_000).map(lambda n: b"\x5a" * n),
    )
)
def test_frame_binary_matches_wsproto(payload: bytes) -> None:
    assert frame_binary(payload) == bytes(
        FrameProtocol(client=False, extensions=[]).send_data(payload)
    )


def test_connection_closed_is_a_pubquiz_error() -> None:
    exc = ConnectionClosed(4101, "slow")
    assert isinstance(exc, PubquizError)
    assert (exc.code, exc.reason) == (4101, "slow")


def test_config_defaults_and_validation() -> None:
    config = TransportConfig()
    assert config.max_message_size == 64 * 1024
    assert config.subprotocol == SUB
    assert config.allowed_origins == ()
    with pytest.raises(ValueError, match="ping_timeout"):
        TransportConfig(ping_timeout=0)


# -- HTTP router (pure) ------------------------------------------------------------------------


async def _ok(request: HttpRequest) -> HttpResponse:
    return text_response(200, f"ok {request.query}")


async def test_router_404_405_head() -> None:
    router = Router({"/health": {"GET": _ok}})
    assert (await router(HttpRequest("GET", "/health", "x=1"))).body == b"ok x=1"
    assert (await router(HttpRequest("GET", "/nope"))).status == 404
    response = await router(HttpRequest("POST", "/health"))
    assert response.status == 405
    assert ("allow", "GET, HEAD") in response.headers
    head = await router(HttpRequest("HEAD", "/health"))
    assert (head.status, head.body) == (200, b"")


# -- handshake and HTTP --------------------------------------------------------------------------


@both_write_modes
async def test_handshake_with_subprotocol_and_binary_echo(
    nursery: trio.Nursery, coalesce: bool
) -> None:
    seen: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(ws)
        await echo(ws)

    with trio.fail_after(5):
        info = await start(nursery, handler, TransportConfig(coalesce_writes=coalesce))
        async with client(info.port, extra_headers=[("X-Forwarded-For", "10.1.2.3")]) as ws:
            assert ws.subprotocol == SUB
            for size in (0, 1, 125, 126, 65535, 65536 - 100):
                payload = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
                await ws.send_message(payload)
                assert await ws.get_message() == payload
        server_ws = seen[0]
        assert server_ws.subprotocol == SUB
        assert server_ws.request_path == "/play?code=ABCD"
        assert ("x-forwarded-for", "10.1.2.3") in server_ws.request_headers
        assert server_ws.remote_address[0] == HOST
        await server_ws.wait_closed()
        assert server_ws.closed
        stats = info.statistics()
        assert stats.connections_total == 1
        assert stats.connections_open == 0
        assert stats.frames_in == 6
        assert stats.bytes_out > 2 * 65_000



async def test_a_burst_over_one_accept_wakeup_is_served_whole(nursery: trio.Nursery) -> None:
    """The accept loop takes at most ``_ACCEPT_PER_WAKEUP`` connections per wakeup and lets
    the runnable tasks go first: a burst three times that, queued before the loop runs
    (blocking connects and requests, no checkpoint in between), is still served whole."""
    burst = 3 * transport_server._ACCEPT_PER_WAKEUP + 5
    with trio.fail_after(10):
        info = await start(nursery, echo, TransportConfig())
        clients: list[tuple[socket.socket, WSConnection]] = []
        for _ in range(burst):
            sock = socket.create_connection((HOST, info.port))
            ws = WSConnection(ConnectionType.CLIENT)
            sock.sendall(ws.send(Request(host=HOST, target="/", subprotocols=[SUB])))
            clients.append((sock, ws))
        echoed = 0

        async def talk(sock: socket.socket, ws: WSConnection, i: int) -> None:
            nonlocal echoed
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            payload = f"client {i}".encode()
            accepted = False
            while True:
                data = await stream.receive_some(65536)
                assert data, "closed before the echo"
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        accepted = True
                        await stream.send_all(ws.send(BytesMessage(data=payload)))
                    elif isinstance(event, BytesMessage):
                        assert accepted and bytes(event.data) == payload
                        echoed += 1
                        await stream.aclose()
                        return

        async with trio.open_nursery() as talkers:
            for i, (sock, ws) in enumerate(clients):
                talkers.start_soon(talk, sock, ws, i)
        assert echoed == burst
        assert info.statistics().connections_total == burst


async def test_handshake_without_subprotocol_is_rejected_with_400(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo)
        status, body = await rejected(info.port, subprotocols=[])
        assert status == 400
        assert SUB.encode() in body
        status, _ = await rejected(info.port, subprotocols=["other.v2"])
        assert status == 400
        assert info.statistics().handshake_failures == 2


async def test_plain_http_is_answered_by_the_http_handler(nursery: trio.Nursery) -> None:
    router = Router({"/health": {"GET": _ok}})
    with trio.fail_after(5):
        info = await start(nursery, echo, http_handler=router)
        status, headers, body = await http_exchange(
            info.port, b"GET /health?deep=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert (status, body) == (200, b"ok deep=1")
        assert headers["content-length"] == str(len(body))
        assert headers["connection"] == "close"
        status, _, _ = await http_exchange(info.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        status, headers, _ = await http_exchange(
            info.port, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        )
        assert status == 405
        assert headers["allow"] == "GET, HEAD"
        assert info.statistics().http_requests == 3


async def test_without_http_handler_every_path_is_404(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo)
        status, _, body = await http_get(info.port, "/metrics")
        assert status == 404
        assert b"/metrics" in body


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"X-Big: " + b"a" * 10_000 + b"\r\n", id="big-header"),
        pytest.param(b"".join(b"X-H%d: v\r\n" % i for i in range(70)), id="many-headers"),
    ],
)
async def test_oversized_headers_get_431(nursery: trio.Nursery, extra: bytes) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo, TransportConfig(max_header_bytes=8192, max_headers=64))
        status, _, _ = await http_get(info.port, "/", extra=extra)
        assert status == 431


async def test_origin_allow_list(nursery: trio.Nursery) -> None:
    config = TransportConfig(allowed_origins=("https://quiz.example",))
    with trio.fail_after(5):
        info = await start(nursery, echo, config)
        evil = [(b"Origin", b"https://evil.example")]
        status, _ = await rejected(info.port, subprotocols=[SUB], extra_headers=evil)
        assert status == 403
        status, _ = await rejected(info.port, subprotocols=[SUB])  # no Origin at all
        assert status == 403
        async with client(info.port, extra_headers=[("Origin", "https://quiz.example")]) as ws:
            await ws.send_message(b"hi")
            assert await ws.get_message() == b"hi"


async def test_frames_pipelined_behind_the_handshake_are_not_lost(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo)
        raw = RawClient(await trio.open_tcp_stream(HOST, info.port))
        handshake = raw.ws.send(Request(host=HOST, target="/", subprotocols=[SUB]))
        # A client frame sent in the same segment as the request, before the 101 arrives.
        early = FrameProtocol(client=True, extensions=[]).send_data(b"early")
        await raw.stream.send_all(handshake + bytes(early))
        assert isinstance(await raw.next_event(), AcceptConnection)
        message = await raw.next_event()
        assert isinstance(message, BytesMessage)
        assert message.data == b"early"
        await raw.stream.aclose()


async def test_slowloris_is_closed_at_the_handshake_timeout(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo, TransportConfig(handshake_timeout=0.3))
        stream = await trio.open_tcp_stream(HOST, info.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = trio.current_time()
        assert await stream.receive_some(1024) == b""  # the server hung up
        assert 0.25 <= trio.current_time() - started < 3
        await stream.aclose()


async def test_a_silent_connection_is_still_closed_at_the_handshake_timeout(
    nursery: trio.Nursery,
) -> None:
    """With ``defer_accept`` the kernel holds a connection until its first bytes; one that
    sends none is handed over later all the same, and meets the handshake timeout."""
    with trio.fail_after(15):
        info = await start(nursery, echo, TransportConfig(handshake_timeout=0.3))
        stream = await trio.open_tcp_stream(HOST, info.port)
        assert await stream.receive_some(1024) == b""  # the server hung up
        assert info.statistics().handshake_failures == 0
        await stream.aclose()


@pytest.mark.skipif(not hasattr(socket, "TCP_DEFER_ACCEPT"), reason="Linux only")
@pytest.mark.parametrize("defer", [True, False])
async def test_defer_accept_is_set_on_the_listener(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, defer: bool
) -> None:
    listeners: list[socket.socket] = []

    class Recording(socket.socket):
        def listen(self, backlog: int = 0, /) -> None:
            listeners.append(self)
            super().listen(backlog)

    monkeypatch.setattr(transport_server.socket, "socket", Recording)
    await start(nursery, echo, TransportConfig(defer_accept=defer))
    [listener] = listeners
    value = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)
    assert (value > 0) is defer


# -- receiving -------------------------------------------------------------------------------


async def test_text_messages_are_delivered_as_str(nursery: trio.Nursery) -> None:
    """Text is an application's choice, not the transport's (pubquiz.v1 refuses it in the
    connection layer): the transport delivers it as ``str`` and can send it."""
    received: list[bytes | str] = []

    async def handler(ws: WebSocket) -> None:
        data = await ws.receive()
        received.append(data)
        assert isinstance(data, str)
        ws.send_text(data.upper())
        received.append(await ws.receive())

    with trio.fail_after(5):
        info = await start(nursery, handler)
        async with client(info.port) as ws:
            await ws.send_message("grüße, 🎉")
            assert await ws.get_message() == "GRÜSSE, 🎉"
            await ws.send_message(b"binary stays bytes")
            with pytest.raises(trio_websocket.ConnectionClosed):
                await ws.get_message()
        assert received == ["grüße, 🎉", b"binary stays bytes"]


async def test_fragmented_text_is_reassembled_across_a_split_character(
    nursery: trio.Nursery, raw_connect: RawConnect
) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo)
        raw = await raw_connect(info.port)
        data = "κόσμε".encode()
        # The split falls inside a two-byte character.
        await raw.stream.send_all(masked_frame(0x1, data[:3], fin=False)
                                  + masked_frame(0x0, data[3:7], fin=False)
                                  + masked_frame(0x0, data[7:]))
        message = await raw.next_event()
        assert isinstance(message, Message)
        assert message.data == "κόσμε"


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
async def test_invalid_utf8_in_text_closes_1007(
    nursery: trio.Nursery, raw_connect: RawConnect, fragmented: bool
) -> None:
    errors: list[ConnectionClosed] = []
    done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            while True:
                await ws.receive()
        except ConnectionClosed as exc:
            errors.append(exc)
            done.set()
            raise

    with trio.fail_after(5):
        info = await start(nursery, handler)
        raw = await raw_connect(info.port)
        bad = b"ok " + b"\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80"
        if fragmented:
            # Invalid in the second fragment, and no final one: refused as soon as seen.
            await raw.stream.send_all(masked_frame(0x1, bad[:5], fin=False)
                                      + masked_frame(0x0, bad[5:], fin=False))
        else:
            await raw.stream.send_all(masked_frame(0x1, bad))
        close = await raw.close_event()
        assert close.code == 1007
        await raw.send(CloseConnection(code=close.code))
        await done.wait()
        assert errors[0].code == 1007


async def test_text_over_the_message_cap_closes_1009(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo, TransportConfig(max_message_size=1024))
        async with client(info.port) as ws:
            await ws.send_message("é" * 513)  # 1,026 bytes of UTF-8
            with pytest.raises(trio_websocket.ConnectionClosed) as caught:
                await ws.get_message()
            assert caught.value.reason is not None
            assert caught.value.reason.code == CloseCode.MESSAGE_TOO_BIG


async def test_oversized_message_closes_1009_and_others_keep_working(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo, TransportConfig(max_message_size=1024))
        async with client(info.port) as good, client(info.port) as bad:
            await bad.send_message(b"x" * 1025)
            with pytest.raises(trio_websocket.ConnectionClosed) as caught:
                await bad.get_message()
            assert caught.value.reason is not None
            assert caught.value.reason.code == CloseCode.MESSAGE_TOO_BIG
            await good.send_message(b"y" * 1024)  # exactly at the cap is fine
            assert await good.get_message() == b"y" * 1024


async def test_fragmented_message_is_capped_on_its_running_size(
    nursery: trio.Nursery, raw_connect: RawConnect
) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo, TransportConfig(max_message_size=1024))
        raw = await raw_connect(info.port)
        # Two fragments of 600 bytes and no final one: the server must not wait for the end.
        await raw.send(Message(data=b"a" * 600, message_finished=False))
        await raw.send(Message(data=b"b" * 600, message_finished=False))
        close = await raw.close_event()
        assert close.code == CloseCode.MESSAGE_TOO_BIG
        # A fragmented message under the cap is reassembled.
        raw = await raw_connect(info.port)
        await raw.send(Message(data=b"a" * 500, message_finished=False))
        await raw.send(Message(data=b"b" * 500, message_finished=True))
        message = await raw.next_event()
        assert isinstance(message, BytesMessage)
        assert message.data == b"a" * 500 + b"b" * 500


# -- slow consumers, fan-out ---------------------------------------------------------------------


@both_write_modes
async def test_slow_consumer_is_closed_4101_and_others_get_everything(
    nursery: trio.Nursery, raw_connect: RawConnect, coalesce: bool
) -> None:
    members: dict[str, WebSocket] = {}
    joined = trio.Semaphore(0)

    async def handler(ws: WebSocket) -> None:
        members[(await ws.receive()).decode()] = ws
        joined.release()
        await ws.receive()

    config = TransportConfig(max_backlog_bytes=64 * 1024, coalesce_writes=coalesce)
    payload = b"q" * 2000
    with trio.fail_after(20):
        info = await start(nursery, handler, config)
        slow = await raw_connect(info.port, rcvbuf=4096)
        await slow.send(Message(data=b"slow"))
        async with client(info.port) as a, client(info.port) as b:
            for name, ws in (("a", a), ("b", b)):
                await ws.send_message(name.encode())
            for _ in range(3):
                await joined.acquire()
            counts = {"a": 0, "b": 0}

            async def read(name: str, ws: trio_websocket.WebSocketConnection) -> None:
                while (message := await ws.get_message()) != b"end":
                    assert message == payload
                    counts[name] += 1

            async with trio.open_nursery() as readers:
                readers.start_soon(read, "a", a)
                readers.start_soon(read, "b", b)
                sent = 0
                frame = frame_binary(payload)
                # Bounded: 4 MB is far more than the slow member's window and backlog.
                while not members["slow"].closed and sent < 2000:
                    for ws in list(members.values()):
                        ws.send_frame(frame)
                    sent += 1
                    await trio.lowlevel.checkpoint()
                assert members["slow"].closed
                assert members["slow"].close_code == CloseCode.SLOW_CONSUMER
                for _ in range(20):  # the others keep receiving after the eviction
                    for name in counts:
                        members[name].send_frame(frame)
                    sent += 1
                    await trio.lowlevel.checkpoint()
                for name in counts:
                    members[name].send(b"end")
            assert counts == {"a": sent, "b": sent}
            assert not members["a"].closed
            assert not members["b"].closed
        close = await slow.close_event()  # the queued frames were dropped, not delivered
        assert close.code == CloseCode.SLOW_CONSUMER
        assert info.statistics().closed_slow_consumer == 1


@both_write_modes
async def test_a_peer_that_pings_and_never_reads_is_a_slow_consumer(
    nursery: trio.Nursery, raw_connect: RawConnect, coalesce: bool
) -> None:
    """Pongs count against the backlog bound (issue 16 point 7): a peer sending pings with
    125-byte payloads and never reading is closed with 4101, its backlog within the bound."""
    closed = trio.Event()
    seen: list[WebSocket] = []
    peak = 0

    async def handler(ws: WebSocket) -> None:
        nonlocal peak
        seen.append(ws)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.receive()
        peak = max(peak, ws.backlog_bytes)
        closed.set()

    bound = 16 * 1024
    # The peer never reads, so our close handshake can only end at close_timeout: 0.5 s, not
    # the default 5 (the handler returns then; nothing here depends on how long that is).
    config = TransportConfig(max_backlog_bytes=bound, send_buffer_bytes=4096,
                             coalesce_writes=coalesce, close_timeout=0.5)
    with trio.fail_after(20):
        info = await start(nursery, handler, config)
        raw = await raw_connect(info.port, rcvbuf=4096)
        ping = raw.ws.send(Ping(payload=b"p" * 125))
        sent = 0
        # Bounded: 20,000 pongs (2.5 MB) are far more than the kernel buffers and the bound.
        while not closed.is_set() and sent < 20_000:
            await raw.stream.send_all(ping * 50)
            sent += 50
            await trio.lowlevel.checkpoint()
        await closed.wait()
        ws = seen[0]
        assert ws.close_code == CloseCode.SLOW_CONSUMER
        assert info.statistics().closed_slow_consumer == 1
        # Whatever the pongs queued was cut at the bound (plus the close frame's few bytes).
        assert peak <= bound + 256
        # (The peer never reads, so its window holds pongs: our close frame reaches it only
        # if it reads; the server-side outcome is what this test is about.)


@both_write_modes
async def test_fan_out_of_one_preframed_message(nursery: trio.Nursery, coalesce: bool) -> None:
    members: list[WebSocket] = []
    all_joined = trio.Event()
    n = 100

    async def handler(ws: WebSocket) -> None:
        members.append(ws)
        if len(members) == n:
            all_joined.set()
        await ws.receive()

    payload = bytes(range(256)) * 40  # 10 KiB: a 2-byte extended length
    frame = frame_binary(payload)
    with trio.fail_after(30):
        info = await start(nursery, handler, TransportConfig(coalesce_writes=coalesce))
        received: list[bytes] = []
        all_received = trio.Event()
        async with trio.open_nursery() as clients:
            release = trio.Event()

            async def member() -> None:
                async with client(info.port) as ws:
                    for _ in range(3):
                        received.append(await ws.get_message())
                    if len(received) == 3 * n:
                        all_received.set()
                    await release.wait()

            for _ in range(n):
                clients.start_soon(member)
            await all_joined.wait()
            before = info.statistics()
            for _ in range(3):
                for ws in members:
                    ws.send_frame(frame)
            await all_received.wait()
            after = info.statistics()
            release.set()
        assert received == [payload] * (3 * n)
        assert after.frames_out - before.frames_out == 3 * n
        if coalesce:
            # Written in one scheduler pass, handed to the kernel in one flush: one pass,
            # timed from its first write to its end.
            assert after.write_passes - before.write_passes == 1
            assert after.write_pass_seconds_total > before.write_pass_seconds_total
            assert after.write_pass_cpu_seconds_total > before.write_pass_cpu_seconds_total
            assert after.write_pass_seconds_max > 0
            if after.write_pass_seconds_max > before.write_pass_seconds_max:
                assert after.write_pass_frames_at_max == 3 * n
        else:
            assert after.write_passes == before.write_passes == 0


# -- keepalive and closing ---------------------------------------------------------------------


async def test_ping_timeout_closes_a_silent_peer_with_4102(
    nursery: trio.Nursery, raw_connect: RawConnect
) -> None:
    closed: list[ConnectionClosed] = []
    handler_done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            closed.append(exc)
        handler_done.set()

    config = TransportConfig(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.5)
    with trio.fail_after(5):
        info = await start(nursery, handler, config)
        raw = await raw_connect(info.port)
        # Read only: never answer a ping, never send anything.
        pings = 0
        while True:
            event = await raw.next_event()
            if isinstance(event, Ping):
                pings += 1
            elif isinstance(event, CloseConnection):
                break
        assert pings == 1
        assert event.code == CloseCode.IDLE_TIMEOUT
        with pytest.raises(EOFError):  # and the server hung up
            while True:
                await raw.next_event()
        # The handler's receive() raises once the close deadline passes (the peer is silent).
        await handler_done.wait()
        assert closed[0].code == CloseCode.IDLE_TIMEOUT
        assert info.statistics().closed_idle == 1


async def test_a_peer_answering_pings_stays_open(nursery: trio.Nursery) -> None:
    config = TransportConfig(ping_interval=0.05, ping_timeout=0.1)
    with trio.fail_after(5):
        info = await start(nursery, echo, config)
        async with client(info.port) as ws:
            # trio-websocket answers pings by itself; idle for many ping periods.
            await trio.sleep(0.6)
            await ws.send_message(b"still here")
            assert await ws.get_message() == b"still here"
        assert info.statistics().closed_idle == 0


async def test_incoming_pings_are_answered(nursery: trio.Nursery) -> None:
    with trio.fail_after(5):
        info = await start(nursery, echo)
        async with client(info.port) as ws:
            await ws.ping(b"are you there")  # returns when the matching pong arrives


@both_write_modes
async def test_close_codes_arrive(nursery: trio.Nursery, coalesce: bool) -> None:
    from_client: list[ConnectionClosed] = []
    server_side: list[WebSocket] = []

    async def handler(ws: WebSocket) -> None:
        server_side.append(ws)
        command = await ws.receive()
        if command == b"restart":
            ws.send(b"bye")
            ws.close(CloseCode.SERVICE_RESTART, "restarting")
            await ws.wait_closed()
        elif command == b"return":
            return
        elif command == b"crash":
            raise RuntimeError("handler bug")
        else:
            try:
                await ws.receive()
            except ConnectionClosed as exc:
                from_client.append(exc)
                raise

    async def close_of(command: bytes) -> trio_websocket.CloseReason:
        async with client(info.port) as ws:
            await ws.send_message(command)
            with pytest.raises(trio_websocket.ConnectionClosed) as caught:
                while True:
                    await ws.get_message()
        assert caught.value.reason is not None
        return caught.value.reason

    with trio.fail_after(10):
        info = await start(nursery, handler, TransportConfig(coalesce_writes=coalesce))
        reason = await close_of(b"restart")
        assert (reason.code, reason.reason) == (CloseCode.SERVICE_RESTART, "restarting")
        assert (await close_of(b"return")).code == CloseCode.NORMAL
        assert (await close_of(b"crash")).code == CloseCode.INTERNAL_ERROR
        async with client(info.port) as ws:
            await ws.send_message(b"wait")
            await ws.aclose(code=4000, reason="kicked by host")
        for ws in server_side:
            await ws.wait_closed()
        assert (from_client[0].code, from_client[0].reason) == (4000, "kicked by host")
        assert [ws.close_code for ws in server_side] == [1012, 1000, 1011, 4000]
        assert info.statistics().connections_open == 0


async def test_sends_after_close_are_no_ops_and_receive_raises(nursery: trio.Nursery) -> None:
    outcome: list[object] = []

    async def handler(ws: WebSocket) -> None:
        ws.close(CloseCode.SESSION_ENDED, "over")
        ws.send(b"ignored")
        assert ws.closed
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            outcome.append((exc.code, exc.reason))

    with trio.fail_after(5):
        info = await start(nursery, handler)
        async with client(info.port) as ws:
            with pytest.raises(trio_websocket.ConnectionClosed) as caught:
                await ws.get_message()
        assert caught.value.reason is not None
        assert caught.value.reason.code == CloseCode.SESSION_ENDED
        assert outcome == [(CloseCode.SESSION_ENDED, "over")]


async def test_peer_vanishing_reports_1006(nursery: trio.Nursery, raw_connect: RawConnect) -> None:
    closed: list[ConnectionClosed] = []
    handler_done = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            closed.append(exc)
        handler_done.set()

    with trio.fail_after(5):
        info = await start(nursery, handler)
        raw = await raw_connect(info.port)
        await raw.stream.aclose()  # TCP FIN without a close frame
        await handler_done.wait()
        assert closed[0].code == 1006
