"""The HTTP side of the port: read one request with h11 (bounded), answer plain HTTP with the
``http_handler``, or check a WebSocket upgrade and hand back what the connection keeps of it.

Handshake decisions (documented because clients depend on them):
- Not an upgrade request: answered by the ``http_handler`` (default: 404 for every path).
- Bad ``Origin`` with an allow-list configured: HTTP 403 before the upgrade.
- No ``pubquiz.v1`` in ``Sec-WebSocket-Protocol``: HTTP 400 before the upgrade, with a plain
  text body saying which subprotocol is required (a close after the upgrade would look like a
  successful connect to naive clients).
- Header block over ``max_header_bytes`` or more than ``max_headers`` headers: HTTP 431.
- Anything wsproto refuses (missing headers, version): its suggested status (400 or 426).
- A ``Sec-WebSocket-Key`` that is not the base64 of 16 bytes (RFC 6455 section 4.2.1): 400.

Two parsers, one behaviour. The common request (a complete GET upgrade in the first read, plain
ASCII, every header the handshake reads present once) is parsed and answered here directly
(``_fast_upgrade``: a byte split, the same header grammar as h11, the 101 written as bytes):
through h11 and wsproto it cost ~40% of the engine's CPU per join. Everything else, accepted
or not (split reads, rejections, plain HTTP, anything unusual), goes through h11 and wsproto
as before; tests/server/test_handshake_paths.py feeds the same requests to both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import socket
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import ACCEPT_GUID
from wsproto.utilities import ProtocolError as WsprotoProtocolError
from wsproto.utilities import RemoteProtocolError as WsprotoRemoteProtocolError

from pubquiz_engine.server.http import HttpHandler, HttpRequest, HttpResponse
from pubquiz_engine.server.transport.config import RECV_SIZE, Counters, TransportConfig

__all__ = ["Started", "Upgrade", "handshake", "handshake_now"]


# (request target, request headers, subprotocol, bytes after the request). No wsproto
# connection: the WebSocket makes one only when a frame needs it (most never do).
Upgrade = tuple[str, tuple[tuple[str, str], ...], str | None, bytes]


@attrs.frozen
class Started:
    """Where ``handshake_now`` stopped because going on needed a wait: the bytes it read
    (``None``: nothing had arrived), and for an accepted upgrade whose 101 did not fit the
    send buffer, the upgrade and the rest of the 101."""

    first: bytes | None = None
    upgrade: Upgrade | None = None
    unsent: bytes = b""


_NOTHING_YET: Final = Started()


def handshake_now(sock: socket.socket, config: TransportConfig) -> Upgrade | Started:
    """As much of the handshake as needs no wait: the upgrade, or where it stopped.

    Usually that is all of it: the listener's ``TCP_DEFER_ACCEPT`` hands a connection over
    with its request, the direct parser takes a plain upgrade, and a 101 fits an empty send
    buffer. Nothing here waits, so the caller needs no deadline for it (a cancel scope costs
    ~11 us per connection); whatever is left goes to ``handshake`` under one. Raises
    ``OSError`` when the peer reset the connection.
    """
    try:
        first = sock.recv(RECV_SIZE)
    except BlockingIOError:
        return _NOTHING_YET
    fast = _fast_upgrade(first, config) if first else None
    if fast is None:
        return Started(first)
    accept_bytes, result = fast
    try:
        sent = sock.send(accept_bytes)
    except BlockingIOError:
        sent = 0
    if sent == len(accept_bytes):
        return result
    return Started(first, result, accept_bytes[sent:])


async def handshake(
    sock: socket.socket,
    http_handler: HttpHandler,
    config: TransportConfig,
    counters: Counters,
    started: Started = _NOTHING_YET,
) -> Upgrade | None:
    """Read one request (after what ``handshake_now`` did: ``started``). Return the upgraded
    connection, or ``None`` once the request was answered over plain HTTP (or rejected, or
    the peer went away)."""
    if started.upgrade is not None:
        await _send_all(sock, started.unsent)
        return started.upgrade
    first = started.first
    if first is None:
        first = await _recv_first(sock)
        fast = _fast_upgrade(first, config) if first else None
        if fast is not None:
            accept_bytes, result = fast
            await _send_all(sock, accept_bytes)
            return result
    # (else ``handshake_now`` read ``first`` and the direct parser declined it already)
    h11_conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_bytes)
    h11_conn.receive_data(first)  # b"" is EOF: h11 then reports ConnectionClosed
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


async def _recv_first(sock: socket.socket) -> bytes:
    """The first bytes of the connection (b"" at EOF). The request is usually there already
    when the connection's task starts: try before waiting (a wait costs an epoll re-arm)."""
    while True:
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


# A header line as h11 parses it (h11/_abnf.py: ``header_field``), and below the request line
# of an upgrade (``request_line``, HTTP/1.1 only), for the direct path.
_HEADER_LINE: Final = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
# Headers h11 validates or refuses (content-length, transfer-encoding): left to it.
_H11_CHECKED: Final = frozenset({b"content-length", b"transfer-encoding"})
# What the direct path reads: once each (a second copy goes to h11).
_READ: Final = frozenset({b"host", b"upgrade", b"connection", b"sec-websocket-key",
                          b"sec-websocket-version", b"sec-websocket-protocol", b"origin"})
# The whole head up to its last line's CRLF: the request line, then header lines.
_REQUEST_HEAD: Final = re.compile(
    rb"GET ([\x21-\x7e]+) HTTP/1\.1\r\n((?:" + _HEADER_LINE.pattern + rb"\r\n)*)")
_HEADER_LINES: Final = re.compile(_HEADER_LINE.pattern + rb"\r\n")


