"""The server's data path: WebSocket over eager-write trio sockets, plain HTTP on the same port.

Why our own transport: ``shared/perf-baselines`` measured that the idiomatic trio-websocket
broadcast (``await ws.send_message()`` per member) delivers ~4x fewer messages per second than
writing eagerly, and that one member who stops reading stalls everyone. So this module drives
stdlib non-blocking sockets with ``trio.lowlevel.wait_readable`` / ``wait_writable`` and keeps
the protocol work in the sans-IO libraries: h11 parses the HTTP request, wsproto checks the
upgrade handshake and handles every frame but the common one (a complete, masked data frame:
unmasked here with websockets' C ``apply_mask``, the fast path of issue 18).

Rules this module keeps:

1. **Sends never block and never await.** ``WebSocket.send()`` tries ``socket.send()`` at once;
   only what the kernel does not take is queued, and a writer task (started on demand, so an
   idle connection costs no task) drains the queue when the socket becomes writable. A
   broadcast therefore costs one ``send()`` per member and no task switch; framed once, it is
   handed to all members with ``send_frame_to_all``, which shares the one bytes object with
   every member's pass until the coalescer's flush sends it.
2. **A slow member only hurts itself.** The queue is bounded by ``max_backlog_bytes``; past it
   the connection is closed with 4101 (``CloseCode.SLOW_CONSUMER``) and its queued frames are
   dropped (except the rest of a frame already partly on the wire, which must be completed
   before the close frame can follow it)). Pongs and pings count against the bound like
   any frame (a peer that pings and never reads is a slow consumer); only the close frame is
   exempt.
3. **Every wait has a deadline.** The handshake must complete within ``handshake_timeout``
   (slowloris): what needs a wait runs under it, while the part that cannot wait (a request
   already read whole, a 101 the send buffer takes, ``handshake_now``) needs none and costs
   no cancel scope; a closing connection is shut within ``close_timeout`` whether or not the peer
   answers; an idle connection is pinged and closed with 4102 (``CloseCode.IDLE_TIMEOUT``) if
   nothing arrives within ``ping_timeout`` (half-open TCP).
4. **Limits are enforced before memory is spent**: header bytes and count (431), message size
   from each frame's header, on the running size of a fragmented message (1009). Text is
   handled as RFC 6455 says (UTF-8 checked, 1007); refusing it is pubquiz.v1's rule, kept by
   ``server/connection.py`` (``text_frame``, 1003).
5. **Third-party errors stop here.** h11/wsproto errors become HTTP rejections or close codes;
   the handler only ever sees ``ConnectionClosed`` (a ``PubquizError``).

Modules, one job each:

- ``config``: ``TransportConfig``, ``TransportStatistics``, the counters, ``ConnectionClosed``.
- ``framing``: server frames built once (``frame_binary``, ``frame_text``).
- ``backlog``: the send side's frame accounting (``SendBacklog``), pure.
- ``websocket``: one connection (``WebSocket``): sends, the close handshake, receiving;
  ``send_frame_to_all``, a broadcast's frame to many connections.
- ``coalescer``: a connection's frames of one scheduler pass in one ``send()``.
- ``reader``: the Linux reader: one task reads every ready socket per pass from a private
  epoll (``TransportConfig.reader``; the portable path is a task per connection).
- ``handshake``: the HTTP request, plain HTTP answers and the upgrade's decisions.
- ``server``: the listener, the connection tasks and the keepalive sweep (``serve``).
"""

from pubquiz_engine.server.transport.config import (
    ABNORMAL_CLOSURE,
    ConnectionClosed,
    TransportConfig,
    TransportStatistics,
)
from pubquiz_engine.server.transport.framing import frame_binary, frame_text
from pubquiz_engine.server.transport.server import ListenerInfo, serve
from pubquiz_engine.server.transport.websocket import (
    WebSocket,
    WebSocketHandler,
    send_frame_to_all,
)

__all__ = [
    "ABNORMAL_CLOSURE",
    "ConnectionClosed",
    "ListenerInfo",
    "TransportConfig",
    "TransportStatistics",
    "WebSocket",
    "WebSocketHandler",
    "frame_binary",
    "frame_text",
    "send_frame_to_all",
    "serve",
]
