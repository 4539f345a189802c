"""The transport's readers under many ready sockets: the Linux reader (one task reads every
ready socket per pass) and the portable one (a task per connection), same guarantees.

Clients here are plain non-blocking sockets written with ``send()`` from the test task
without awaiting, so that every client's bytes are in the kernel before the server runs
again: the next pass sees all of them ready at once. Nothing is slept for; every wait is on
an event or a read, under ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from pubquiz_engine.errors import CloseCode
from pubquiz_engine.server.transport import (
    ConnectionClosed,
    ListenerInfo,
    TransportConfig,
    WebSocket,
    serve,
)
from pubquiz_engine.server.transport import websocket as transport_websocket
from pubquiz_engine.server.transport.config import RECV_SIZE
from pubquiz_engine.server.transport.reader import epoll_available

HOST = "127.0.0.1"
SUB = "pubquiz.v1"


@pytest.fixture(params=["epoll", "portable"])
def reader(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "epoll" and not epoll_available():
        pytest.skip("no select.epoll here")
    return kind


def masked(payload: bytes, opcode: int = 0x2) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes((0x80 | opcode,))
    head += bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + struct.pack("!H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Raw:
    """A handshaken client on a non-blocking stdlib socket: ``send_now`` never awaits."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send_now(self, data: bytes) -> int:
        """As much of ``data`` as the kernel takes now (never awaits)."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    async def read_frame(self) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); raises EOFError at end of stream."""
        while True:
            if len(self.buffer) >= 2:
                n = self.buffer[1] & 0x7F
                start = 2
                if n == 126:
                    n, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif n == 127:
                    n, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
                if len(self.buffer) >= start + n:
                    frame = self.buffer[:start + n]
                    self.buffer = self.buffer[start + n:]
                    return frame[0] & 0x0F, frame[start:]
            await trio.lowlevel.wait_readable(self.sock)
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                raise EOFError
            self.buffer += data

    async def close_code(self) -> int | None:
        """Read until the server's close frame (its code) or EOF (None)."""
        try:
            while True:
                opcode, payload = await self.read_frame()
                if opcode == 0x8:
                    return int(struct.unpack("!H", payload[:2])[0]) if payload else None
        except EOFError:
            return None