def _fast_upgrade(data: bytes, config: TransportConfig) -> tuple[bytes, Upgrade] | None:
    """The 101 and the connection for a plain, complete, acceptable upgrade request in
    ``data``; ``None`` for anything else (the caller then parses ``data`` with h11).

    Accepts exactly what h11 + wsproto + ``_accept_websocket`` accept, with the same result;
    it only declines more (non-ASCII bytes, duplicated handshake headers, obs-fold, bodies,
    bare LF line ends, over the limits, rejections), which the h11 path then answers.

    One regex checks the whole head (the request line and every header line, h11's grammar)
    and one more splits the header lines; ``_negotiate``'s decisions are taken from the one
    copy each of ``Origin`` and ``Sec-WebSocket-Protocol`` the direct path allows."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    if not data[:end].isascii() or data.count(b"\r\n", 0, end) > config.max_headers:
        return None
    request = _REQUEST_HEAD.fullmatch(data, 0, end + 2)
    if request is None:
        return None
    raw_target = request[1]
    found: dict[bytes, bytes] = {}
    kept: list[tuple[str, str]] = []
    size = len(raw_target)
    common = _COMMON_HEADER_STRINGS.get
    for raw_name, value in _HEADER_LINES.findall(data, request.start(2), end + 2):
        name = raw_name.lower()
        if name in _H11_CHECKED or name in found:
            return None  # h11's rules; a second copy of a header the handshake reads
        if name in _READ:
            found[name] = value
        size += len(name) + len(value) + 4
        if name not in _HANDSHAKE_HEADER_BYTES:
            kept.append((common(name) or name.decode("latin-1"),
                         common(value) or value.decode("latin-1")))
    if size > config.max_header_bytes:
        return None
    host = found.get(b"host")
    key = found.get(b"sec-websocket-key")
    if (
        host is None
        or key is None
        or found.get(b"upgrade", b"").lower() != b"websocket"
        or found.get(b"sec-websocket-version") != b"13"
        or not _has_upgrade_token(found.get(b"connection"))
        or not _valid_key(key)
    ):
        return None
    try:
        host.decode("idna")  # wsproto does, and refuses what fails
    except UnicodeError:
        return None
    origin = found.get(b"origin")
    protocol = found.get(b"sec-websocket-protocol")
    subprotocol = _agree(origin.decode("latin-1") if origin is not None else None,
                         [protocol.decode("latin-1")] if protocol is not None else [], config)
    if isinstance(subprotocol, HttpResponse):
        return None  # the h11 path answers the refusal
    accept = base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" \
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
    if subprotocol is not None:
        response += b"Sec-WebSocket-Protocol: " + subprotocol.encode("ascii") + b"\r\n"
    response += b"\r\n"
    return response, (raw_target.decode("latin-1"), tuple(kept), subprotocol, data[end + 4:])


def _has_upgrade_token(connection: bytes | None) -> bool:
    """Whether a ``Connection`` value lists ``upgrade`` (wsproto's test, on ASCII bytes)."""
    if connection is None:
        return False
    return any(token.strip().lower() == b"upgrade" for token in connection.split(b","))


def _valid_key(key: bytes) -> bool:
    """RFC 6455 section 4.2.1: the key is the base64 of 16 bytes."""
    if len(key) != 24:
        return False
    try:
        return len(binascii.a2b_base64(key, strict_mode=True)) == 16
    except binascii.Error:
        return False


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
_HANDSHAKE_HEADER_BYTES: Final = frozenset(h.encode("latin-1") for h in _HANDSHAKE_HEADERS)


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
    subprotocol = _negotiate(headers, config)
    if isinstance(subprotocol, HttpResponse):
        return subprotocol
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
    except (UnicodeError, h11.LocalProtocolError) as exc:
        # wsproto lets these out: its IDNA decode of Host and ASCII decode of the comma
        # lists, and h11 refusing the HTTP/1.1 request wsproto rebuilds from an HTTP/1.0 one
        # without Host. Uncaught, they ended the whole server (the connection task's nursery).
        return _error(400, f"bad websocket handshake: {exc}")
    # wsproto's accept token is over all the key headers joined: two keys are not 16 bytes.
    if not _valid_key(b", ".join(v for n, v in request.headers if n == b"sec-websocket-key")):
        return _error(400, "bad websocket handshake: Sec-WebSocket-Key is not base64 of 16 bytes")
    # Bytes the client sent after its request: frames pipelined behind the handshake.
    trailing, _closed = h11_conn.trailing_data
    target = request.target.decode("latin-1")
    kept = tuple(h for h in headers if h[0] not in _HANDSHAKE_HEADERS)
    return response, (target, kept, subprotocol, trailing)


def _negotiate(
    headers: tuple[tuple[str, str], ...], config: TransportConfig
) -> str | HttpResponse | None:
    """``_agree`` on a request's headers (the first ``Origin``, every
    ``Sec-WebSocket-Protocol``)."""
    origin = next((value for name, value in headers if name == "origin"), None)
    return _agree(origin, [value for name, value in headers if name == "sec-websocket-protocol"],
                  config)


def _agree(origin: str | None, protocols: list[str], config: TransportConfig
           ) -> str | HttpResponse | None:
    """The Origin allow-list and the subprotocol: the subprotocol agreed (``None``: none), or
    the rejection. ``protocols``: the ``Sec-WebSocket-Protocol`` values, comma lists."""
    if config.allowed_origins and origin not in config.allowed_origins:
        return _error(403, f"origin not allowed: {origin}")
    offered = [p.strip() for v in protocols for p in v.split(",")]
    subprotocol: str | None = config.subprotocol if config.subprotocol in offered else None
    if subprotocol is None and config.require_subprotocol:
        return _error(
            400, f"subprotocol required: offer Sec-WebSocket-Protocol: {config.subprotocol}"
        )
    return subprotocol


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
