"""Test tools for the snapshot package (imported by name: pytest puts this directory on sys.path).

- ``RedisProxy``: a loopback TCP proxy in front of the real Redis that a test can ``cut`` (close
  every connection and every new one: Redis "down"), ``stall`` (accept, never answer: Redis
  "slow", so the client's socket timeout fires) and ``restore``. The client under test keeps its
  URL throughout, as it would in production when Redis goes away and comes back.
- ``Recording``: wraps a real store, forwards every call, and lets a test wait (with a timeout,
  without sleeping) until the calls it recorded satisfy a condition.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio
from proxykit import HOST, FaultProxy

from pubquiz_engine.snapshot import Lease, LeaseOwner, Snapshot
from pubquiz_engine.snapshot.redis_store import RedisStore


def closed_port_url() -> str:
    """A redis:// URL on a loopback port nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class RedisProxy(FaultProxy):
    """``FaultProxy`` in front of Redis, with Redis-shaped stalls: ``stall`` also drops the
    connections already open (the client's next call waits on a new, silent one until its
    socket timeout) and ``restore`` drops the stalled ones, so no command held during the stall
    reaches Redis late. ``url`` is valid once ``run`` has started."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        super().__init__(parts.hostname or HOST, parts.port or 6379)
        self._target_url = target_url

    @property
    def url(self) -> str:
        return self.url_for(self._target_url)

    def stall(self) -> None:
        super().stall()
        self._drop_all()

    def restore(self) -> None:
        if self.mode != "pass":
            self._drop_all()  # the stalled connections: the client gave up on them anyway
        super().restore()


@attrs.define
class Call:
    name: str
    ok: bool
    error: BaseException | None = None
    result: Any = None


class Recording:
    """A store that forwards to ``inner`` and records each call's outcome."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.calls: list[Call] = []
        self._changed = trio.Event()

    def count(self, name: str, *, ok: bool | None = None) -> int:
        return sum(1 for c in self.calls if c.name == name and (ok is None or c.ok == ok))

    async def wait_until(self, condition: Callable[[], bool], *, max_calls: int = 10_000) -> None:
        """Wait until ``condition()`` holds, re-checking after each recorded call (bounded)."""
        for _ in range(max_calls):
            if condition():
                return
            await self._changed.wait()
        raise AssertionError(f"condition still false after {max_calls} calls")

    async def _record(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = await fn()
        except BaseException as exc:
            self.calls.append(Call(name, False, exc))
            raise
        else:
            self.calls.append(Call(name, True, None, result))
            return result
        finally:
            self._changed.set()
            self._changed = trio.Event()

    # --- LeaseStore
    async def acquire(self, code: str, node: str, ttl_ms: int, *,
                      at_least: int = 0) -> Lease | None:
        result: Lease | None = await self._record(
            "acquire", lambda: self.inner.acquire(code, node, ttl_ms, at_least=at_least))
        return result

    async def renew_many(self, leases: Sequence[Lease], *, reclaim: bool = False) -> list[bool]:
        result: list[bool] = await self._record(
            "renew_many", lambda: self.inner.renew_many(leases, reclaim=reclaim))
        return result

    async def release(self, lease: Lease) -> bool:
        result: bool = await self._record("release", lambda: self.inner.release(lease))
        return result

    async def owner(self, code: str) -> LeaseOwner | None:
        result: LeaseOwner | None = await self._record("owner", lambda: self.inner.owner(code))
        return result

    # --- SnapshotStore
    async def save_snapshot(self, code: str, epoch: int, data: bytes, seq: int,
                            watermark: int) -> None:
        await self._record(
            "save_snapshot",
            lambda: self.inner.save_snapshot(code, epoch, data, seq, watermark))

    async def load_snapshot(self, code: str) -> Snapshot | None:
        result: Snapshot | None = await self._record(
            "load_snapshot", lambda: self.inner.load_snapshot(code))
        return result

    # --- NodeStore
    async def register(self, node: str, url: str, ttl_ms: int) -> None:
        await self._record("register", lambda: self.inner.register(node, url, ttl_ms))

    async def unregister(self, node: str) -> None:
        await self._record("unregister", lambda: self.inner.unregister(node))

    async def nodes(self) -> dict[str, str]:
        result: dict[str, str] = await self._record("nodes", self.inner.nodes)
        return result

    async def url_of(self, node: str) -> str | None:
        result: str | None = await self._record("url_of", lambda: self.inner.url_of(node))
        return result