async def connect(port: int, *, rcvbuf: int | None = None) -> Raw:
    """A handshaken client; ``rcvbuf``: its receive window, set before it connects."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        sock.connect((HOST, port))
    await trio.lowlevel.wait_writable(sock)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.send(ws.send(Request(host=HOST, target="/", subprotocols=[SUB])))
    raw = Raw(sock)
    while True:
        await trio.lowlevel.wait_readable(sock)
        data = sock.recv(65536)
        assert data, "closed during the handshake"
        ws.receive_data(data)
        events = list(ws.events())
        if events:
            assert isinstance(events[0], AcceptConnection)
            return raw  # (the server sends nothing before the client's first frame)


@contextlib.asynccontextmanager
async def server(
    handler: Callable[[WebSocket], object], reader: str, **config: object
) -> AsyncIterator[tuple[ListenerInfo, list[Raw]]]:
    clients: list[Raw] = []
    async with trio.open_nursery() as nursery:
        info: ListenerInfo = await nursery.start(
            functools.partial(
                serve, handler, host=HOST, port=0,  # type: ignore[arg-type]
                config=TransportConfig(reader=reader, **config),  # type: ignore[arg-type]
            )
        )
        try:
            yield info, clients
        finally:
            for raw in clients:
                raw.sock.close()
            nursery.cancel_scope.cancel()


async def echo(ws: WebSocket) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            data = await ws.receive()
            ws.send(data if isinstance(data, bytes) else data.encode())


async def test_many_sockets_ready_at_once_are_all_served(reader: str) -> None:
    with trio.fail_after(30):
        async with server(echo, reader) as (info, clients):
            for _ in range(200):
                clients.append(await connect(info.port))
            # Every client's frame is in the kernel before the server runs again.
            for i, raw in enumerate(clients):
                assert raw.send_now(masked(b"m%d" % i)) > 0
            for i, raw in enumerate(clients):
                assert await raw.read_frame() == (0x2, b"m%d" % i)
            stats = info.statistics()
            if reader == "epoll":
                # One pass read all 200 (the point of the reader).
                assert stats.read_pass_sockets_max >= 200
            else:
                assert stats.read_passes == 0


async def test_sockets_reset_mid_pass_leave_the_others_served(reader: str) -> None:
    ended: list[int] = []
    all_ended = trio.Event()

    async def handler(ws: WebSocket) -> None:
        try:
            while True:
                ws.send(await ws.receive())  # type: ignore[arg-type]
        except ConnectionClosed as exc:
            ended.append(exc.code)
            if len(ended) == 20:
                all_ended.set()
            raise

    with trio.fail_after(30):
        async with server(handler, reader) as (info, clients):
            for _ in range(40):
                clients.append(await connect(info.port))
            for i, raw in enumerate(clients):
                raw.send_now(masked(b"x%d" % i))
                if i % 2 == 0:
                    # Data, then RST (SO_LINGER 0): the server finds it reset within the pass.
                    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    raw.sock.close()
            alive = clients[1::2]
            for i, raw in zip(range(1, 40, 2), alive, strict=True):
                assert await raw.read_frame() == (0x2, b"x%d" % i)
            await all_ended.wait()
            assert set(ended) <= {1006}
            # The server keeps serving: a new connection is echoed.
            late = await connect(info.port)
            clients.append(late)
            late.send_now(masked(b"late"))
            assert await late.read_frame() == (0x2, b"late")
            assert info.statistics().connections_open == 21
            del clients[0:40:2]  # closed already


async def test_a_connection_closed_by_another_in_the_same_pass_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Epoll reader: whichever of A and B is read first in a pass aborts the other; the
    other's event later in the same pass must be skipped (never read after its close), and
    the reader goes on serving."""
    if not epoll_available():
        pytest.skip("no select.epoll here")
    pair: dict[str, WebSocket] = {}
    delivered: list[bytes] = []
    closed: list[int] = []
    both_done = trio.Event()
    original = transport_websocket.WebSocket._read_now
    armed = False

    def read_now(self: WebSocket) -> None:
        nonlocal armed
        if armed and self in pair.values():
            armed = False
            other = pair["b"] if self is pair["a"] else pair["a"]
            other._abort()  # closed mid-pass, its event may still be in this pass
            assert other._state is transport_websocket._State.CLOSED
        original(self)

    monkeypatch.setattr(transport_websocket.WebSocket, "_read_now", read_now)

    async def handler(ws: WebSocket) -> None:
        name = await ws.receive()
        assert isinstance(name, bytes)
        if name in (b"a", b"b"):
            pair[name.decode()] = ws
        ws.send(b"ok")
        try:
            while True:
                delivered.append(await ws.receive())  # type: ignore[arg-type]
                ws.send(b"got")
        except ConnectionClosed as exc:
            closed.append(exc.code)
            if len(closed) == 2:
                both_done.set()
            raise

    with trio.fail_after(20):
        async with server(handler, "epoll") as (info, clients):
            a, b, c = [await connect(info.port) for _ in range(3)]
            clients += [a, b, c]
            for raw, name in ((a, b"a"), (b, b"b"), (c, b"c")):
                raw.send_now(masked(name))
                assert await raw.read_frame() == (0x2, b"ok")
            armed = True
            a.send_now(masked(b"from a"))
            b.send_now(masked(b"from b"))
            # Exactly one of the two was read; the other was closed before its turn.
            while len(delivered) < 1:
                await trio.lowlevel.checkpoint()
            survivor = a if delivered[0] == b"from a" else b
            assert await survivor.read_frame() == (0x2, b"got")
            c.send_now(masked(b"from c"))
            assert await c.read_frame() == (0x2, b"got")
            assert sorted(delivered) in ([b"from a", b"from c"], [b"from b", b"from c"])
            pair["a" if survivor is b else "b"]
            survivor.sock.close()
            clients.remove(survivor)
            await both_done.wait()


