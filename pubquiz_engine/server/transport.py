"""The server's data path: WebSocket over eager-write trio sockets, plain HTTP on the same port.

Why our own transport: ``shared/perf-baselines`` measured that the idiomatic trio-websocket
broadcast (``await ws.send_message()`` per member) delivers ~4x fewer messages per second than
writing eagerly, and that one member who stops reading stalls everyone. So this module drives
stdlib non-blocking sockets with ``trio.lowlevel.wait_readable`` / ``wait_writable`` and keeps
the protocol work in the sans-IO libraries: h11 parses the HTTP request, wsproto checks the
upgrade handshake and parses frames.

Rules this module keeps:

1. **Sends never block and never await.** ``WebSocket.send()`` tries ``socket.send()`` at once;
   only what the kernel does not take is queued, and a writer task (started on demand, so an
   idle connection costs no task) drains the queue when the socket becomes writable. A
   broadcast therefore costs one ``send()`` per member and no task switch.
2. **A slow member only hurts itself.** The queue is bounded by ``max_backlog_bytes``; past it
   the connection is closed with 4101 (``CloseCode.SLOW_CONSUMER``) and its queued frames are
   dropped (except the rest of a frame already partly on the wire, which must be completed
   before the close frame can follow it).
3. **Every wait has a deadline.** The handshake must complete within ``handshake_timeout``
   (slowloris); a closing connection is shut within ``close_timeout`` whether or not the peer
   answers; an idle connection is pinged and closed with 4102 (``CloseCode.IDLE_TIMEOUT``) if
   nothing arrives within ``ping_timeout`` (half-open TCP).
4. **Limits are enforced before memory is spent**: header bytes and count (431), message size
   on the running size of a fragmented message (1009), text frames (1003, pubquiz.v1 is binary).
5. **Third-party errors stop here.** h11/wsproto errors become HTTP rejections or close codes;
   the handler only ever sees ``ConnectionClosed`` (a ``PubquizError``).

Handshake decisions (documented because clients depend on them):
- Not an upgrade request: answered by the ``http_handler`` (default: 404 for every path).
- Bad ``Origin`` with an allow-list configured: HTTP 403 before the upgrade.
- No ``pubquiz.v1`` in ``Sec-WebSocket-Protocol``: HTTP 400 before the upgrade, with a plain
  text body saying which subprotocol is required (a close after the upgrade would look like a
  successful connect to naive clients).
- Header block over ``max_header_bytes`` or more than ``max_headers`` headers: HTTP 431.
- Anything wsproto refuses (bad key, version): its suggested status (400 or 426).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import enum
import errno
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, Final

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError as WsprotoProtocolError
from wsproto.utilities import RemoteProtocolError as WsprotoRemoteProtocolError

from pubquiz_engine.errors import CloseCode, ErrorCode, PubquizError
from pubquiz_engine.server.http import HttpHandler, HttpRequest, HttpResponse, not_found

__all__ = [
    "ConnectionClosed",
    "ListenerInfo",
    "TransportConfig",
    "TransportStatistics",
    "WebSocket",
    "WebSocketHandler",
    "frame_binary",
    "serve",
]

LOGGER = logging.getLogger("pubquiz_engine.server.transport")

# Bytes read per recv(): large enough to take a burst of answers in one syscall, small enough
# that wsproto never holds more than this of an unfinished frame before we check its size.
_RECV_SIZE: Final = 65536
# accept(2) errors that mean "the system is overloaded", not "the listener is broken"
# (the same set and back-off as trio.serve_listeners).
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_BACKOFF: Final = 0.1
# Close code 1006 is never sent on the wire; we report it when the TCP connection was lost
# without a close frame (RFC 6455 section 7.1.5).
ABNORMAL_CLOSURE: Final = 1006
# An empty unmasked PING frame: the only ping the server sends.
_PING_FRAME: Final = b"\x89\x00"
# Task names given as one shared str: trio otherwise formats a new one for every task.
_CONNECTION_TASK: Final = "pubquiz_engine.server.transport.connection"
_WRITER_TASK: Final = "pubquiz_engine.server.transport.writer"


# ---------------------------------------------------------------------------------------------
# Configuration, statistics, errors


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class TransportConfig:
    """Limits and timeouts of the transport. Every field has a production default.

    Sizes are bytes, times are seconds.
    """

    #: Largest incoming binary message (after reassembling fragments); larger -> close 1009.
    max_message_size: int = attrs.field(default=64 * 1024, validator=_positive)
    #: Largest outgoing backlog the kernel has not taken yet; larger -> close 4101.
    max_backlog_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    #: From accept to a complete request line + headers; slower -> the socket is closed.
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: A connection with no incoming traffic for this long is sent a ping ...
    ping_interval: float = attrs.field(default=20.0, validator=_positive)
    #: ... and closed with 4102 if nothing at all arrives within this long after the ping.
    ping_timeout: float = attrs.field(default=20.0, validator=_positive)
    #: After a close frame is sent: how long to wait for the backlog and the peer's close.
    close_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: Largest request line + header block; larger -> 431.
    max_header_bytes: int = attrs.field(default=8 * 1024, validator=_positive)
    #: Most header fields in one request; more -> 431.
    max_headers: int = attrs.field(default=64, validator=_positive)
    #: Largest body of a plain HTTP request (none of ours need one); larger -> 413.
    max_http_body: int = attrs.field(default=64 * 1024, validator=_positive)
    #: Allowed ``Origin`` values, exact match; ``()`` allows any origin (and none).
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: The subprotocol the server speaks.
    subprotocol: str = "pubquiz.v1"
    #: Refuse (HTTP 400) clients that do not offer ``subprotocol``. Off only for benchmarks
    #: whose load generator offers none.
    require_subprotocol: bool = True
    #: ``listen(2)`` backlog: a reconnect storm of thousands of phones must not see refusals.
    listen_backlog: int = attrs.field(default=4096, validator=_positive)
    #: Disable Nagle: frames are small and latency matters more than packet count.
    tcp_nodelay: bool = True
    #: ``SO_SNDBUF`` for accepted sockets (None: the kernel's autotuning, up to
    #: ``net.ipv4.tcp_wmem`` max, 4 MiB on Linux). The kernel buffer is part of what a member
    #: that stops reading costs, on top of ``max_backlog_bytes``: set it to bound that memory.
    send_buffer_bytes: int | None = None
    #: Gather each connection's frames of one scheduler pass (a broadcast and the acks the
    #: member's reader produced) into one ``send()``, made by one task at the end of the pass.
    #: Measured (bench/transport/run.py, N=1000): 1.4x the delivered msgs/s of eager sends.
    coalesce_writes: bool = True


@attrs.frozen
class TransportStatistics:
    """A snapshot of the transport's counters (``TransportServer.statistics()``)."""

    connections_open: int
    connections_total: int
    http_requests: int
    handshake_failures: int
    bytes_in: int
    bytes_out: int
    frames_in: int
    frames_out: int
    closed_slow_consumer: int
    closed_idle: int
    #: Coalesced write passes (``coalesce_writes``): how many, and the time from a pass's
    #: first write to the end of its flush (every frame of the pass handed to the kernel),
    #: in total and for the slowest pass, with that pass's frame count. A broadcast is one
    #: pass: this is its "handed to the kernel" time as the engine sees it.
    write_passes: int
    write_pass_seconds_total: float
    write_pass_seconds_max: float
    write_pass_frames_at_max: int


