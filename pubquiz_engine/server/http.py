"""Plain HTTP on the WebSocket port: the request/response types and a small router.

The transport (``transport/handshake.py``) parses every request on the listening port with
h11. An upgrade request becomes a WebSocket; any other request is turned into an
``HttpRequest`` and handed to the server's ``HttpHandler``, whose ``HttpResponse`` the
transport writes back before closing the connection (no keep-alive: health checks and scrapes
open a connection per request).

Rules this module keeps:

1. Pure: no trio, no socket, no h11. Requests and responses are frozen attrs values, so handlers
   are tested without a socket and the transport is the only place that knows the wire format.
2. Header names are lower-case ``str`` and values ``str`` (latin-1, as HTTP/1.1 defines them);
   repeated headers stay repeated, in order.
3. ``Router`` is an ``HttpHandler`` built from a table, not an if-chain: an unknown path is 404,
   a known path with the wrong method is 405 with an ``Allow`` header, and ``HEAD`` is answered
   wherever ``GET`` is (same headers, no body).
4. A handler's bug is one request's problem: ``Router`` answers an exception escaping a handler
   with 500 and logs its traceback, so it never reaches the server's nursery (which would stop
   the engine). Cancellation and other ``BaseException``s pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs

__all__ = [
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "Router",
    "not_found",
    "text_response",
]


log = logging.getLogger(__name__)


def _lower_headers(
    headers: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    return tuple((name.lower(), value) for name, value in headers)


@attrs.frozen
class HttpRequest:
    """One plain (non-upgrade) HTTP request as the transport received it.

    ``path`` is the target before ``?`` (not percent-decoded: routes compare raw paths);
    ``query`` the raw text after it (``""`` if none). ``body`` is empty for requests without
    one; the transport caps it at ``TransportConfig.max_http_body``.
    """

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_lower_headers)
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return default


def _check_status(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 200 <= value <= 599:
        raise ValueError(f"HTTP status must be 200..599 (1xx is the transport's), got {value}")


@attrs.frozen
class HttpResponse:
    """What a handler answers. The transport adds ``content-length`` and ``connection: close``."""

    status: int = attrs.field(validator=_check_status)
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_lower_headers)
    body: bytes = b""


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""``async (request) -> response``: async so that handlers may read files or ask the store."""


def text_response(
    status: int, text: str, *, headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    """A ``text/plain; charset=utf-8`` response: the shape of every error the transport sends."""
    return HttpResponse(
        status,
        (("content-type", "text/plain; charset=utf-8"), *headers),
        text.encode("utf-8"),
    )


async def not_found(request: HttpRequest) -> HttpResponse:
    """The handler used when the server has no HTTP side: every path is 404."""
    return text_response(404, f"not found: {request.path}\n")


@attrs.frozen
class Router:
    """An ``HttpHandler`` dispatching on ``(path, method)`` from a table.

    ``routes`` maps an exact path to ``{method: handler}``. A path not in the table is 404; a
    method not in its entry is 405 with ``Allow`` listing the methods that are (``HEAD`` is
    implied by ``GET`` and answered by it with the body dropped).
    """

    routes: Mapping[str, Mapping[str, HttpHandler]]

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return await self._route(request)
        except Exception:
            # The path only, never the query (it may carry a join code or a token).
            log.exception("HTTP handler for %s %s failed", request.method, request.path[:200])
            return text_response(500, "internal server error\n")

    async def _route(self, request: HttpRequest) -> HttpResponse:
        methods = self.routes.get(request.path)
        if methods is None:
            return await not_found(request)
        handler = methods.get(request.method)
        if handler is None and request.method == "HEAD" and "GET" in methods:
            response = await methods["GET"](request)
            return attrs.evolve(response, body=b"")
        if handler is None:
            allowed = sorted({*methods, "HEAD"} if "GET" in methods else set(methods))
            return text_response(
                405,
                f"method {request.method} not allowed on {request.path}\n",
                headers=(("allow", ", ".join(allowed)),),
            )
        return await handler(request)
