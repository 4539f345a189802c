"""Serve the browser clients (player, host console, big screen) and the results download.

The pages are static files in ``static/`` next to this module: plain HTML, CSS and JavaScript
modules, no build step and nothing fetched from elsewhere. They speak pubquiz.v1 to the engine
over a WebSocket on the same port they were loaded from.

Rules this module keeps:

1. The files are read once, when the routes are built (engine start): a handler answers from
   memory and never touches the disk, so a page load costs no thread and no blocking call.
   Exact paths only (the ``Router`` has no patterns): every file gets its own route.
2. Every response says what it is and what it may do: a content type, ``nosniff``, a Content
   Security Policy that allows scripts and connections to this origin only (no inline script,
   no third-party code), ``no-referrer`` (a join code or token in a URL stays here), and an
   ``ETag`` with ``no-cache`` so a phone revalidates instead of running yesterday's script.
3. ``/results`` hands a session's answers and standings to its host only: the host token is
   compared in constant time (``LiveSession.check_host``) and read from the
   ``Authorization: Bearer`` header only. A URL's query ends up in proxy and browser logs, so a
   request with a ``token`` query parameter is refused (400) without the token being looked at.
   A session must still be live (or lingering after it finished): the token lives with it.
4. ``/results`` never hangs and never fails with a 500 for an outage: while the database is
   away or silent (no answer within ``RESULTS_READ_SECONDS``) it answers 503 with
   ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import attrs
import trio

from pubquiz_engine.errors import Rejected, RemoteError, StoreError
from pubquiz_engine.server import credentials
from pubquiz_engine.server.failover import Moved
from pubquiz_engine.server.http import HttpHandler, HttpRequest, HttpResponse, text_response
from pubquiz_engine.server.ports import ResultsSource
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.store.export import results_to_csv, results_to_json

__all__ = [
    "PAGES",
    "STATIC_DIR",
    "StaticFile",
    "load_static",
    "results_handler",
    "static_routes",
    "web_routes",
]

log = logging.getLogger(__name__)

#: Where the page files live (installed with the package: pyproject's package-data ``web/**/*``).
STATIC_DIR = Path(__file__).parent / "static"

#: Page routes and the file each serves; every other file is served under ``/static/``.
PAGES: Mapping[str, str] = {
    "/": "index.html",
    "/play": "play.html",
    "/host": "host.html",
    "/screen": "screen.html",
}

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

#: Quiz media (pictures, sounds) may come from anywhere the quiz author chose; code and
#: connections come from this origin only. ``connect-src 'self'`` covers ws:/wss: to the same
#: host in current browsers (CSP Level 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: https: http:; media-src 'self' data: https: http:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

_COMMON_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)

#: How long a results download may wait for the write-behind queue to commit what it holds.
RESULTS_DRAIN_SECONDS = 5.0
#: How long a results download may wait for the database to read them.
RESULTS_READ_SECONDS = 10.0
#: ``Retry-After`` (seconds) of a results download refused while the database is away.
RESULTS_RETRY_AFTER = "5"


@attrs.frozen
class StaticFile:
    """One file as served: its route, content type, bytes and strong ETag."""

    route: str
    content_type: str
    body: bytes
    etag: str

    def response(self, request: HttpRequest) -> HttpResponse:
        headers: tuple[tuple[str, str], ...] = (
            ("content-type", self.content_type),
            ("cache-control", "no-cache"),
            ("etag", self.etag),
            *_COMMON_HEADERS,
        )
        if self.content_type.startswith("text/html"):
            headers = (*headers, ("content-security-policy", CONTENT_SECURITY_POLICY))
        if request.header("if-none-match") == self.etag:
            return HttpResponse(304, headers)
        return HttpResponse(200, headers, self.body)


def load_static(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Every servable file under ``directory`` by route: pages at ``PAGES``, the rest (and the
    pages too, so relative links work either way) under ``/static/``. Files of an unknown type
    and hidden files are not served."""
    files: dict[str, StaticFile] = {}
    by_name = {name: route for route, name in PAGES.items()}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None or relative.startswith("."):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        routes = [f"/static/{relative}"]
        if relative in by_name:
            routes.append(by_name[relative])
        for route in routes:
            files[route] = StaticFile(route, content_type, body, etag)
    missing = sorted(set(PAGES.values()) - {f.route.removeprefix("/static/") for f in
                                            files.values()})
    if missing:
        raise FileNotFoundError(f"web pages missing from {directory}: {', '.join(missing)}")
    return files


def static_routes(files: Mapping[str, StaticFile]) -> dict[str, Mapping[str, HttpHandler]]:
    """A ``GET`` route per file (``HEAD`` is implied by the router)."""
    routes: dict[str, Mapping[str, HttpHandler]] = {}
    for route, item in files.items():
        async def serve(request: HttpRequest, item: StaticFile = item) -> HttpResponse:
            return item.response(request)

        routes[route] = {"GET": serve}
    return routes


