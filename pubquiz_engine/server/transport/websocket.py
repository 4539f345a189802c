"""One accepted WebSocket connection: sends that never block, a bounded backlog, the close
handshake, and reassembly of what arrives.

The module rules (see ``pubquiz_engine.server.transport``) are kept here: sends never await,
a slow member only hurts itself, every wait has a deadline, limits are enforced before
memory is spent, and wsproto's errors become close codes.
"""

from __future__ import annotations

import contextlib
import enum
import math
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final

import trio
from websockets.speedups import apply_mask
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    TextMessage,
)

from pubquiz_engine.errors import CloseCode, ErrorCode
from pubquiz_engine.server.transport.backlog import SendBacklog
from pubquiz_engine.server.transport.config import (
    ABNORMAL_CLOSURE,
    RECV_SIZE,
    ConnectionClosed,
    Counters,
    TransportConfig,
)
from pubquiz_engine.server.transport.framing import frame_binary, frame_text

if TYPE_CHECKING:
    from pubquiz_engine.server.transport.coalescer import Coalescer
    from pubquiz_engine.server.transport.reader import EpollReader

__all__ = ["WebSocket", "WebSocketHandler", "send_frame_to_all"]

# Task names given as one shared str: trio otherwise formats a new one for every task.
_WRITER_TASK: Final = "pubquiz_engine.server.transport.writer"


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
        "_backlog",
        "_close_deadline",
        "_closed_event",
        "_closer_reading",
        "_closer_wakeup",
        "_coalescer",
        "_config",
        "_consumer",
        "_counters",
        "_fragments",
        "_inbuf",
        "_last_seen",
        "_lib_fragmented",
        "_messages",
        "_messages_head",
        "_nursery",
        "_paused",
        "_peer_closed",
        "_pending",
        "_pending_ends",
        "_ping_sent_at",
        "_proto",
        "_reader",
        "_reading",
        "_seen",
        "_sock",
        "_state",
        "_waiter",
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
        *,
        config: TransportConfig,
        counters: Counters,
        nursery: trio.Nursery,
        coalescer: Coalescer | None,
        reader: EpollReader | None = None,
        remote_address: tuple[str, int],
        request_path: str,
        request_headers: tuple[tuple[str, str], ...],
        subprotocol: str | None,
    ) -> None:
        self._sock = sock
        # wsproto's connection (~1.7 KiB, 9 objects the cyclic GC walks) is made only when a
        # frame off the fast path or a close needs it: an idle connection never does.
        self._proto: WsprotoConnection | None = None
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
        # Outgoing backlog: what the kernel has not taken, with its frame boundaries (rule
        # 2). Made when the kernel first refuses bytes: an idle connection has none.
        self._backlog: SendBacklog | None = None
        self._writer_running = False
        self._writer_scope: trio.CancelScope | None = None
        # Closing handshake: whether the handler's receive() or the writer task is waiting
        # on the socket, and the event a closing writer waits on for the reader to finish.
        self._reading = False
        self._closer_reading = False
        # The events of the close are made when someone waits (a trio.Event is ~210 bytes
        # with its set of waiters; an idle connection needs none).
        self._closer_wakeup: trio.Event | None = None
        # Coalescing (``TransportConfig.coalesce_writes``): what was written during this
        # scheduler pass, sent by the server's coalescer in one call. ``_pending`` is None
        # (nothing), the one frame written (the caller's bytes object itself: a broadcast's
        # frame is shared by every member, never copied), or from the second frame on a
        # bytearray of the frames with their end offsets in ``_pending_ends`` (None while
        # there is one frame). Nothing is allocated for a connection that is not written to.
        self._coalescer = coalescer
        # The Linux reader (``reader.py``) when it reads this socket: the handler's receive()
        # then parks as ``_waiter`` and the reader wakes it; ``_paused`` while it is not read
        # because the handler is behind. ``None``: the portable path, receive() reads itself.
        self._reader = reader
        self._waiter: trio.lowlevel.Task | None = None
        self._paused = False
        # With the Linux reader: a synchronous consumer the reader calls in its pass while
        # the handler waits in receive() (``set_consumer``).
        self._consumer: Callable[[], None] | None = None
        self._pending: bytes | bytearray | None = None
        self._pending_ends: list[int] | None = None
        # Incoming: complete messages not yet returned by receive() (a list read from
        # ``_messages_head``, not a deque: an empty list is 56 bytes, an empty deque ~740), and
        # the fragments of the message being reassembled.
        self._messages: list[bytes | str] = []
        self._messages_head = 0
        self._fragments = bytearray()
        # Bytes of a frame not complete yet, and whether wsproto holds an open fragmented
        # message (then every data frame goes to wsproto until it ends).
        self._inbuf: bytes | bytearray = b""
        self._lib_fragmented = False
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
        backlog = self._backlog
        pending = self._pending
        return ((len(pending) if pending is not None else 0)
                + (len(backlog) if backlog is not None else 0))

    def describe(self) -> str:
        """One line on this connection's sending and receiving state, for a log line (an
        engine's state at shutdown: what each member's connection still held)."""
        pending = self._pending
        return (f"{self._state.name.lower()} close={self.close_code} "
                f"pending={len(pending) if pending is not None else 0} "
                f"backlog={len(self._backlog) if self._backlog is not None else 0} "
                f"writer={self._writer_running} "
                f"queued={len(self._messages) - self._messages_head if self._messages else 0} "
                f"waiting={self._waiter is not None}")

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

    def send_text(self, text: str) -> None:
        """Send ``text`` as one text message (pubquiz.v1 never does; test applications do)."""
        if self._state is _State.OPEN:
            self._write(frame_text(text))

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
        self._write_close(self._lib().send(CloseConnection(code=code, reason=reason)))
        self._start_writer()

    def _write(self, data: bytes) -> None:
        """Send one whole frame now (or at the end of this scheduler pass when coalescing);
        queue what the kernel does not take, within the backlog bound."""
        if self._coalescer is not None:
            self._add_pending(data)  # first: the coalescer notes frames_out at a pass's start
            self._counters.frames_out += 1
            if self.backlog_bytes > self._config.max_backlog_bytes:
                self._overflow()
            return
        self._counters.frames_out += 1
        backlog = self._backlog
        if backlog:
            # Frames must not overtake the backlog: queue behind it.
            if len(backlog) + len(data) > self._config.max_backlog_bytes:
                self._overflow()
                return
            backlog.add_frame(data)
            return
        self._send_now(data, None)

    def _add_pending(self, data: bytes) -> None:
        """Coalescing: add a frame to this pass's output (registering the connection with
        the coalescer at its first frame of the pass)."""
        pending = self._pending
        if pending is None:
            assert self._coalescer is not None
            self._coalescer.add(self)
            self._pending = data
            return
        ends = self._pending_ends
        if ends is None:
            # The second frame of the pass: from now on a buffer of its own.
            buf = bytearray(pending)
            first = len(buf)
            buf += data
            self._pending = buf
            self._pending_ends = [first, len(buf)]
            return
        assert isinstance(pending, bytearray)
        pending += data
        ends.append(len(pending))

    def _write_control(self, data: bytes) -> None:
        """Like ``_write`` for a ping or a pong: never ahead of what is queued, and within the
        backlog bound like any frame. A peer that pings and never reads grows our backlog by
        a pong per ping: it is a slow consumer like any other (closed with 4101)."""
        self._write_close(data)
        if self.backlog_bytes > self._config.max_backlog_bytes:
            self._overflow()

    def _write_close(self, data: bytes) -> None:
        """Queue a close frame behind what is queued, exempt from the bound: it is tiny, at
        most one per connection, and it must get out."""
        if self._coalescer is not None:
            self._add_pending(data)
        elif self._backlog:
            self._backlog.add_frame(data)
        else:
            self._send_now(data, None)

    def _flush(self) -> None:
        """Hand the frames coalesced during this scheduler pass to the kernel (one send)."""
        data = self._pending
        if data is None:
            return
        ends = self._pending_ends
        # Take them first: sending may overflow and close, which writes the close frame anew.
        self._pending = None
        self._pending_ends = None
        if self._state is _State.CLOSED:
            return
        backlog = self._backlog
        if backlog:
            # The writer task is draining: queue behind its backlog.
            if ends is None:
                backlog.add_frame(data)
            else:
                backlog.add_frames(data, ends)
            return
        self._send_now(data, ends)

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
        if sent != len(data):
            self._queue_unsent(data, ends, sent)

    def _queue_unsent(self, data: bytes | bytearray, ends: list[int] | None, sent: int) -> None:
        """The kernel took only ``sent`` bytes of ``data`` (sent with an empty backlog): queue
        the rest for the writer task, within the backlog bound."""
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = SendBacklog()
        backlog.add_unsent(data, ends, sent)
        if len(backlog) > self._config.max_backlog_bytes:
            self._overflow()
            return
        self._start_writer()

    def _overflow(self) -> None:
        """The backlog bound was hit: drop the queued whole frames and close with 4101."""
        self._counters.closed_slow_consumer += 1
        # Keep only the rest of the frame partly on the wire; the close frame must follow a
        # frame boundary.
        if self._backlog is not None:
            self._backlog.drop_whole_frames()
        self._pending = None
        self._pending_ends = None
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outgoing backlog over the limit")

    def _start_writer(self) -> None:
        if not self._writer_running:
            self._writer_running = True
            self._nursery.start_soon(self._writer, name=_WRITER_TASK)

    async def _drain(self) -> None:
        """Write the backlog as the socket becomes writable; return when it is empty."""
        sock = self._sock
        while (backlog := self._backlog) and self._state is not _State.CLOSED:
            await trio.lowlevel.wait_writable(sock)
            try:
                sent = sock.send(backlog.data)
            except BlockingIOError:
                continue
            except OSError:
                self._lost()
                return
            self._counters.bytes_out += sent
            backlog.consumed(sent)
        if self._backlog is not None and not self._backlog:
            # Drained: drop it (made again if the kernel refuses bytes again), so the
            # connection is back on the coalescer's fast path and holds no deque.
            self._backlog = None

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
            if self._backlog is not None and not self._backlog:
                self._backlog = None  # drained: an idle connection holds no buffer
            self._writer_scope = None

    async def _read_until_peer_closed(self) -> None:
        """Closing: wait for the peer's close frame (or EOF), reading the socket ourselves
        unless the handler's ``receive()`` is already waiting on it (one reader per socket).

        Reading matters even when nobody wants the data: closing a socket with unread input
        makes the kernel send RST, which can destroy our close frame before the peer reads it.
        """
        reader = self._reader
        while not self._peer_closed and self._state is not _State.CLOSED:
            if reader is not None:
                # The reader task reads the socket; wait for what it finds.
                if self._paused:
                    reader.resume(self)
                self._closer_wakeup = trio.Event()
                await self._closer_wakeup.wait()
            elif self._reading:
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
        self._pending = None
        self._pending_ends = None
        self._backlog = None
        if self._reader is not None:
            self._reader.unregister(self)
            self._consumer = None
            task = self._waiter
            if task is not None:
                self._waiter = None
                trio.lowlevel.reschedule(task)
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

    async def receive(self) -> bytes | str:
        """The next complete message: ``bytes`` for a binary message, ``str`` for a text one.

        Text is handled as RFC 6455 says (UTF-8 checked as it arrives, fragmented or not;
        invalid UTF-8 closes with 1007); whether text is welcome is the application's rule
        (pubquiz.v1 refuses it in ``server/connection.py``).

        Raises ``ConnectionClosed`` once the connection is closed: at once after the peer's
        close frame (with its code) or a lost TCP connection (1006); after our own ``close()``
        (or a protocol violation we answered with a close: 1002, 1007 invalid UTF-8,
        1009 too big) when the peer answers it, or at ``close_timeout`` if it never does. Messages
        that arrived before the close are returned first; data arriving after it is dropped.
        """
        while True:
            data = self.receive_nowait()
            if data is not None:
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
            reader = self._reader
            if reader is not None:
                # Parked until the reader task delivers (or the connection closes); inline,
                # not a method: an idle connection waits here, one coroutine level less.
                if self._paused:
                    reader.resume(self)
                self._waiter = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._unpark)
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

    def set_consumer(self, consumer: Callable[[], None] | None) -> None:
        """Let ``consumer`` take messages in the reader's own pass (Linux reader only).

        When the reader has queued messages and the handler's task waits in ``receive()``,
        the reader calls ``consumer()`` before it wakes that task; the consumer may take
        messages from the head with ``peek_message`` and ``receive_nowait``, in order, and
        leave the rest. The task is woken only if messages are left (or the connection is
        closing). So a message that needs nothing asynchronous costs no task switch, and the
        handler still sees every other message in the order it arrived, after those taken.
        ``None`` removes it (the handler must, before it stops receiving). A no-op on the
        portable path, where ``receive()`` reads the socket itself.
        """
        if self._reader is not None:
            self._consumer = consumer

    def peek_message(self) -> bytes | str | None:
        """The message ``receive()`` would return next, left in place; ``None`` if none."""
        messages = self._messages
        return messages[self._messages_head] if messages else None

    def receive_nowait(self) -> bytes | str | None:
        """Take the next message without waiting; ``None`` if none is queued."""
        messages = self._messages
        if not messages:
            return None
        head = self._messages_head
        data = messages[head]
        if head + 1 == len(messages):
            messages.clear()
            self._messages_head = 0
        else:
            messages[head] = b""  # drop our reference now; the slot goes at clear()
            self._messages_head = head + 1
        return data

    def _consume(self) -> None:
        """The reader's pass delivered messages: offer them to the consumer first, if the
        handler's task waits in ``receive()`` (else it is busy and takes them itself)."""
        if (
            self._messages
            and self._consumer is not None
            and self._waiter is not None
            and self._state is _State.OPEN
        ):
            before = len(self._messages) - self._messages_head
            self._consumer()
            left = len(self._messages) - self._messages_head if self._messages else 0
            self._counters.messages_consumed += before - left

    def _unpark(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _open(self) -> bool:
        return self._state is _State.OPEN

    def _wake_receiver(self) -> None:
        """After the reader read this socket: wake whoever waits for what it produced."""
        if self._messages or self._state is not _State.OPEN:
            task = self._waiter
            if task is not None:
                self._waiter = None
                trio.lowlevel.reschedule(task)
            if self._closer_wakeup is not None:
                self._closer_wakeup.set()

    def _fail_internal(self) -> None:
        """Handling this connection's input raised (a bug of ours): drop the connection."""
        if self.close_code is None:
            self.close_code = CloseCode.INTERNAL_ERROR
            self.close_reason = "internal error"
        self._peer_closed = True
        self._abort()

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
        """Read what the socket has (it was readable) and parse it."""
        try:
            data = self._sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        self._seen = True
        if not data:
            # EOF without a close frame (or after ours was answered): 1006 if still unknown.
            self._lost()
            return
        self._counters.bytes_in += len(data)
        self._feed(data)

    def _feed(self, data: bytes | bytearray) -> None:
        """Split ``data`` (after what is buffered) into whole frames and handle each.

        The fast path: a complete, final, masked binary or text frame with no reserved bits
        while no fragmented message is open is unmasked here (C ``apply_mask``) and delivered;
        text is checked as UTF-8 (1007). Every other frame (control frames, fragments,
        reserved bits or opcodes, unmasked frames) goes to wsproto whole, so wsproto never
        holds part of a frame and its checks (RFC 6455) apply unchanged. Limits come first,
        from the header alone: a data frame that would take the message over
        ``max_message_size`` is refused (1009) before its payload is buffered.
        """
        inbuf = self._inbuf
        if inbuf:
            inbuf += data
            data = inbuf
            self._inbuf = b""
        n = len(data)
        i = 0
        max_size = self._config.max_message_size
        while n - i >= 2:
            b0 = data[i]
            b1 = data[i + 1]
            length = b1 & 0x7F
            h = i + 2
            if length == 126:
                if n - h < 2:
                    break
                length = int.from_bytes(data[h : h + 2], "big")
                h += 2
            elif length == 127:
                if n - h < 8:
                    break
                length = int.from_bytes(data[h : h + 8], "big")
                h += 8
            if b1 & 0x80:
                h += 4  # the masking key
            if b0 & 0x08:  # a control frame
                if length > 125:
                    self._fail(CloseCode.PROTOCOL_ERROR, "control frame payload over 125 bytes")
                    return
            elif len(self._fragments) + length > max_size:
                self._fail(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"{ErrorCode.FRAME_TOO_LARGE}: message over {max_size} bytes",
                )
                return
            end = h + length
            if end > n:
                break  # incomplete: wait for the rest
            if self._state is not _State.OPEN:
                # We sent our close frame: only the peer's close matters now (RFC 6455 5.5.1);
                # anything else it sent before seeing ours is dropped.
                if b0 & 0x0F == 0x8:
                    self._peer_closed = True
                    return
            elif (b0 == 0x82 or b0 == 0x81) and b1 & 0x80 and not self._lib_fragmented:
                payload = apply_mask(data[h:end], data[h - 4 : h])
                self._counters.frames_in += 1
                if b0 == 0x82:
                    self._messages.append(payload)
                else:
                    try:
                        self._messages.append(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        self._fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text message")
                        return
            else:
                self._lib_feed(bytes(data[i:end]))
                opcode = b0 & 0x0F
                if opcode < 0x3:  # a data frame: a fragmented message opens or ends
                    self._lib_fragmented = not b0 & 0x80
            i = end
        if i < n:
            self._inbuf = data[i:] if i else (data if isinstance(data, bytearray)
                                              else bytearray(data))

    def _lib(self) -> WsprotoConnection:
        """wsproto's connection, made on first use. It has seen only whole frames (``_feed``),
        so one made now is in the state one made at the handshake would be in."""
        proto = self._proto
        if proto is None:
            proto = self._proto = WsprotoConnection(ConnectionType.SERVER)
        return proto

    def _lib_feed(self, frame: bytes) -> None:
        """Hand one whole frame to wsproto and handle its events."""
        proto = self._lib()
        if proto.state is not ConnectionState.OPEN:
            return
        proto.receive_data(frame)
        for event in proto.events():
            if isinstance(event, BytesMessage):
                self._on_message(event.data, event.message_finished, False)
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            elif isinstance(event, Ping):
                if self._state is _State.OPEN:
                    self._write_control(proto.send(event.response()))
            elif isinstance(event, TextMessage):
                # wsproto checked the UTF-8 (closing 1007 otherwise); keep the bytes until the
                # message is whole.
                self._on_message(event.data.encode("utf-8"), event.message_finished, True)
            # Pong: any traffic already counted as liveness (``_seen``); nothing else to do.

    def _on_message(self, data: bytes | bytearray, finished: bool, text: bool) -> None:
        """A piece of a data message (binary or, ``text``, UTF-8 already checked)."""
        if self._state is not _State.OPEN:
            return
        fragments = self._fragments
        # The cap applies to the running size: wsproto hands us each piece as it arrives, so
        # a huge message is refused after at most max_message_size + one read of memory.
        if len(fragments) + len(data) > self._config.max_message_size:
            self._fail(
                CloseCode.MESSAGE_TOO_BIG,
                f"{ErrorCode.FRAME_TOO_LARGE}: message over {self._config.max_message_size} bytes",
            )
            return
        if not finished:
            fragments += data
            return
        if fragments:
            fragments += data
            data = bytes(fragments)
            fragments.clear()
        self._counters.frames_in += 1
        if text:
            self._messages.append(data.decode("utf-8"))
        else:
            self._messages.append(data if isinstance(data, bytes) else bytes(data))

    def _on_close(self, event: CloseConnection) -> None:
        proto = self._lib()
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
            self._write_close(proto.send(event.response()))
            self._start_writer()
        # Else this answers our close; the writer notices ``_peer_closed`` and shuts down.

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol: close with ``code`` and drop what it sent after."""
        self._fragments.clear()
        self.close(code, reason)


def send_frame_to_all(members: Iterable[WebSocket], frame: bytes) -> None:
    """``ws.send_frame(frame)`` for every WebSocket of ``members``, in order (a broadcast).

    The same guarantees as one ``send_frame`` each (closed connections skipped, frames kept
    in order behind what each connection has queued, the backlog bound, close 4101), at a
    fraction of the cost per member: a member that is open, coalescing, with nothing written
    this pass and no backlog (a broadcast's common case) gets the frame's bytes object
    registered inline, without a call; every other member goes through ``_write``.
    """
    open_ = _State.OPEN
    # The fast path is taken for members of the coalescer (and config) of the first member
    # that went through ``_write`` and left the coalescer's list non-empty, if the frame fits
    # the config's backlog bound: ``_NOBODY`` matches no WebSocket until then.
    coalescer: object = _NOBODY
    config: object = _NOBODY
    dirty: list[WebSocket] = []
    counters: Counters | None = None
    fast = 0
    for ws in members:
        if ws._state is not open_:
            continue
        if (ws._pending is None and ws._coalescer is coalescer and ws._backlog is None
                and ws._config is config):
            ws._pending = frame
            dirty.append(ws)
            fast += 1
            continue
        ws._write(frame)
        c = ws._coalescer
        if c is not None and c is not coalescer and len(frame) <= ws._config.max_backlog_bytes:
            # ``_write`` put ``ws`` in this coalescer's list (the pass is open): append to it.
            if counters is not None:
                counters.frames_out += fast
            fast = 0
            coalescer = c
            config = ws._config
            dirty = c._dirty
            counters = ws._counters
    if counters is not None:
        counters.frames_out += fast


_NOBODY: Final = object()

WebSocketHandler = Callable[[WebSocket], Awaitable[object]]
"""``async handler(ws)``: runs for the life of one WebSocket; returning closes it (1000)."""
