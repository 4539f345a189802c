"""The HTTP side of the port: read one request with h11 (bounded), answer plain HTTP with the
``http_handler``, or check a WebSocket upgrade and hand back a wsproto connection.

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

import collections
import socket
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsprotoConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import ProtocolError as WsprotoProtocolError
from wsproto.utilities import RemoteProtocolError as WsprotoRemoteProtocolError

from pubquiz_engine.server.http import HttpHandler, HttpRequest, HttpResponse
from pubquiz_engine.server.transport.config import RECV_SIZE, Counters, TransportConfig

__all__ = ["Upgrade", "handshake"]


# (wsproto connection, request target, request headers, subprotocol, bytes after the request)
Upgrade = tuple[WsprotoConnection, str, tuple[tuple[str, str], ...], str | None, bytes]


async def handshake(
    sock: socket.socket,
    http_handler: HttpHandler,
    config: TransportConfig,
    counters: Counters,
) -> Upgrade | None:
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
                data = sock.recv(RECV_SIZE)
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
                data = sock.recv(RECV_SIZE)
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
) -> tuple[bytes, Upgrade] | HttpResponse:
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
            if not sock.recv(RECV_SIZE):
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
