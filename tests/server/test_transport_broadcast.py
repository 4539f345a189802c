"""A broadcast through ``send_frame_to_all`` (the session's entry point) over real sockets:
the same guarantees as one ``send_frame`` per member.

- A connection's frames of one scheduler pass, broadcast or not, leave in one ``send()``, in
  the order they were written (counted by a proxy around the server-side socket during the
  pass).
- A member over the backlog bound is closed with 4101 and the others still get every frame;
  a frame larger than the bound closes every member it is sent to, as ``send_frame`` does.
- A member closed before or during the broadcast gets none of it: its close frame follows
  what was queued before the close.

Nothing is slept for: every wait is a read or an event, under ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import trio
from test_transport_reader import Raw, connect, masked, server

from pubquiz_engine.errors import CloseCode
from pubquiz_engine.server.transport import (
    ConnectionClosed,
    ListenerInfo,
    WebSocket,
    frame_binary,
    send_frame_to_all,
)


class CountingSocket:
    """Stands in for a server-side socket during one pass: counts the ``send()`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[bytes] = []

    def send(self, data: bytes | bytearray) -> int:
        self.sends.append(bytes(data))
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Members:
    """The server-side WebSockets, in the order their clients connected."""

    def __init__(self) -> None:
        self.by_index: dict[int, WebSocket] = {}
        self.joined = trio.Event()
        self.expected = 0

    async def handler(self, ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionClosed):
            first = await ws.receive()
            assert isinstance(first, bytes)
            self.by_index[int(first)] = ws
            if len(self.by_index) == self.expected:
                self.joined.set()
            while True:
                await ws.receive()

    async def connect(self, info: ListenerInfo, clients: list[Raw], n: int,
                      *, rcvbuf: int | None = None) -> list[WebSocket]:
        """``n`` clients, handshaken and known to the handler; ``rcvbuf``: the last one's
        receive window (it never reads)."""
        self.expected = n
        for i in range(n):
            raw = await connect(info.port, rcvbuf=rcvbuf if i == n - 1 else None)
            clients.append(raw)
            raw.sock.send(masked(str(i).encode()))
        await self.joined.wait()
        return [self.by_index[i] for i in range(n)]


async def _frames(raw: Raw, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        opcode, payload = await raw.read_frame()
        assert opcode == 0x2
        out.append(payload)
    return out


async def test_a_broadcast_and_replies_in_one_pass_leave_in_one_send_each_in_order() -> None:
    members = Members()
    with trio.fail_after(20):
        async with server(members.handler, "auto") as (info, clients):
            ws = await members.connect(info, clients, 3)
            counting = [CountingSocket(w._sock) for w in ws]
            real = [w._sock for w in ws]
            for w, c in zip(ws, counting, strict=True):
                w._sock = c  # type: ignore[assignment]
            try:
                before = info.statistics()
                # One synchronous step: one scheduler pass.
                ws[2].send_frame(frame_binary(b"reply-2"))  # dirty before the broadcast
                send_frame_to_all(ws, frame_binary(b"question"))
                ws[1].send_frame(frame_binary(b"reply-1"))  # between two broadcasts
                send_frame_to_all(ws, frame_binary(b"closed"))
                got = [await _frames(clients[0], 2), await _frames(clients[1], 3),
                       await _frames(clients[2], 3)]
            finally:
                for w, sock in zip(ws, real, strict=True):
                    w._sock = sock
            after = info.statistics()
            assert got == [[b"question", b"closed"],
                           [b"question", b"reply-1", b"closed"],
                           [b"reply-2", b"question", b"closed"]]
            assert [len(c.sends) for c in counting] == [1, 1, 1]
            assert after.write_passes - before.write_passes == 1
            assert after.frames_out - before.frames_out == 8
            assert after.bytes_out - before.bytes_out == sum(len(c.sends[0]) for c in counting)


async def test_a_member_over_the_bound_in_a_broadcast_is_closed_4101_others_get_all() -> None:
    members = Members()
    frame = frame_binary(b"q" * 2000)
    with trio.fail_after(30):
        async with server(members.handler, "auto", max_backlog_bytes=64 * 1024,
                          send_buffer_bytes=4096) as (info, clients):
            ws = await members.connect(info, clients, 3, rcvbuf=4096)
            # The slow one last: the first member of a broadcast always takes ``_write``.
            slow, others = ws[2], ws[:2]
            received = [0, 0]

            async def read(i: int) -> None:
                while (payload := (await _frames(clients[i], 1))[0]) != b"end":
                    assert payload == b"q" * 2000
                    received[i] += 1

            sent = peak = 0
            async with trio.open_nursery() as readers:
                for i in range(2):
                    readers.start_soon(read, i)
                # Bounded: 4 MB is far more than the slow member's window and backlog.
                while not slow.closed and sent < 2000:
                    send_frame_to_all(ws, frame)
                    sent += 1
                    peak = max(peak, slow.backlog_bytes)  # checked at every write
                    await trio.lowlevel.checkpoint()
                assert slow.closed and slow.close_code == CloseCode.SLOW_CONSUMER
                for _ in range(5):  # the broadcasts go on to the others
                    send_frame_to_all(ws, frame)
                    sent += 1
                    await trio.lowlevel.checkpoint()
                send_frame_to_all(ws, frame_binary(b"end"))
            assert received == [sent, sent]
            assert not any(w.closed for w in others)
            assert info.statistics().closed_slow_consumer == 1
            assert peak <= 64 * 1024
            # Its queued frames were dropped; what it reads ends with the 4101 close frame.
            assert await clients[2].close_code() == CloseCode.SLOW_CONSUMER


async def test_a_frame_over_the_bound_closes_every_member_it_is_broadcast_to() -> None:
    members = Members()
    with trio.fail_after(20):
        async with server(members.handler, "auto", max_backlog_bytes=4096) as (info, clients):
            ws = await members.connect(info, clients, 2)
            send_frame_to_all(ws, frame_binary(b"x" * 5000))
            assert [w.close_code for w in ws] == [CloseCode.SLOW_CONSUMER] * 2
            assert [await c.close_code() for c in clients] == [CloseCode.SLOW_CONSUMER] * 2
            assert info.statistics().closed_slow_consumer == 2


async def test_members_closed_before_or_during_a_broadcast_are_skipped() -> None:
    members = Members()
    with trio.fail_after(20):
        async with server(members.handler, "auto") as (info, clients):
            ws = await members.connect(info, clients, 4)
            # Member 3's peer is gone: the server has seen the connection end (CLOSED).
            clients[3].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            clients[3].sock.close()
            await ws[3].wait_closed()
            ws[0].send_frame(frame_binary(b"before-close"))
            ws[0].close(CloseCode.NORMAL, "bye")  # closing: its close frame is queued

            def closing_member_1_midway() -> Iterator[WebSocket]:
                for i, w in enumerate(ws):
                    yield w
                    if i == 0:
                        ws[1].send_frame(frame_binary(b"last-for-1"))
                        ws[1].close(CloseCode.NORMAL, "bye")

            before = info.statistics()
            send_frame_to_all(closing_member_1_midway(), frame_binary(b"question"))
            assert await _frames(clients[2], 1) == [b"question"]
            assert await _frames(clients[0], 1) == [b"before-close"]
            assert await clients[0].close_code() == CloseCode.NORMAL
            assert await _frames(clients[1], 1) == [b"last-for-1"]
            assert await clients[1].close_code() == CloseCode.NORMAL
            # Only member 2 got the broadcast (and member 1 the frame written before its close).
            assert info.statistics().frames_out - before.frames_out == 2
