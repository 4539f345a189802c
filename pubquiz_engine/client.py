"""The thin Python client of pubquiz.v1 (trio + trio-websocket).

Used by the CLI (``play``, ``host``), the tests and the bench. It is the only module that
imports trio-websocket.

Rules this module keeps:

1. **Request/reply correlation by ``rid``.** ``await client.request(m.Answer, q=3, value=1)``
   fills in a fresh ``rid``, sends, and returns the reply with that rid; an ``error`` reply is
   raised as ``RemoteError`` with its stable code.
2. **Everything else is an event**, delivered in arrival order on ``client.events`` (a trio
   channel). ``last_seq`` tracks the highest session seq seen, for resume.
3. **Resume is one call.** After a ``join`` the client keeps the resume token;
   ``Client.resume(token, last_seq, epoch)`` on a new connection takes the same identity
   (``epoch``: the previous connection's ``Client.epoch``, so that a takeover in between gives a
   full ``state``, SPEC 13.4).
4. **Request ids stay unique per participant across connections.** ``rid`` is also the
   idempotency key of ``answer`` (per participant, across reconnects): a new connection that
   counted from 1 again would have its first answers taken for the previous connection's and
   silently ignored. Each connection counts from a random base in 1..2^30 unless the caller
   passes ``first_rid`` (what it saved as ``next_rid``, with the token).
5. **Retryable errors are retried when asked** (``retry=Backoff()``): the same request, with the
   same rid, after a randomised, doubling delay (or the server's ``retry_after_ms``), a bounded
   number of times; then the error is raised as before.
6. **Session connections carry the join code in the URL** (``?code=CODE``: nginx routes a
   session's clients to one node on it) and follow ``redirect`` replies to the owning node
   (``open_session_client``), a bounded number of hops.
"""

from __future__ import annotations

import contextlib
import math
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import trio
import trio_websocket
from wsproto.utilities import LocalProtocolError

from pubquiz_engine.errors import ErrorCode, PubquizError, RemoteError
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m

SUBPROTOCOL = "pubquiz.v1"

M = TypeVar("M", bound=m.Message)


class Redirected(RemoteError):
    """The session lives on another node: reconnect to ``url`` (and resume there)."""

    def __init__(self, url: str) -> None:
        super().__init__(ErrorCode.MOVED, f"the session is served at {url}")
        self.url = url


class ConnectFailed(PubquizError):
    """No pubquiz.v1 WebSocket could be opened at ``url`` (nothing listening, refused, timed
    out, not a WebSocket endpoint); ``reason`` says which, in a few words."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect to {url}: {reason}")
        self.url = url
        self.reason = reason


class ClientClosed(PubquizError):
    """The connection ended; ``code`` and ``reason`` are the server's close code and reason."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed: {code} {reason or ''}".strip())
        self.code = code
        self.reason = reason


def _closed(exc: trio_websocket.ConnectionClosed) -> ClientClosed:
    """trio-websocket's end of a connection, as this client reports it."""
    reason = exc.reason
    return ClientClosed(getattr(reason, "code", None), getattr(reason, "reason", None))


#: Request ids are ints 0..2^31-1 (SPEC section 5); a random base leaves 2^30 ids above it.
RID_BASE_LIMIT = 2**30
RID_MAX = 2**31 - 1


def random_rid_base() -> int:
    """Where a connection's request ids start when the caller saved none (rule 4)."""
    return 1 + secrets.randbelow(RID_BASE_LIMIT)


