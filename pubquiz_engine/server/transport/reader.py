"""The Linux reader: one task reads every ready socket in one pass.

Why (issue 18, measured by a replica): trio registers each wait with EPOLLONESHOT, so a task
per connection costs an ``epoll_ctl`` and a task switch per received frame. Here one private
``select.epoll`` holds every open WebSocket, registered once, level-triggered; the reader
task awaits ``trio.lowlevel.wait_readable`` on the epoll's own fd, then reads each ready
socket once (one ``recv`` of up to ``RECV_SIZE``), parses it (``WebSocket._feed``: the fast
path for whole masked data frames, wsproto for the rest) and wakes the connection's handler,
which takes every message of the pass without another wait. A handler may also give the
connection a synchronous consumer (``WebSocket.set_consumer``): while the handler waits, the
reader offers it the pass's messages first and wakes the handler only for what it leaves (the
engine submits answers this way: no task switch per answer).

Guarantees, by construction:

- **Fairness.** One ``recv`` per socket per pass: a socket that floods gets no more of a
  pass than one that sends one frame.
- **Backpressure.** A socket whose handler has not taken the messages of an earlier read is
  not read again: it is unregistered (paused) until its handler waits for more, so at most one
  read of input waits per connection, as with the per-connection path.
- **Isolation.** An exception while handling one socket closes that connection (1011,
  logged) and the pass goes on with the others. A connection closed during a pass is
  unregistered at once; its event later in the same pass is skipped.

The portable path (a task per connection waiting on its own socket) stays behind the same
``WebSocket`` interface: ``TransportConfig.reader`` chooses (``auto``: this one where
``select.epoll`` exists).
"""

from __future__ import annotations

import contextlib
import logging
import select
from typing import TYPE_CHECKING, Final

import trio

from pubquiz_engine.server.transport.config import Counters

if TYPE_CHECKING:
    from pubquiz_engine.server.transport.websocket import WebSocket

__all__ = ["EpollReader", "epoll_available"]

LOGGER = logging.getLogger("pubquiz_engine.server.transport")

# Most events taken from the epoll per pass; more wait for the next pass.
_MAX_EVENTS: Final = 4096


def epoll_available() -> bool:
    return hasattr(select, "epoll")


class EpollReader:
    """Reads every registered WebSocket from one task (``run``), in passes."""

    __slots__ = ("_connections", "_counters", "_epoll")

    def __init__(self, counters: Counters) -> None:
        self._epoll = select.epoll()
        self._connections: dict[int, WebSocket] = {}
        self._counters = counters  # read_passes, read_sockets, read_pass_sockets_max

    def register(self, ws: WebSocket) -> None:
        fd = ws._sock.fileno()
        self._connections[fd] = ws
        self._epoll.register(fd, select.EPOLLIN)

    def unregister(self, ws: WebSocket) -> None:
        """Forget ``ws`` (it is closing its socket); a no-op if not registered."""
        fd = ws._sock.fileno()
        if fd >= 0 and self._connections.get(fd) is ws:
            del self._connections[fd]
            if not ws._paused and not self._epoll.closed:
                with contextlib.suppress(OSError):  # the socket was closed under us
                    self._epoll.unregister(fd)

    def pause(self, ws: WebSocket) -> None:
        """Stop reading ``ws`` until ``resume`` (its handler is behind)."""
        if not ws._paused and not self._epoll.closed:
            ws._paused = True
            self._epoll.unregister(ws._sock.fileno())

    def resume(self, ws: WebSocket) -> None:
        if ws._paused:
            ws._paused = False
            fd = ws._sock.fileno()
            if self._connections.get(fd) is ws and not self._epoll.closed:
                self._epoll.register(fd, select.EPOLLIN)

    async def run(self) -> None:
        epoll = self._epoll
        connections = self._connections
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                events = epoll.poll(0, _MAX_EVENTS)
                counters = self._counters
                counters.read_passes += 1
                before = counters.read_sockets
                for fd, _mask in events:
                    ws = connections.get(fd)
                    if ws is None:
                        continue  # closed earlier in this pass
                    self._read(ws)
                read = counters.read_sockets - before
                if read > counters.read_pass_sockets_max:
                    counters.read_pass_sockets_max = read
        finally:
            # Cancelled with the server: connections closing after this find it closed.
            epoll.close()

    def _read(self, ws: WebSocket) -> None:
        if ws._messages and ws._open():
            # Its handler has not taken the last read's messages: stop reading it.
            self.pause(ws)
            return
        self._counters.read_sockets += 1
        try:
            ws._read_now()
            ws._consume()
        except Exception:
            LOGGER.exception("reading WebSocket %s failed", ws.remote_address)
            ws._fail_internal()
        ws._wake_receiver()
