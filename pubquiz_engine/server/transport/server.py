"""The listener: accept, one task per connection (handshake, then the handler), the
keepalive sweep over every connection, and the counters the metrics read."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from typing import Final

import attrs
import trio

from pubquiz_engine.errors import CloseCode
from pubquiz_engine.server.http import HttpHandler, not_found
from pubquiz_engine.server.transport.coalescer import Coalescer
from pubquiz_engine.server.transport.config import (
    ConnectionClosed,
    Counters,
    TransportConfig,
    TransportStatistics,
)
from pubquiz_engine.server.transport.framing import PING_FRAME
from pubquiz_engine.server.transport.handshake import Started, Upgrade, handshake, handshake_now
from pubquiz_engine.server.transport.reader import EpollReader, epoll_available
from pubquiz_engine.server.transport.websocket import WebSocket, WebSocketHandler, _State

__all__ = ["ListenerInfo", "serve"]

LOGGER = logging.getLogger("pubquiz_engine.server.transport")

# accept(2) errors that mean "the system is overloaded", not "the listener is broken"
# (the same set and back-off as trio.serve_listeners).
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_BACKOFF: Final = 0.1
# TCP_DEFER_ACCEPT's wait for a connection's first bytes (Linux rounds it to SYN-ACK
# retransmissions: 1 s is one).
_DEFER_SECONDS: Final = 1
# Connections accepted per wakeup of the accept loop; then the tasks already runnable go
# first. Accepting a whole burst at once (hundreds in a join storm) made one long scheduler
# batch after which every new connection's handshake, and every join already under way,
# waited for the next: the engine and its clients took turns instead of overlapping.
# Measured (`connections --n 19000`, three interleaved pairs): 16 per wakeup joined
# 1,735 / 1,865 / 2,059/s against 1,506 / 1,534 / 1,588, join p50 66-82 against 139-153 ms.
_ACCEPT_PER_WAKEUP: Final = 16
# Task names given as one shared str: trio otherwise formats a new one for every task.
_CONNECTION_TASK: Final = "pubquiz_engine.server.transport.connection"


@attrs.frozen(eq=False)
class ListenerInfo:
    """What ``serve()`` reports through ``task_status.started()``: where it listens, and its
    counters (``statistics()``; the metrics module reads them)."""

    host: str
    port: int
    _counters: Counters = attrs.field(repr=False, alias="counters")
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
    counters = Counters()
    connections: set[WebSocket] = set()
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(config.listen_backlog)
        if config.defer_accept and hasattr(socket, "TCP_DEFER_ACCEPT"):
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, _DEFER_SECONDS)
        listener.setblocking(False)
        bound_host, bound_port = listener.getsockname()[:2]
        coalescer = Coalescer(counters) if config.coalesce_writes else None
        reader = make_reader(config, counters)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keepalive, connections, config, counters)
            if coalescer is not None:
                nursery.start_soon(coalescer.run)
            if reader is not None:
                nursery.start_soon(reader.run)
            task_status.started(ListenerInfo(bound_host, bound_port, counters, connections))
            while True:
                await trio.lowlevel.wait_readable(listener)
                # At most _ACCEPT_PER_WAKEUP of what is queued; the listener is still
                # readable if more wait, and they are taken at the next wakeup.
                for _ in range(_ACCEPT_PER_WAKEUP):
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
                        reader,
                        nursery,
                        name=_CONNECTION_TASK,
                    )
    finally:
        trio.lowlevel.notify_closing(listener)
        listener.close()


def make_reader(config: TransportConfig, counters: Counters) -> EpollReader | None:
    """The reader ``config.reader`` asks for (``None``: the portable, per-connection path)."""
    if config.reader == "epoll" or (config.reader == "auto" and epoll_available()):
        return EpollReader(counters)
    return None


async def _keepalive(
    connections: set[WebSocket], config: TransportConfig, counters: Counters
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
                ws._write_control(PING_FRAME)


async def _serve_connection(
    sock: socket.socket,
    remote_address: tuple[str, int],
    handler: WebSocketHandler,
    http_handler: HttpHandler,
    config: TransportConfig,
    counters: Counters,
    connections: set[WebSocket],
    coalescer: Coalescer | None,
    reader: EpollReader | None,
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
        # OSError: the peer reset the connection mid-handshake; there is nothing to answer.
        try:
            now = handshake_now(sock, config)
        except OSError:
            return
        if isinstance(now, Started):
            # The rest needs waits: under the handshake's deadline (rule 3). The part before
            # took no time: it cannot wait.
            upgrade: Upgrade | None = None
            with trio.move_on_after(config.handshake_timeout), contextlib.suppress(OSError):
                upgrade = await handshake(sock, http_handler, config, counters, now)
            if upgrade is None:
                return
        else:
            upgrade = now
        path, headers, subprotocol, trailing = upgrade
        del now, upgrade  # this frame lives as long as the connection: keep no tuple alive
        ws = WebSocket(
            sock,
            config=config,
            counters=counters,
            nursery=writers,
            coalescer=coalescer,
            reader=reader,
            remote_address=remote_address,
            request_path=path,
            request_headers=headers,
            subprotocol=subprotocol,
        )
        connections.add(ws)
        counters.connections_open += 1
        counters.connections_total += 1
        if reader is not None:
            reader.register(ws)  # before anything can close it: _abort unregisters
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