@attrs.frozen
class Backoff:
    """Delays between attempts: ``first`` seconds, times ``factor`` each attempt, at most
    ``limit``, each drawn between half and all of that (jitter, so that a whole pub does not
    come back in step); at most ``attempts`` tries in all."""

    first: float = 0.25
    factor: float = 2.0
    limit: float = 10.0
    attempts: int = 6

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause before try number ``attempt + 1`` (``attempt`` counts from 0)."""
        ceiling = min(self.limit, self.first * self.factor ** min(attempt, 64))
        return ceiling * (0.5 + 0.5 * (rng or random).random())

    def after(self, attempt: int, retry_after_ms: int | None,
              rng: random.Random | None = None) -> float:
        """The pause before retrying a refused request: at least the server's
        ``retry_after_ms`` when it gave one (plus a random jitter of up to as much again, SPEC
        section 12, so that the clients it refused together do not all come back at once; the
        jitter stops at ``limit``), else ``delay``."""
        if retry_after_ms is None:
            return self.delay(attempt, rng)
        wait = retry_after_ms / 1000
        return min(max(self.limit, wait), wait * (1 + (rng or random).random()))


class Client:
    """One connection to an engine. Create with ``open_client``."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, *, keep_events: bool = True,
                 first_rid: int | None = None, retry: Backoff | None = None) -> None:
        self.ws = ws
        #: The rid the next request gets; save it with the token (rule 4).
        self.next_rid = first_rid if first_rid is not None else random_rid_base()
        self.retry = retry
        self._waiting: dict[int, tuple[trio.Event, list[m.Message]]] = {}
        send, receive = trio.open_memory_channel[m.Message](math.inf)
        self._event_send = send
        self.events: trio.MemoryReceiveChannel[m.Message] = receive
        self._keep_events = keep_events
        self.last_seq = 0
        self.welcome: m.Welcome | None = None
        self.token: str | None = None
        self.closed: ClientClosed | None = None
        self.closed_event = trio.Event()

    # --- sending ------------------------------------------------------------------------------

    async def send(self, message: m.Message) -> None:
        """Send a message as is (no reply awaited). ``ClientClosed`` if the connection ended."""
        await self.send_raw(codec.encode(message))

    async def send_raw(self, data: bytes | str) -> None:
        """Send arbitrary bytes or text (tests of hostile input). ``ClientClosed`` if the
        connection ended: the server may close it at any moment (a takeover's 4104, a kick),
        and a request sent just after must fail as one whose reply never came does."""
        try:
            await self.ws.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def request(self, cls: type[m.Message], *, rid: int | None = None, **fields: Any
                      ) -> m.Message:
        """Send ``cls(rid=<new>, **fields)`` and return the reply with that rid.

        Raises ``RemoteError`` for an ``error`` reply and ``ClientClosed`` if the connection
        ends first. With ``retry`` set, a retryable error is retried (same rid) after a
        back-off, ``retry.attempts`` tries in all (rule 5). ``rid``: resend a request that
        may have been applied before a reconnect with its own rid (SPEC section 13).
        """
        if rid is None:
            rid = self._new_rid()
        attempt = 0
        while True:
            reply = await self._exchange(cls(rid=rid, **fields))
            if isinstance(reply, m.Redirect):
                raise Redirected(reply.url)
            if not isinstance(reply, m.ErrorReply):
                return reply
            try:
                code = ErrorCode(reply.code)
            except ValueError:
                code = ErrorCode.INTERNAL
            attempt += 1
            if not (reply.retryable and self.retry is not None
                    and attempt < self.retry.attempts):
                raise RemoteError(code, reply.message, retry_after_ms=reply.retry_after_ms)
            await trio.sleep(self.retry.after(attempt - 1, reply.retry_after_ms))

    def _new_rid(self) -> int:
        rid = self.next_rid
        self.next_rid = rid + 1 if rid < RID_MAX else 1
        return rid

    async def _exchange(self, message: m.Message) -> m.Message:
        """Send a request and wait for the reply with its rid (``ClientClosed`` if none)."""
        rid: int = message.rid  # type: ignore[attr-defined]  # every request has one
        done = trio.Event()
        slot: list[m.Message] = []
        self._waiting[rid] = (done, slot)
        try:
            await self.send(message)
            await done.wait()
        finally:
            self._waiting.pop(rid, None)
        if not slot:
            assert self.closed is not None
            raise self.closed
        return slot[0]

    # --- conveniences -------------------------------------------------------------------------

    async def join(self, code: str, name: str, team: str | None = None) -> m.Welcome:
        reply = await self.request(m.Join, code=code, name=name, team=team)
        assert isinstance(reply, m.Welcome)
        # Nothing before our join concerns us: resume from here.
        self.last_seq = max(self.last_seq, reply.seq)
        return reply

    @property
    def epoch(self) -> int | None:
        """The epoch ``last_seq`` counts in (the last ``welcome``'s): pass it with ``last_seq``
        when resuming on a new connection (SPEC 13.4)."""
        return self.welcome.epoch if self.welcome is not None else None

    async def host(self, code: str, token: str, last_seq: int | None = None,
                   epoch: int | None = None) -> m.Welcome:
        reply = await self.request(m.Host, code=code, token=token, last_seq=last_seq,
                                   epoch=epoch)
        assert isinstance(reply, m.Welcome)
        self._replayed_from(reply, last_seq)
        return reply

    async def watch(self, code: str, last_seq: int | None = None,
                    epoch: int | None = None) -> m.Welcome:
        reply = await self.request(m.Watch, code=code, last_seq=last_seq, epoch=epoch)
        assert isinstance(reply, m.Welcome)
        self._replayed_from(reply, last_seq)
        return reply

    async def resume(self, token: str, last_seq: int, epoch: int | None = None) -> m.Welcome:
        """Resume as the token's participant. ``epoch``: the one ``last_seq`` counts in (the
        previous connection's ``epoch``); without it the server sends a full ``state`` after
        any takeover, which is always safe."""
        reply = await self.request(m.Resume, token=token, last_seq=last_seq, epoch=epoch)
        assert isinstance(reply, m.Welcome)
        self._replayed_from(reply, last_seq)
        return reply

    def _replayed_from(self, reply: m.Welcome, last_seq: int | None) -> None:
        """With ``replay: "events"`` the server replays what follows ``last_seq``: we have seen
        up to it (SPEC 13.4), even when nothing was missed and no event comes. Without this a
        second comeback would ask for everything since 0."""
        if reply.replay == "events" and last_seq is not None:
            self.last_seq = max(self.last_seq, last_seq)

    async def answer(self, q: int, value: Any, *, rid: int | None = None) -> m.AnswerAck:
        reply = await self.request(m.Answer, rid=rid, q=q, value=value)
        assert isinstance(reply, m.AnswerAck)
        return reply

    async def create_session(self, key: str, *, quiz_path: str | None = None,
                             quiz: dict[str, Any] | None = None, mode: str = "team",
                             options: dict[str, Any] | None = None) -> m.SessionCreated:
        reply = await self.request(m.CreateSession, key=key, quiz_path=quiz_path, quiz=quiz,
                                   mode=mode, options=options)
        assert isinstance(reply, m.SessionCreated)
        return reply

    @overload
    async def next_event(self, cls: None = None, *, timeout: float = 10.0) -> m.Message: ...

    @overload
    async def next_event(self, cls: type[M], *, timeout: float = 10.0) -> M: ...

    async def next_event(self, cls: type[M] | None = None, *, timeout: float = 10.0
                         ) -> m.Message:
        """The next event (of type ``cls``, skipping others), within ``timeout`` seconds."""
        with trio.fail_after(timeout):
            while True:
                try:
                    event = await self.events.receive()
                except trio.EndOfChannel:
                    assert self.closed is not None
                    raise self.closed from None
                if cls is None or isinstance(event, cls):
                    return event

    async def wait_closed(self, *, timeout: float = 10.0) -> ClientClosed:
        with trio.fail_after(timeout):
            await self.closed_event.wait()
        assert self.closed is not None
        return self.closed

    # --- receiving ----------------------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.ws.get_message()
                if isinstance(data, str):
                    continue  # never sent by a pubquiz.v1 server
                message = codec.decode(data, direction=m.Direction.SERVER_TO_CLIENT)
                self._dispatch(message)
        except trio_websocket.ConnectionClosed as exc:
            self.closed = _closed(exc)
        finally:
            if self.closed is None:
                self.closed = ClientClosed(None, "reader stopped")
            for done, _slot in self._waiting.values():
                done.set()
            self._event_send.close()
            self.closed_event.set()

    def _dispatch(self, message: m.Message) -> None:
        rid = getattr(message, "rid", None)
        # Every reply carries the request's rid (events never do): match it to its caller.
        if rid is not None:
            waiter = self._waiting.get(rid)
            if waiter is not None:
                if isinstance(message, m.Welcome):
                    self.welcome = message
                    if message.replay == "state":
                        # A full state follows: numbering restarts from it (a new epoch may
                        # even have lower numbers than we saw).
                        self.last_seq = message.seq
                    if message.token is not None:
                        self.token = message.token
                waiter[1].append(message)
                waiter[0].set()
                return
        seq = getattr(message, "seq", None)
        if isinstance(seq, int) and seq > self.last_seq:
            self.last_seq = seq
        if self._keep_events:
            self._event_send.send_nowait(message)