async def test_a_raising_handler_or_reader_closes_only_its_connection(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = transport_websocket.WebSocket._feed

    def feed(self: WebSocket, data: bytes | bytearray) -> None:
        if b"explode" in bytes(data):  # masked with 01 02 03 04: never seen in clear
            raise RuntimeError("a bug while parsing")
        original(self, data)

    monkeypatch.setattr(transport_websocket.WebSocket, "_feed", feed)

    async def handler(ws: WebSocket) -> None:
        while True:
            data = await ws.receive()
            if data == b"boom":
                raise RuntimeError("a handler bug")
            ws.send(data)  # type: ignore[arg-type]

    with trio.fail_after(20):
        async with server(handler, reader) as (info, clients):
            for _ in range(12):
                clients.append(await connect(info.port))
            boom, bad, *others = clients
            boom.send_now(masked(b"boom"))
            bad.send_now(b"\x82\x07" + b"explode")  # unmasked, so the bytes are as written
            for i, raw in enumerate(others):
                raw.send_now(masked(b"fine%d" % i))
            for i, raw in enumerate(others):
                assert await raw.read_frame() == (0x2, b"fine%d" % i)
            assert await boom.close_code() == CloseCode.INTERNAL_ERROR
            # A failure in the transport itself: the connection is dropped (epoll: at once,
            # without a close frame) or closed 1011 by the connection task (portable).
            assert await bad.close_code() in (None, CloseCode.INTERNAL_ERROR)
            late = await connect(info.port)
            clients.append(late)
            late.send_now(masked(b"still here"))
            assert await late.read_frame() == (0x2, b"still here")


async def test_a_flooding_socket_cannot_starve_the_others(reader: str) -> None:
    """One recv per socket per pass (epoll) / per scheduler batch (portable): while one
    client keeps megabytes of frames queued, the others' frames are handled after at most a
    few reads' worth of the flood."""
    flood_count = 0
    at_other: list[int] = []
    others_done = trio.Event()
    frame = masked(b"f" * 20)
    per_read = RECV_SIZE // len(frame) + 1

    async def handler(ws: WebSocket) -> None:
        nonlocal flood_count
        first = await ws.receive()
        ws.send(b"ready")
        if first == b"flood":
            while True:
                await ws.receive()
                flood_count += 1
        else:
            await ws.receive()
            at_other.append(flood_count)
            if len(at_other) == 10:
                others_done.set()
            ws.send(b"done")
            await ws.receive()

    with trio.fail_after(30):
        async with server(handler, reader) as (info, clients):
            flood = await connect(info.port)
            flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            clients.append(flood)
            others = [await connect(info.port) for _ in range(10)]
            clients.extend(others)
            for raw, name in [(flood, b"flood"), *((o, b"other") for o in others)]:
                raw.send_now(masked(name))
                assert await raw.read_frame() == (0x2, b"ready")
            # Queue as much flood as the kernel takes (bounded: 4 MiB), then the others.
            burst = frame * 4096
            queued = 0
            while queued < (4 << 20):
                n = flood.send_now(burst)
                if n < len(burst):
                    queued += n
                    break
                queued += n
            assert queued >= 20 * RECV_SIZE, "the kernel took too little flood to test with"
            start = flood_count
            for raw in others:
                assert raw.send_now(masked(b"me")) > 0
            await others_done.wait()
            total = queued // len(frame)
            worst = max(at_other) - start
            # Within a few reads of the flood, never after the whole flood.
            assert worst <= 3 * per_read, (worst, per_read, total)
            assert worst < total


async def test_a_consumer_takes_messages_in_the_pass_in_order_and_leaves_the_rest(
    reader: str,
) -> None:
    """``WebSocket.set_consumer``: while the handler waits in receive(), the reader offers
    a pass's messages to the consumer first; what it leaves reaches receive() in order, after
    what it took. The portable path has no pass: its handler gets everything."""
    seen: list[bytes] = []

    async def handler(ws: WebSocket) -> None:
        def consume() -> None:
            # Take "c..." messages at the head; stop at the first other one.
            while (data := ws.peek_message()) is not None and data[:1] == b"c":
                assert ws.receive_nowait() == data
                seen.append(b"consumer:" + data)  # type: ignore[operator]
                ws.send(b"took " + data)  # type: ignore[operator]

        ws.set_consumer(consume)
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await ws.receive()
                seen.append(b"task:" + data)  # type: ignore[operator]
                ws.send(b"task " + data)  # type: ignore[operator]

    with trio.fail_after(20):
        async with server(handler, reader) as (info, clients):
            raw = await connect(info.port)
            clients.append(raw)
            raw.send_now(b"".join(masked(p) for p in (b"c1", b"c2", b"t3", b"c4")))
            replies = [(await raw.read_frame())[1] for _ in range(4)]
            stats = info.statistics()
            if reader == "epoll":
                assert replies == [b"took c1", b"took c2", b"task t3", b"task c4"]
                assert seen == [b"consumer:c1", b"consumer:c2", b"task:t3", b"task:c4"]
                assert stats.messages_consumed == 2
            else:
                assert replies == [b"task c1", b"task c2", b"task t3", b"task c4"]
                assert stats.messages_consumed == 0


async def test_a_raising_consumer_closes_only_its_connection(reader: str) -> None:
    async def handler(ws: WebSocket) -> None:
        def consume() -> None:
            if ws.peek_message() == b"boom":
                raise RuntimeError("a consumer bug")

        ws.set_consumer(consume)
        await echo(ws)

    with trio.fail_after(20):
        async with server(handler, reader) as (info, clients):
            for _ in range(6):
                clients.append(await connect(info.port))
            boom, *others = clients
            boom.send_now(masked(b"boom"))
            for i, raw in enumerate(others):
                raw.send_now(masked(b"fine%d" % i))
            for i, raw in enumerate(others):
                assert await raw.read_frame() == (0x2, b"fine%d" % i)
            if reader == "epoll":
                # Like a failure while parsing: dropped at once, the others unaffected.
                assert await boom.close_code() in (None, CloseCode.INTERNAL_ERROR)
            else:
                assert await boom.read_frame() == (0x2, b"boom")  # no pass, no consumer


async def test_wsproto_is_made_only_when_a_frame_needs_it(reader: str) -> None:
    """An idle or data-only connection holds no wsproto connection (its ~1.7 KiB and 9 GC
    objects per connection); the first control frame makes one, and it behaves as one made at
    the handshake would: the ping is answered, the close handshake completes."""
    with trio.fail_after(20):
        async with server(echo, reader) as (info, clients):
            raw = await connect(info.port)
            clients.append(raw)
            raw.send_now(masked(b"data"))
            assert await raw.read_frame() == (0x2, b"data")
            [ws] = info.connections()
            assert ws._proto is None
            raw.send_now(masked(b"hi", opcode=0x9))
            assert await raw.read_frame() == (0xA, b"hi")
            assert ws._proto is not None
            raw.send_now(masked(b"more"))
            assert await raw.read_frame() == (0x2, b"more")
            raw.send_now(masked(struct.pack("!H", 1000), opcode=0x8))
            assert await raw.close_code() == 1000
