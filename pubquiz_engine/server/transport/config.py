"""The transport's configuration, counters and the one exception handlers see."""

from __future__ import annotations

from typing import Any, Final

import attrs

from pubquiz_engine.errors import PubquizError

__all__ = [
    "ABNORMAL_CLOSURE",
    "RECV_SIZE",
    "ConnectionClosed",
    "Counters",
    "TransportConfig",
    "TransportStatistics",
]

# Bytes read per recv(): large enough to take a burst of answers in one syscall, small enough
# that a reader never holds more than this of an unfinished frame before we check its size.
RECV_SIZE: Final = 65536
# Close code 1006 is never sent on the wire; we report it when the TCP connection was lost
# without a close frame (RFC 6455 section 7.1.5).
ABNORMAL_CLOSURE: Final = 1006

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
    #: Linux ``TCP_DEFER_ACCEPT`` on the listener: the kernel hands a connection over when its
    #: first bytes arrive (a WebSocket client speaks first), so a connection's task finds the
    #: request already there and answers it without waiting on the socket (a wait costs an
    #: epoll registration per handshake). A connection that sends nothing is handed over
    #: after about a second anyway; ``handshake_timeout`` then runs as usual.
    defer_accept: bool = True
    #: ``SO_SNDBUF`` for accepted sockets (None: the kernel's autotuning, up to
    #: ``net.ipv4.tcp_wmem`` max, 4 MiB on Linux). The kernel buffer is part of what a member
    #: that stops reading costs, on top of ``max_backlog_bytes``: set it to bound that memory.
    send_buffer_bytes: int | None = None
    #: Gather each connection's frames of one scheduler pass (a broadcast and the acks the
    #: member's reader produced) into one ``send()``, made by one task at the end of the pass.
    #: Measured (bench/transport/run.py, N=1000): 1.4x the delivered msgs/s of eager sends.
    coalesce_writes: bool = True
    #: How sockets are read: ``epoll`` (Linux: one task reads every ready socket in one pass,
    #: ``reader.py``), ``portable`` (a task per connection waits on its own socket), or
    #: ``auto``: ``epoll`` where ``select.epoll`` exists, else ``portable``.
    reader: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "epoll", "portable"))
    )


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
    #: The Linux reader's passes (``reader="epoll"``; 0 on the portable path): how many, the
    #: sockets read in total, and the most read in one pass.
    read_passes: int = 0
    read_sockets: int = 0
    read_pass_sockets_max: int = 0
    #: Messages a connection's consumer took in the reader's pass (``WebSocket.set_consumer``:
    #: the engine's answers), i.e. without waking the connection's task.
    messages_consumed: int = 0
    #: The trio thread's CPU time over the same spans as ``write_pass_seconds_total`` (first
    #: write to the end of the flush), summed: what the passes cost this process, without the
    #: time other processes held its core (which the wall time includes).
    write_pass_cpu_seconds_total: float = 0.0


class Counters:
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
        "messages_consumed",
        "read_pass_sockets_max",
        "read_passes",
        "read_sockets",
        "write_pass_cpu_seconds_total",
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
        self.write_pass_cpu_seconds_total = 0.0
        self.read_passes = 0
        self.read_sockets = 0
        self.read_pass_sockets_max = 0
        self.messages_consumed = 0

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