class _Counters:
    """Mutable counters shared by a server and its connections; plain ints, cheap to bump."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed_idle",
        "closed_slow_consumer",
        "connections_open",
        "connections_total",
        "frames_in",
        "frames_out",
        "handshake_failures",
        "http_requests",
        "write_pass_frames_at_max",
        "write_pass_seconds_max",
        "write_pass_seconds_total",
        "write_passes",
    )

    def __init__(self) -> None:
        self.connections_open = 0
        self.connections_total = 0
        self.http_requests = 0
        self.handshake_failures = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0
        self.closed_slow_consumer = 0
        self.closed_idle = 0
        self.write_passes = 0
        self.write_pass_seconds_total = 0.0
        self.write_pass_seconds_max = 0.0
        self.write_pass_frames_at_max = 0

    def snapshot(self) -> TransportStatistics:
        return TransportStatistics(**{name: getattr(self, name) for name in self.__slots__})


class ConnectionClosed(PubquizError):
    """The WebSocket is closed or closing; ``receive()`` raises it.

    ``code`` is the close code of the close frame that ended the connection (ours or the
    peer's), or 1006 when the TCP connection was lost without one; ``reason`` its text.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Framing


def frame_binary(payload: bytes) -> bytes:
    """Frame ``payload`` as one unmasked, final binary WebSocket frame (RFC 6455 5.2).

    Server-to-client frames are never masked, so the same bytes are valid on every
    connection: fan-out frames a broadcast once and hands it to ``WebSocket.send_frame``.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 65536:
        return bytes((0x82, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x82, 127)) + n.to_bytes(8, "big") + payload


# ---------------------------------------------------------------------------------------------
# One connection


class _State(enum.Enum):
    """Connection states (compared with ``is`` on the hot path)."""

    OPEN = "open"  # frames flow both ways
    CLOSING = "closing"  # a close frame was sent; nothing more is sent or delivered
    CLOSED = "closed"  # the socket is shut (or being closed): wait_closed() has returned


class WebSocket:
    """One accepted WebSocket connection (the object the ``handler`` receives).

    Sending is synchronous and never blocks (see the module rules); ``receive()`` is the only
    awaiting operation and must be called from one task at a time (the handler's reader).
    Everything else may be called from any task.

    Attributes read by the server: ``remote_address`` (``(host, port)`` of the TCP peer;
    behind nginx read ``request_headers`` for ``x-forwarded-for``), ``subprotocol``,
    ``request_path`` (the request target, query included), ``request_headers`` (lower-case
    names, in order; without the upgrade's own: ``connection``, ``upgrade`` and the
    ``sec-websocket-*`` ones), ``closed``, ``close_code``, ``close_reason``, ``backlog_bytes``.
    """

    __slots__ = (
        "_close_deadline",
        "_closed_event",
        "_closer_reading",
        "_closer_wakeup",
        "_coalescer",
        "_config",
        "_counters",
        "_fragments",
        "_last_seen",
        "_messages",
        "_messages_head",
        "_nursery",
        "_out",
        "_out_ends",
        "_partial",
        "_peer_closed",
        "_pending",
        "_pending_lengths",
        "_ping_sent_at",
        "_proto",
        "_reading",
        "_seen",
        "_sock",
        "_state",
        "_writer_running",
        "_writer_scope",
        "close_code",
        "close_reason",
        "remote_address",
        "request_headers",
        "request_path",
        "subprotocol",
    )

    def __init__(
        self,
        sock: socket.socket,
        proto: WsprotoConnection,
        *,
        config: TransportConfig,
        counters: _Counters,
        nursery: trio.Nursery,
        coalescer: _Coalescer | None,
        remote_address: tuple[str, int],
        request_path: str,
        request_headers: tuple[tuple[str, str], ...],
        subprotocol: str | None,
    ) -> None:
        self._sock = sock
        self._proto = proto
        self._config = config
        self._counters = counters
        self._nursery = nursery
        self.remote_address = remote_address
        self.request_path = request_path
        self.request_headers = request_headers
        self.subprotocol = subprotocol
        self._state = _State.OPEN
        self.close_code: int | None = None
        self.close_reason: str = ""
        # Outgoing backlog. ``_partial`` counts the bytes at its head that finish a frame
        # already partly sent; ``_pending_lengths`` the lengths of the whole frames after it.
        # Both only matter when a slow consumer's frames are dropped (rule 2). The deque is
        # made on first use: an empty deque costs ~740 bytes, 5% of an idle connection.
        self._pending = bytearray()
        self._partial = 0
        self._pending_lengths: collections.deque[int] | None = None
        self._writer_running = False
        self._writer_scope: trio.CancelScope | None = None
        # Closing handshake: whether the handler's receive() or the writer task is waiting
        # on the socket, and the event a closing writer waits on for the reader to finish.
        self._reading = False
        self._closer_reading = False
        # The events of the close are made when someone waits (a trio.Event is ~210 bytes
        # with its set of waiters; an idle connection needs none).
        self._closer_wakeup: trio.Event | None = None
        # Coalescing (``TransportConfig.coalesce_writes``): frames written during this
        # scheduler pass and their end offsets, sent by the server's coalescer in one call.
        self._coalescer = coalescer
        self._out = bytearray()
        self._out_ends: list[int] = []
        # Incoming: complete messages not yet returned by receive() (a list read from
        # ``_messages_head``, not a deque: an empty list is 56 bytes, an empty deque ~740), and
        # the fragments of the message being reassembled.
        self._messages: list[bytes] = []
        self._messages_head = 0
        self._fragments = bytearray()
        # Keepalive bookkeeping, read by the server's sweeper. ``_seen`` is a flag, not a
        # timestamp, so that the receive path does not call the clock.
        self._seen = False
        self._last_seen = trio.current_time()
        self._ping_sent_at: float | None = None
        self._close_deadline = math.inf
        self._peer_closed = False  # the peer's close frame (or EOF) arrived
        self._closed_event: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<WebSocket {self.remote_address} {self.request_path!r} state={self._state}>"

    # -- properties ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received: sends are no-ops from then on."""
        return self._state is not _State.OPEN

    @property
    def backlog_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return len(self._pending) + len(self._out)

    async def wait_closed(self) -> None:
        """Return once the connection is fully closed (socket shut, close code known)."""
        if self._state is _State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    # -- sending ------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Send ``payload`` as one binary message. Never blocks; a no-op once closed."""
        if self._state is _State.OPEN:
            self._write(frame_binary(payload))

    def send_frame(self, frame: bytes) -> None:
        """Send bytes already framed by ``frame_binary`` (a broadcast framed once for all)."""
        if self._state is _State.OPEN:
            self._write(frame)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake: send the close frame now, finish in the background.

        The connection is shut once the backlog and the close frame are written and the peer
        has answered, or after ``close_timeout`` in any case. A no-op if already closing.
        """
        if self._state is not _State.OPEN:
            return
        self._begin_close(code, reason)
        self._write_control(self._proto.send(CloseConnection(code=code, reason=reason)))
        self._start_writer()

    def _write(self, data: bytes) -> None:
        """Send one whole frame now (or at the end of this scheduler pass when coalescing);
        queue what the kernel does not take, within the backlog bound."""
        if self._coalescer is not None:
            out = self._out
            if not out:
                self._coalescer.add(self)
            self._counters.frames_out += 1
            out += data
            self._out_ends.append(len(out))
            if len(out) + len(self._pending) > self._config.max_backlog_bytes:
                self._overflow()
            return
        self._counters.frames_out += 1
        pending = self._pending
        if pending:
            # Frames must not overtake the backlog: queue behind it.
            if len(pending) + len(data) > self._config.max_backlog_bytes:
                self._overflow()
                return
            pending += data
            self._lengths().append(len(data))
            return
        self._send_now(data, None)

    def _write_control(self, data: bytes) -> None:
        """Like ``_write`` for a control frame (close, ping, pong): exempt from the bound (it
        is tiny, and a close frame must get out) but never ahead of what is queued."""
        if self._coalescer is not None:
            if not self._out:
                self._coalescer.add(self)
            self._out += data
            self._out_ends.append(len(self._out))
        elif self._pending:
            self._pending += data
            self._lengths().append(len(data))
        else:
            self._send_now(data, None)

    def _flush(self) -> None:
        """Hand the frames coalesced during this scheduler pass to the kernel (one send)."""
        out = self._out
        if not out:
            return
        ends = self._out_ends
        # Swap first: sending may overflow and close, which writes the close frame anew.
        self._out = bytearray()
        self._out_ends = []
        if self._state is _State.CLOSED:
            return
        if self._pending:
            # The writer task is draining: queue behind its backlog.
            prev = 0
            for end in ends:
                self._lengths().append(end - prev)
                prev = end
            self._pending += out
            return
        self._send_now(out, ends)

    def _send_now(self, data: bytes | bytearray, ends: list[int] | None) -> None:
        """``send()`` whole frames with an empty backlog; queue the rest for the writer task.

        ``ends`` are the frames' end offsets in ``data`` (``None``: one frame). They are only
        needed when the kernel takes part of ``data``, to know where frames start in the
        backlog (rule 2).
        """
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost()
            return
        self._counters.bytes_out += sent
        if sent == len(data):
            return
        self._pending += memoryview(data)[sent:]
        if ends is None:
            ends = [len(data)]
        first = bisect.bisect_right(ends, sent)  # the first frame not wholly sent
        if sent > (ends[first - 1] if first else 0):
            # That frame is partly on the wire: its rest must be sent whatever happens.
            self._partial = ends[first] - sent
            prev = ends[first]
            first += 1
        else:
            prev = sent
        for end in ends[first:]:
            self._lengths().append(end - prev)
            prev = end
        if len(self._pending) > self._config.max_backlog_bytes:
            self._overflow()
            return
        self._start_writer()

    def _overflow(self) -> None:
        """The backlog bound was hit: drop the queued whole frames and close with 4101."""
        self._counters.closed_slow_consumer += 1
        # Keep only the rest of the frame partly on the wire; the close frame must follow a
        # frame boundary.
        del self._pending[self._partial :]
        self._pending_lengths = None
        self._out = bytearray()
        self._out_ends = []
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing backlog over the limit")

    def _lengths(self) -> collections.deque[int]:
        """The backlog's frame lengths, made on first use."""
        lengths = self._pending_lengths
        if lengths is None:
            lengths = self._pending_lengths = collections.deque()
        return lengths

    def _start_writer(self) -> None:
        if not self._writer_running:
            self._writer_running = True
            self._nursery.start_soon(self._writer, name=_WRITER_TASK)

    def _consumed(self, n: int) -> None:
        """Account ``n`` bytes the writer sent from the head of the backlog."""
        del self._pending[:n]
        self._counters.bytes_out += n
        if n <= self._partial:
            self._partial -= n
            return
        n -= self._partial
        lengths = self._pending_lengths
        if lengths is None:
            self._partial = 0
            return
        while lengths and n >= lengths[0]:
            n -= lengths.popleft()
        self._partial = 0
        if n and lengths:
            self._partial = lengths.popleft() - n

    async def _drain(self) -> None:
        """Write the backlog as the socket becomes writable; return when it is empty."""
        sock = self._sock
        while self._pending and self._state is not _State.CLOSED:
            await trio.lowlevel.wait_writable(sock)
            try:
                sent = sock.send(self._pending)
            except BlockingIOError:
                continue
            except OSError:
                self._lost()
                return
            self._consumed(sent)

    async def _writer(self) -> None:
        """Drain the backlog; when closing, also finish the close within the deadline.

        Started on demand by ``_start_writer`` and exits when there is nothing left to do, so
        connections whose kernel buffer keeps up never hold a writer task.
        """
        try:
            # No deadline while open; close() sets it (a stalled drain must not outlive it).
            with trio.CancelScope(deadline=self._close_deadline) as scope:
                self._writer_scope = scope
                await self._drain()
                if self._state is _State.OPEN:
                    return
                # The close frame may still sit in the coalescing buffer.
                self._flush()
                await self._drain()
                if self._state is _State.CLOSED:
                    return
                # Half-close: the peer reads our close frame, then EOF; it answers and hangs up.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)
                await self._read_until_peer_closed()
            self._abort()
        except trio.ClosedResourceError:
            # _abort() from another task woke our wait_writable: the connection is gone.
            pass
        finally:
            self._writer_running = False
            self._writer_scope = None

    async def _read_until_peer_closed(self) -> None:
        """Closing: wait for the peer's close frame (or EOF), reading the socket ourselves
        unless the handler's ``receive()`` is already waiting on it (one reader per socket).

        Reading matters even when nobody wants the data: closing a socket with unread input
        makes the kernel send RST, which can destroy our close frame before the peer reads it.
        """
        while not self._peer_closed and self._state is not _State.CLOSED:
            if self._reading:
                self._closer_wakeup = trio.Event()
                await self._closer_wakeup.wait()
            else:
                self._closer_reading = True
                try:
                    await self._receive_some()
                finally:
                    self._closer_reading = False

    # -- closing ------------------------------------------------------------------------------

    def _begin_close(self, code: int, reason: str) -> None:
        self._state = _State.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._close_deadline = trio.current_time() + self._config.close_timeout
        if self._writer_scope is not None:
            self._writer_scope.deadline = self._close_deadline

    def _lost(self) -> None:
        """The TCP connection failed under us (reset, broken pipe)."""
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = "connection lost"
        self._peer_closed = True
        self._abort()

    def _abort(self) -> None:
        """Shut the connection now: no more I/O, wake every task waiting on the socket."""
        if self._state is _State.CLOSED:
            return
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = "connection lost"
        self._state = _State.CLOSED
        self._counters.connections_open -= 1
        self._out = bytearray()
        self._out_ends = []
        self._pending.clear()
        self._pending_lengths = None
        self._partial = 0
        # Wakes a receive() or _drain() blocked on this socket with ClosedResourceError. The
        # connection task closes the socket itself once its handler has returned.
        trio.lowlevel.notify_closing(self._sock)
        if self._closed_event is not None:
            self._closed_event.set()
        if self._closer_wakeup is not None:
            self._closer_wakeup.set()
        if self._writer_scope is not None:
            self._writer_scope.cancel()  # it may still be starting; nothing is left to write

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self) -> bytes:
        """The next complete binary message.

        Raises ``ConnectionClosed`` once the connection is closed: at once after the peer's
        close frame (with its code) or a lost TCP connection (1006); after our own ``close()``
        (or a protocol violation we answered with a close: 1002, 1003 text frame, 1007, 1009
        too big) when the peer answers it, or at ``close_timeout`` if it never does. Messages
        that arrived before the close are returned first; data arriving after it is dropped.
        """
        while True:
            messages = self._messages
            if messages:
                head = self._messages_head
                data = messages[head]
                if head + 1 == len(messages):
                    messages.clear()
                    self._messages_head = 0
                else:
                    messages[head] = b""  # drop our reference now; the slot goes at clear()
                    self._messages_head = head + 1
                return data
            if self._state is not _State.OPEN:
                if self._state is _State.CLOSED or self._peer_closed:
                    raise ConnectionClosed(
                        self.close_code if self.close_code is not None else ABNORMAL_CLOSURE,
                        self.close_reason,
                    )
                if self._closer_reading:
                    # The writer task reads for the close handshake; wait for its outcome.
                    await self.wait_closed()
                    continue
            # ``_receive_some`` inline: an idle connection waits here, and every coroutine
            # level costs ~0.2 KiB per connection.
            self._reading = True
            try:
                await trio.lowlevel.wait_readable(self._sock)
            except trio.ClosedResourceError:
                self._abort()
                continue
            finally:
                self._after_wait()
            self._read_now()

    async def _receive_some(self) -> None:
        """One read from the socket, fed to wsproto; its events are processed."""
        self._reading = True
        try:
            await trio.lowlevel.wait_readable(self._sock)
        except trio.ClosedResourceError:
            self._abort()
            return
        finally:
            self._after_wait()
        self._read_now()

    def _after_wait(self) -> None:
        self._reading = False
        if self._state is not _State.OPEN and self._closer_wakeup is not None:
            # A closing writer may be waiting for this reader to step aside.
            self._closer_wakeup.set()

    def _read_now(self) -> None:
        """Read what the socket has (it was readable) and feed it to wsproto."""
        try:
            data = self._sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        self._seen = True
        if not data:
            # EOF: wsproto turns None into a CloseConnection(1006) event if it was open.
            self._feed(None)
            return
        self._counters.bytes_in += len(data)
        self._feed(data)

    def _feed(self, data: bytes | None) -> None:
        proto = self._proto
        if proto.state not in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # The close handshake is over on wsproto's side; anything more is ignored.
            if data is None:
                self._peer_closed = True
            return
        proto.receive_data(data)
        for event in proto.events():
            if isinstance(event, BytesMessage):
                self._on_data(event)
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            elif isinstance(event, Ping):
                if self._state is _State.OPEN:
                    self._write_control(proto.send(event.response()))
            elif isinstance(event, TextMessage):
                self._fail(
                    CloseCode.UNSUPPORTED_DATA,
                    f"{ErrorCode.TEXT_FRAME}: pubquiz.v1 accepts binary messages only",
                )
            # Pong: any traffic already counted as liveness (``_seen``); nothing else to do.

    def _on_data(self, event: BytesMessage) -> None:
        if self._state is not _State.OPEN:
            return
        data = event.data
        fragments = self._fragments
        # The cap applies to the running size: wsproto hands us each piece as it arrives, so
        # a huge message is refused after at most max_message_size + one read of memory.
        if len(fragments) + len(data) > self._config.max_message_size:
            self._fail(
                CloseCode.MESSAGE_TOO_BIG,
                f"{ErrorCode.FRAME_TOO_LARGE}: message over {self._config.max_message_size} bytes",
            )
            return
        if not event.message_finished:
            fragments += data
            return
        if fragments:
            fragments += data
            data = bytes(fragments)
            fragments.clear()
        self._counters.frames_in += 1
        self._messages.append(data if isinstance(data, bytes) else bytes(data))

    def _on_close(self, event: CloseConnection) -> None:
        proto = self._proto
        if proto.state is ConnectionState.OPEN:
            # wsproto reports a frame it could not parse as a CloseConnection while staying
            # OPEN: that is the peer's protocol error (1002, 1007), not its close frame.
            self._fail(event.code, event.reason or "protocol error")
            return
        self._peer_closed = True
        if event.code == ABNORMAL_CLOSURE:
            # EOF without a close frame.
            self._lost()
            return
        if self._state is _State.OPEN:
            # The peer started the close: answer it, report its code.
            self._begin_close(event.code, event.reason or "")
            self._fragments.clear()
            self._write_control(proto.send(event.response()))
            self._start_writer()
        # Else this answers our close; the writer notices ``_peer_closed`` and shuts down.

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol: close with ``code`` and drop what it sent after."""
        self._fragments.clear()
        self.close(code, reason)


class _Coalescer:
    """Flushes, once per scheduler pass, every connection written to during the pass.

    The first write of a pass registers the connection and wakes the coalescer's task; trio
    runs that task in its next batch, after the tasks already runnable, so a broadcast and
    the replies of every reader that ran in the same batch leave in one ``send()`` each. Each
    pass is timed from its first write to the end of its flush (``TransportStatistics``).
    """

    __slots__ = ("_counters", "_dirty", "_first_write", "_frames_before", "_wakeup")

    def __init__(self, counters: _Counters) -> None:
        self._counters = counters
        self._dirty: list[WebSocket] = []
        self._wakeup = trio.Event()
        self._first_write = 0.0
        self._frames_before = 0

    def add(self, ws: WebSocket) -> None:
        if not self._dirty:
            self._wakeup.set()
            self._first_write = time.perf_counter()
            self._frames_before = self._counters.frames_out
        self._dirty.append(ws)

    async def run(self) -> None:
        counters = self._counters
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            dirty, self._dirty = self._dirty, []
            for ws in dirty:
                ws._flush()
            seconds = time.perf_counter() - self._first_write
            counters.write_passes += 1
            counters.write_pass_seconds_total += seconds
            if seconds > counters.write_pass_seconds_max:
                counters.write_pass_seconds_max = seconds
                counters.write_pass_frames_at_max = counters.frames_out - self._frames_before


WebSocketHandler = Callable[[WebSocket], Awaitable[object]]
"""``async handler(ws)``: runs for the life of one WebSocket; returning closes it (1000)."""


# ---------------------------------------------------------------------------------------------
# The server


@attrs.frozen(eq=False)
class ListenerInfo:
    """What ``serve()`` reports through ``task_status.started()``: where it listens, and its
    counters (``statistics()``; the metrics module reads them)."""

    host: str
    port: int
    _counters: _Counters = attrs.field(repr=False, alias="counters")
    _connections: set[WebSocket] = attrs.field(repr=False, alias="connections")

    def statistics(self) -> TransportStatistics:
        """A snapshot of the transport's counters."""
        return self._counters.snapshot()

    def connections(self) -> list[WebSocket]:
        """The open WebSocket connections right now (a copy)."""
        return list(self._connections)


async def serve(
    handler: WebSocketHandler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    config: TransportConfig | None = None,
    http_handler: HttpHandler | None = None,
    task_status: trio.TaskStatus[ListenerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` and serve WebSocket and plain HTTP on it until cancelled.

    ``port=0`` binds a free port; the bound address is reported by
    ``task_status.started(ListenerInfo)``, after which connections are accepted. Each
    connection runs in its own task: the upgrade handshake, then ``await handler(ws)``; a
    non-upgrade request is answered with ``await http_handler(request)`` (default: 404).

    Resource handling: every accepted socket is closed when its task ends; a handler's
    return closes its WebSocket with 1000. Cancelling ``serve`` closes the listener and
    cancels every connection task (the caller owns graceful shutdown: close each
    ``ws`` with ``CloseCode.SERVICE_RESTART`` first, then cancel).

    Error handling: ``ConnectionClosed`` from a handler is the normal end of a connection.
    Any other ``Exception`` from a handler is logged and its connection closed with 1011,
    so one connection's bug never takes the server down. Errors of the listening socket
    other than the "overloaded" ones (EMFILE, ENFILE, ENOMEM, ENOBUFS: logged, retried after
    100 ms, like ``trio.serve_listeners``) propagate.
    """
    config = config or TransportConfig()
    http_handler = http_handler or not_found
    counters = _Counters()
    connections: set[WebSocket] = set()
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(config.listen_backlog)
        listener.setblocking(False)
        bound_host, bound_port = listener.getsockname()[:2]
        coalescer = _Coalescer(counters) if config.coalesce_writes else None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keepalive, connections, config, counters)
            if coalescer is not None:
                nursery.start_soon(coalescer.run)
            task_status.started(ListenerInfo(bound_host, bound_port, counters, connections))
            while True:
                await trio.lowlevel.wait_readable(listener)
                # Accept everything already queued: one wakeup per burst, not per client.
                while True:
                    try:
                        sock, address = listener.accept()
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                            raise
                        LOGGER.error(
                            "accept returned %s; retrying in %s s",
                            errno.errorcode[exc.errno],
                            _ACCEPT_BACKOFF,
                        )
                        await trio.sleep(_ACCEPT_BACKOFF)
                        break
                    nursery.start_soon(
                        _serve_connection,
                        sock,
                        (address[0], address[1]),
                        handler,
                        http_handler,
                        config,
                        counters,
                        connections,
                        coalescer,
                        nursery,
                        name=_CONNECTION_TASK,
                    )
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()


async def _keepalive(
    connections: set[WebSocket], config: TransportConfig, counters: _Counters
) -> None:
    """One task for all connections: ping the idle ones, close those that stay silent.

    A sweep every half of the shorter timeout bounds the error on both to that much, and
    costs one pass over the connection set (no timer per connection).
    """
    period = min(config.ping_interval, config.ping_timeout) / 2
    while True:
        await trio.sleep(period)
        now = trio.current_time()
        for ws in list(connections):
            if ws._state is not _State.OPEN:
                continue
            if ws._seen:
                ws._seen = False
                ws._last_seen = now
                ws._ping_sent_at = None
            elif ws._ping_sent_at is not None:
                if now - ws._ping_sent_at >= config.ping_timeout:
                    counters.closed_idle += 1
                    ws.close(CloseCode.IDLE_TIMEOUT, "idle timeout: no pong or traffic")
            elif now - ws._last_seen >= config.ping_interval:
                ws._ping_sent_at = now
                ws._write_control(_PING_FRAME)


async def _serve_connection(
    sock: socket.socket,
    remote_address: tuple[str, int],
    handler: WebSocketHandler,
    http_handler: HttpHandler,
    config: TransportConfig,
    counters: _Counters,
    connections: set[WebSocket],
    coalescer: _Coalescer | None,
    writers: trio.Nursery,
) -> None:
    """One accepted socket, from handshake to close. Always closes the socket.

    The connection's writer task, when it needs one, runs in ``writers`` (the server's
    nursery) under its own cancel scope, which ``_abort`` cancels: no nursery per connection
    (one costs ~1 KiB, and an idle connection has no writer). Each level of coroutine here
    costs ~0.2-0.4 KiB per idle connection too, hence the handler runs inline.
    """
    try:
        sock.setblocking(False)
        if config.tcp_nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if config.send_buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer_bytes)
        upgrade = None
        with trio.move_on_after(config.handshake_timeout):
            # OSError: the peer reset the connection mid-handshake; there is nothing to answer.
            with contextlib.suppress(OSError):
                upgrade = await _handshake(sock, http_handler, config, counters)
        if upgrade is None:
            return
        proto, path, headers, subprotocol, trailing = upgrade
        ws = WebSocket(
            sock,
            proto,
            config=config,
            counters=counters,
            nursery=writers,
            coalescer=coalescer,
            remote_address=remote_address,
            request_path=path,
            request_headers=headers,
            subprotocol=subprotocol,
        )
        connections.add(ws)
        counters.connections_open += 1
        counters.connections_total += 1
        if trailing:
            ws._feed(trailing)
        try:
            try:
                await handler(ws)
            except ConnectionClosed:
                pass
            except Exception:
                LOGGER.exception("WebSocket handler failed for %s", ws.remote_address)
                ws.close(CloseCode.INTERNAL_ERROR, "internal error")
            else:
                ws.close(CloseCode.NORMAL, "")
            await _linger(ws)
        finally:
            connections.discard(ws)
            ws._abort()
    finally:
        trio.lowlevel.notify_closing(sock)
        sock.close()


async def _linger(ws: WebSocket) -> None:
    """After the handler: let the writer task finish the close handshake, within the
    deadline (the handler's return closed the connection if it was still open)."""
    with trio.move_on_at(ws._close_deadline):
        await ws.wait_closed()


# ---------------------------------------------------------------------------------------------
# Handshake and plain HTTP


# (wsproto connection, request target, request headers, subprotocol, bytes after the request)
_Upgrade = tuple[WsprotoConnection, str, tuple[tuple[str, str], ...], str | None, bytes]


async def _handshake(
    sock: socket.socket,
    http_handler: HttpHandler,
    config: TransportConfig,
    counters: _Counters,
) -> _Upgrade | None:
    """Read one request. Return the upgraded connection, or ``None`` once the request was
    answered over plain HTTP (or rejected, or the peer went away)."""
    h11_conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
    try:
        request = await _read_request(sock, h11_conn)
        if request is None:
            return None
        header_bytes = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if len(request.headers) > config.max_headers or header_bytes > config.max_header_bytes:
            counters.handshake_failures += 1
            await _respond(sock, h11_conn, _error(431, "request header fields too large"))
            return None
        if not _is_upgrade(request):
            counters.http_requests += 1
            http_request = await _read_http_request(sock, h11_conn, request, config)
            if http_request is None:
                await _respond(sock, h11_conn, _error(413, "request body too large"))
                return None
            response = await http_handler(http_request)
            if request.method == b"HEAD":
                # h11 refuses a body on a HEAD response; handlers need not know that.
                response = attrs.evolve(response, body=b"")
            await _respond(sock, h11_conn, response)
            return None
        upgrade = _accept_websocket(request, h11_conn, config)
        if isinstance(upgrade, HttpResponse):
            counters.handshake_failures += 1
            await _respond(sock, h11_conn, upgrade)
            return None
        accept_bytes, result = upgrade
        await _send_all(sock, accept_bytes)
        return result
    except h11.RemoteProtocolError as exc:
        counters.handshake_failures += 1
        status = exc.error_status_hint
        if h11_conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await _respond(sock, h11_conn, _error(status, f"bad request: {exc}"))
        return None


async def _read_request(sock: socket.socket, h11_conn: h11.Connection) -> h11.Request | None:
    while True:
        event = h11_conn.next_event()
        if event is h11.NEED_DATA:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                continue
            h11_conn.receive_data(data)  # b"" is EOF: h11 then reports ConnectionClosed
        elif isinstance(event, h11.Request):
            return event
        else:
            # ConnectionClosed before a request: a port probe or an abandoned connection.
            return None


def _is_upgrade(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.lower() == b"websocket":
            return True
    return False


#: Header names and values every WebSocket client sends, as shared str objects: a
#: connection keeps its request headers for its whole life (``request_headers``), and sharing
#: these saves ~0.4 KiB per idle connection (measured with tracemalloc). A fixed set, never
#: grown from what clients send.
_COMMON_HEADER_STRINGS: dict[bytes, str] = {
    s.encode("latin-1"): s
    for s in (
        "host", "upgrade", "connection", "origin", "user-agent", "pragma", "cache-control",
        "accept-encoding", "accept-language", "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-protocol", "sec-websocket-extensions", "x-forwarded-for", "x-real-ip",
        "websocket", "Upgrade", "upgrade", "13", "no-cache", "gzip, deflate, br",
        "permessage-deflate; client_max_window_bits",
    )
}


#: Headers the upgrade consumed: a connection does not keep them (its key alone is a 73-byte
#: str per connection); ``subprotocol`` says what was agreed.
_HANDSHAKE_HEADERS: Final = frozenset({
    "connection", "upgrade", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol",
})


def _str_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    # h11 lower-cases names; HTTP header values are latin-1 by definition.
    common = _COMMON_HEADER_STRINGS.get
    return tuple((common(n) or n.decode("latin-1"), common(v) or v.decode("latin-1"))
                 for n, v in headers)


async def _read_http_request(
    sock: socket.socket, h11_conn: h11.Connection, request: h11.Request, config: TransportConfig
) -> HttpRequest | None:
    """Collect the body (bounded by ``max_http_body``); ``None`` if it is too large."""
    body = bytearray()
    while True:
        event = h11_conn.next_event()
        if event is h11.NEED_DATA:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                continue
            h11_conn.receive_data(data)
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > config.max_http_body:
                return None
        else:
            # EndOfMessage (or the peer closed early: answer what we have).
            break
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    return HttpRequest(
        method=request.method.decode("latin-1"),
        path=path,
        query=query,
        headers=_str_headers(request.headers),
        body=bytes(body),
    )


def _accept_websocket(
    request: h11.Request, h11_conn: h11.Connection, config: TransportConfig
) -> tuple[bytes, _Upgrade] | HttpResponse:
    """Check the upgrade request; the 101 response bytes and the connection, or a rejection."""
    if request.method != b"GET":
        return _error(400, "a websocket upgrade must be a GET request")
    headers = _str_headers(request.headers)
    values: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
    for name, value in headers:
        values[name].append(value)
    if config.allowed_origins:
        origin = values["origin"][0] if values["origin"] else None
        if origin not in config.allowed_origins:
            return _error(403, f"origin not allowed: {origin}")
    offered = [p.strip() for v in values["sec-websocket-protocol"] for p in v.split(",")]
    subprotocol: str | None = config.subprotocol if config.subprotocol in offered else None
    if subprotocol is None and config.require_subprotocol:
        return _error(
            400, f"subprotocol required: offer Sec-WebSocket-Protocol: {config.subprotocol}"
        )
    # wsproto validates the rest (method, version, key, Host) and builds the 101. It parses
    # the request itself, so we hand it the request h11 already parsed.
    ws_conn = WSConnection(ConnectionType.SERVER)
    try:
        ws_conn.initiate_upgrade_connection(list(request.headers), request.target)
        event = next(ws_conn.events())
        assert isinstance(event, Request)
        response = ws_conn.send(AcceptConnection(subprotocol=subprotocol))
    except WsprotoRemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        return _error(status, f"bad websocket handshake: {exc}")
    except WsprotoProtocolError as exc:  # pragma: no cover - a bug of ours, reported as 400
        return _error(400, f"bad websocket handshake: {exc}")
    proto = ws_conn.connection
    assert proto is not None
    # Bytes the client sent after its request: frames pipelined behind the handshake.
    trailing, _closed = h11_conn.trailing_data
    target = request.target.decode("latin-1")
    kept = tuple(h for h in headers if h[0] not in _HANDSHAKE_HEADERS)
    return response, (proto, target, kept, subprotocol, trailing)


def _error(status: int, text: str) -> HttpResponse:
    return HttpResponse(
        status, (("content-type", "text/plain; charset=utf-8"),), f"{text}\n".encode()
    )


async def _respond(sock: socket.socket, h11_conn: h11.Connection, response: HttpResponse) -> None:
    """Write ``response`` with ``connection: close`` and shut our side of the connection."""
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    headers.append((b"connection", b"close"))
    try:
        reason = HTTPStatus(response.status).phrase.encode("latin-1")
    except ValueError:
        reason = b""
    data = (
        h11_conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        or b""
    )
    if response.body:
        data += h11_conn.send(h11.Data(data=response.body)) or b""
    data += h11_conn.send(h11.EndOfMessage()) or b""
    await _send_all(sock, data)
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    # Read until the client hangs up (bounded by the handshake deadline around us), so that
    # closing with unread input does not reset the connection before the response is read.
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            if not sock.recv(_RECV_SIZE):
                return
        except BlockingIOError:
            continue


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]
