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
   ``Client.resume(url, token, last_seq)`` opens a new connection with the same identity.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any, TypeVar, overload

import trio
import trio_websocket

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


class ClientClosed(PubquizError):
    """The connection ended; ``code`` and ``reason`` are the server's close code and reason."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed: {code} {reason or ''}".strip())
        self.code = code
        self.reason = reason


class Client:
    """One connection to an engine. Create with ``open_client``."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, *, keep_events: bool = True
                 ) -> None:
        self.ws = ws
        self._rids = itertools.count(1)
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
        """Send a message as is (no reply awaited)."""
        await self.ws.send_message(codec.encode(message))

    async def send_raw(self, data: bytes | str) -> None:
        """Send arbitrary bytes or text (tests of hostile input)."""
        await self.ws.send_message(data)

    async def request(self, cls: type[m.Message], **fields: Any) -> m.Message:
        """Send ``cls(rid=<new>, **fields)`` and return the reply with that rid.

        Raises ``RemoteError`` for an ``error`` reply and ``ClientClosed`` if the connection
        ends first.
        """
        rid = next(self._rids)
        done = trio.Event()
        slot: list[m.Message] = []
        self._waiting[rid] = (done, slot)
        try:
            await self.send(cls(rid=rid, **fields))
            await done.wait()
        finally:
            self._waiting.pop(rid, None)
        if not slot:
            assert self.closed is not None
            raise self.closed
        reply = slot[0]
        if isinstance(reply, m.Redirect):
            raise Redirected(reply.url)
        if isinstance(reply, m.ErrorReply):
            try:
                code = ErrorCode(reply.code)
            except ValueError:
                code = ErrorCode.INTERNAL
            raise RemoteError(code, reply.message)
        return reply

    # --- conveniences -------------------------------------------------------------------------

    async def join(self, code: str, name: str, team: str | None = None) -> m.Welcome:
        reply = await self.request(m.Join, code=code, name=name, team=team)
        assert isinstance(reply, m.Welcome)
        # Nothing before our join concerns us: resume from here.
        self.last_seq = max(self.last_seq, reply.seq)
        return reply

    async def host(self, code: str, token: str, last_seq: int | None = None) -> m.Welcome:
        reply = await self.request(m.Host, code=code, token=token, last_seq=last_seq)
        assert isinstance(reply, m.Welcome)
        return reply

    async def watch(self, code: str, last_seq: int | None = None) -> m.Welcome:
        reply = await self.request(m.Watch, code=code, last_seq=last_seq)
        assert isinstance(reply, m.Welcome)
        return reply

    async def resume(self, token: str, last_seq: int) -> m.Welcome:
        reply = await self.request(m.Resume, token=token, last_seq=last_seq)
        assert isinstance(reply, m.Welcome)
        return reply

    async def answer(self, q: int, value: Any) -> m.AnswerAck:
        reply = await self.request(m.Answer, q=q, value=value)
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
            reason = exc.reason
            self.closed = ClientClosed(getattr(reason, "code", None),
                                       getattr(reason, "reason", None))
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


@contextlib.asynccontextmanager
async def open_client(url: str, *, keep_events: bool = True, connect_timeout: float = 10.0,
                      origin: str | None = None) -> AsyncIterator[Client]:
    """Connect to ``url`` (``ws://host:port/``) speaking pubquiz.v1; close on exit."""
    headers = [(b"Origin", origin.encode())] if origin else None
    ws: trio_websocket.WebSocketConnection | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await trio_websocket.connect_websocket_url(
                    nursery, url, subprotocols=[SUBPROTOCOL], extra_headers=headers,
                    message_queue_size=1024, max_message_size=4 * 1024 * 1024)
            client = Client(ws, keep_events=keep_events)
            nursery.start_soon(client._reader)
            try:
                yield client
            finally:
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
            raise group.exceptions[0] from None
        raise
    finally:
        # trio-websocket (0.12) leaves a client's TCP stream open when the server closed the
        # WebSocket first (its reader stops at EOF without closing the stream): close it here.
        if ws is not None:
            with trio.CancelScope(shield=True):
                await ws._stream.aclose()