def session_url(url: str, code: str) -> str:
    """``url`` with the join code as its ``code`` query parameter (rule 6), replacing one
    already there: ``session_url("ws://q.example/ws", "K7QX")`` is
    ``"ws://q.example/ws?code=K7QX"``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "code"]
    query.append(("code", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


class TooManyRedirects(PubquizError):
    """Redirects went round more than ``max_redirects`` times (nodes disagree on the owner)."""


@contextlib.asynccontextmanager
async def open_session_client(url: str, code: str,
                              identify: Callable[[Client], Awaitable[m.Welcome]], *,
                              max_redirects: int = 3, first_rid: int | None = None,
                              retry: Backoff | None = None, connect_timeout: float = 10.0,
                              ) -> AsyncIterator[Client]:
    """A connection to the node serving session ``code``, identified by ``identify(client)``
    (a ``join``, ``resume``, ``host`` or ``watch``).

    Connects with ``?code=CODE`` in the URL; on a ``redirect`` reply it connects to the given
    URL and identifies again, at most ``max_redirects`` times (``TooManyRedirects``). A
    redirect's target that cannot be reached (its node went away since) raises
    ``ConnectFailed`` like the entry point would: the caller backs off and calls again, from
    ``url`` (SPEC 13.8), rather than bouncing between the entry point and a dead node at
    once. Request ids continue across hops (rule 4). With ``retry``, a retryable refusal
    (``unavailable`` while a gone node's lease runs) is retried on the same connection after
    the server's ``retry_after_ms``."""
    target = session_url(url, code)
    for _hop in range(max_redirects + 1):
        async with open_client(target, first_rid=first_rid, retry=retry,
                               connect_timeout=connect_timeout) as client:
            try:
                await identify(client)
            except Redirected as moved:
                target, first_rid = session_url(moved.url, code), client.next_rid
                continue
            yield client
            return
    raise TooManyRedirects(f"session {code}: more than {max_redirects} redirects, last to "
                           f"{target}")


@contextlib.asynccontextmanager
async def open_client(url: str, *, keep_events: bool = True, connect_timeout: float = 10.0,
                      origin: str | None = None, first_rid: int | None = None,
                      retry: Backoff | None = None) -> AsyncIterator[Client]:
    """Connect to ``url`` (``ws://host:port/``) speaking pubquiz.v1; close on exit.

    ``first_rid``: where request ids start (default: a random base, rule 4); ``retry``: retry
    retryable errors with this back-off (rule 5)."""
    headers = [(b"Origin", origin.encode())] if origin else None
    ws: trio_websocket.WebSocketConnection | None = None
    # Our own stream, closed by us whatever happens: trio-websocket leaves a stream open when
    # the handshake is refused (an HTTP 502 from nginx for a node that went away).
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
    closing = False
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(connect_timeout):
                    parts = urlsplit(url)
                    secure = parts.scheme == "wss"
                    host = parts.hostname or "localhost"
                    port = parts.port or (443 if secure else 80)
                    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                    if secure:
                        stream = await trio.open_ssl_over_tcp_stream(
                            host, port, ssl_context=ssl.create_default_context())
                    else:
                        stream = await trio.open_tcp_stream(host, port)
                    ws = await trio_websocket.wrap_client_stream(
                        nursery, stream, host if port in (80, 443) else f"{host}:{port}",
                        resource, subprotocols=[SUBPROTOCOL], extra_headers=headers,
                        message_queue_size=1024, max_message_size=4 * 1024 * 1024)
            except trio.TooSlowError:
                raise ConnectFailed(url, f"no answer within {connect_timeout:g} s") from None
            except trio_websocket.ConnectionRejected as exc:
                raise ConnectFailed(url, f"refused with HTTP {exc.status_code}") from None
            except (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed):
                raise ConnectFailed(url, "the connection closed before the WebSocket "
                                    "handshake finished") from None
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if isinstance(exc, ConnectionRefusedError) or "refused" in reason.lower() \
                        or "all attempts to connect" in str(exc):
                    reason = "connection refused (nothing is listening there)"
                raise ConnectFailed(url, reason) from None
            client = Client(ws, keep_events=keep_events, first_rid=first_rid, retry=retry)
            nursery.start_soon(client._reader)
            try:
                yield client
            finally:
                closing = True
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await ws.aclose()
                # trio-websocket's reader closes the TCP stream when the server does; give it
                # a moment (an immediate cancel would leak the socket), then cancel.
                nursery.cancel_scope.deadline = min(nursery.cancel_scope.deadline,
                                                    trio.current_time() + 5)
    except BaseExceptionGroup as group:
        # The reader task is an implementation detail: give callers their own exception,
        # not a group around it.
        if len(group.exceptions) == 1:
            only = group.exceptions[0]
            if closing and isinstance(only, LocalProtocolError):
                # A ping that crossed our close (an engine's keepalive): trio-websocket 0.12
                # answers it with a pong wsproto refuses in LOCAL_CLOSING, from its reader
                # task (python-trio/trio-websocket#184). The close we asked for happened.
                return
            if isinstance(only, trio_websocket.ConnectionRejected):
                # trio-websocket may raise a refused handshake (nginx's 502 for a node that
                # went away) from its reader task rather than from connect.
                raise ConnectFailed(url, f"refused with HTTP {only.status_code}") from None
            raise only from None
        raise
    finally:
        # trio-websocket (0.12) leaves a client's TCP stream open when the server closed the
        # WebSocket first (its reader stops at EOF without closing the stream): close it here.
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()