def _query_value(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bearer(request: HttpRequest) -> str | None:
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def node_results_url(public_url: str) -> str:
    """The ``/results`` address of the node whose WebSocket address is ``public_url``:
    ``wss://quiz.example.org/ws/node/8801`` -> ``https://quiz.example.org/ws/node/8801/results``
    (the nginx site routes it to that node's ``/results``), ``ws://10.0.0.5:8765/`` ->
    ``http://10.0.0.5:8765/results``."""
    parts = urlsplit(public_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/results", "", ""))


async def _find_elsewhere(source: ResultsSource, raw_code: str, fmt: str,
                          headers: tuple[tuple[str, str], ...]
                          ) -> LiveSession | HttpResponse | None:
    """The session ``raw_code`` found through the failover coordination: taken over here,
    or a 307 to its node's ``/results``, or a 503 while it moves; None if there is none."""
    code = credentials.normalise_code(raw_code)
    if code is None:
        return None
    try:
        return await source.find_session(code)
    except Moved as moved:
        query = urlencode({"code": code, "format": fmt})
        return HttpResponse(307, (("location", f"{node_results_url(moved.url)}?{query}"),
                                  ("content-type", "text/plain; charset=utf-8"), *headers),
                            b"the session lives on another node\n")
    except RemoteError as exc:
        if not exc.retryable:
            return None
        seconds = max(1, -(-(exc.retry_after_ms or 1000) // 1000))
        return text_response(503, "the session is moving to another node; try again\n",
                             headers=(("retry-after", str(seconds)), *headers))


def results_handler(source: ResultsSource) -> HttpHandler:
    """``GET /results?code=CODE&format=csv|json`` with ``Authorization: Bearer HOSTTOKEN``
    (see rule 3). ``source`` is what it needs of the engine (``ports.ResultsSource``)."""

    async def results(request: HttpRequest) -> HttpResponse:
        query = parse_qs(request.query, keep_blank_values=True)
        code = _query_value(query, "code")
        fmt = _query_value(query, "format") or "csv"
        token = _bearer(request)
        headers = (("cache-control", "no-store"), *_COMMON_HEADERS)
        if "token" in query:
            return text_response(400, "send the host token in the Authorization header "
                                 "(Bearer), never in the URL\n", headers=headers)
        if not code or fmt not in ("csv", "json"):
            return text_response(400, "give code=CODE and format=csv or format=json\n",
                                 headers=headers)
        if token is None:
            return text_response(401, "the host token is required\n",
                                 headers=(("www-authenticate", "Bearer"), *headers))
        session = source.sessions.get(code)
        if session is None and source.asks_directory:
            # nginx hashes /results by code like /ws, but the session may have moved: take it
            # over if its node is gone, else send the browser to its node's own address.
            found = await _find_elsewhere(source, code, fmt, headers)
            if isinstance(found, HttpResponse):
                return found
            session = found
        if session is None:
            return text_response(404, f"no live session {code[:16]}\n", headers=headers)
        try:
            session.check_host(token)
        except Rejected:
            return text_response(403, "wrong host token\n", headers=headers)
        unavailable = text_response(503, "the results store is unavailable; try again\n",
                                    headers=(("retry-after", RESULTS_RETRY_AFTER), *headers))
        # Answers accepted in fast ack mode may still be queued: commit them first (bounded:
        # under steady load the queue may never be empty; the file is then as of the read).
        await source.drain_writes(timeout=RESULTS_DRAIN_SECONDS)
        try:
            # Bounded too: a database that does not answer at all is a 503, not a request
            # that hangs until TCP gives up.
            with trio.fail_after(RESULTS_READ_SECONDS):
                data = await source.session_results(code)
        except trio.TooSlowError:
            log.warning("results for %s: the database did not answer in time", code)
            return unavailable
        except KeyError:
            return text_response(404, f"no results for session {code}\n", headers=headers)
        except StoreError as exc:
            log.warning("results for %s: store unavailable: %s", code, exc)
            return unavailable
        if fmt == "csv":
            body, content_type = results_to_csv(data), "text/csv; charset=utf-8"
        else:
            body, content_type = results_to_json(data), "application/json"
        return HttpResponse(200, (
            ("content-type", content_type),
            ("content-disposition", f'attachment; filename="pubquiz-{code}.{fmt}"'),
            *headers,
        ), body.encode("utf-8"))

    return results


def web_routes(source: ResultsSource, *, directory: Path = STATIC_DIR
               ) -> dict[str, Mapping[str, HttpHandler]]:
    """Every route of the web clients: the pages, their static files and ``/results``.

    The engine's router merges these into its table (``Engine._router``); the web package
    never imports the engine, only the port it needs (``ports.ResultsSource``).
    """
    routes = static_routes(load_static(directory))
    routes["/results"] = {"GET": results_handler(source)}
    return routes
