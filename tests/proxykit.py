"""A loopback TCP proxy that a test can slow down, stall or cut, shared by the fault campaign
(``tests/faults``: the path to PostgreSQL) and the snapshot tests (``tests/snapshot``: the path
to Redis). Only the path breaks, never the shared server behind it.

Rules: it binds 127.0.0.1 only; mode changes are synchronous and take effect before the
caller's next await; a test runs ``run`` in its own nursery and cancels it at the end.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import trio

HOST = "127.0.0.1"


class FaultProxy:
    """pass / delay / stall / cut between a client and ``target``. Start ``run`` in a nursery."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = 0
        self.mode = "pass"  # "pass" | "stall" | "cut"
        self.delay = 0.0  # seconds added before each forwarded chunk (either direction)
        self.accepted = 0
        self.refused = 0
        self._flowing = trio.Event()
        self._flowing.set()
        self._scopes: set[trio.CancelScope] = set()

    @classmethod
    def for_url(cls, url: str) -> FaultProxy:
        parts = urlsplit(url)
        return cls(parts.hostname or HOST, parts.port or 5432)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's (user and path kept)."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = (user + "@" if user else "") + f"{HOST}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    # Mode changes are synchronous: they take effect before the caller's next await.
    def cut(self) -> None:
        """Close every proxied connection now; accept-and-close new ones until ``restore``."""
        self.mode = "cut"
        self._flowing.set()
        self._drop_all()

    def _drop_all(self) -> None:
        """Close every connection the proxy holds now (a mode change decides about new ones)."""
        for scope in list(self._scopes):
            scope.cancel()

    def stall(self) -> None:
        """Forward nothing, close nothing: the peers see silence (no FIN, no RST)."""
        self.mode = "stall"
        self._flowing = trio.Event()

    def slow(self, delay: float) -> None:
        """Forward everything ``delay`` seconds late (per chunk, each direction in order)."""
        self.delay = delay

    def restore(self) -> None:
        self.mode = "pass"
        self.delay = 0.0
        self._flowing.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client:
                    if self.mode == "cut":
                        self.refused += 1
                        return
                    await self._flowing.wait()  # a stalled proxy holds new connections too
                    upstream = await trio.open_tcp_stream(*self._target)
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            finally:
                self._scopes.discard(scope)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream,
                    scope: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(65536):
                if self.delay:
                    await trio.sleep(self.delay)
                await self._flowing.wait()
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side closed: close both
