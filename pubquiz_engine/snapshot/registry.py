"""The node registry: this node's heartbeat, and where the other live nodes are.

A node that receives a client for a session another live node owns answers with a redirect: it
asks ``RedisStore.owner(code)`` for the owning node and ``NodeRegistry.url_of(node)`` for its
address.

Rules this module keeps:

1. The heartbeat is a key with a TTL, refreshed every ``ttl / 3``: a node that dies drops out of
   ``nodes()`` within one TTL, without anyone cleaning up after it.
2. Redis being down never stops the node: a failed heartbeat is counted and retried with
   back-off (capped at the heartbeat interval), and ``stats()`` shows it.
3. A graceful stop unregisters (bounded by a short deadline, shielded from the cancellation
   that stops the task), so peers stop redirecting to it at once rather than after the TTL.
"""

from __future__ import annotations

import logging
import random

import attrs
import trio

from pubquiz_engine.snapshot._backoff import Backoff, FailureLog
from pubquiz_engine.snapshot.records import CoordinationError, NodeStore

log = logging.getLogger(__name__)

#: How long a graceful stop waits for its unregistration to reach Redis.
UNREGISTER_TIMEOUT = 1.0


@attrs.frozen
class RegistryStats:
    """What ``/health`` shows about the heartbeat."""

    heartbeats: int  # heartbeats Redis confirmed
    failures: int
    last_error: str | None
    redis_up: bool


class NodeRegistry:
    """This node (``node`` at ``url``) in the registry, and lookups of the others."""

    def __init__(
        self,
        store: NodeStore,
        node: str,
        url: str,
        *,
        ttl_ms: int = 10_000,
        backoff_initial: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(ttl_ms, int) or ttl_ms < 30:
            raise ValueError(f"ttl_ms must be an int >= 30, got {ttl_ms!r}")
        self._store = store
        self.node = node
        self.url = url
        self.ttl_ms = ttl_ms
        self._tick = ttl_ms / 3000
        self._backoff = Backoff(min(backoff_initial, self._tick), self._tick,
                                rng=rng or random.Random())
        self._log = FailureLog("node registry", log)
        self._heartbeats = 0

    def stats(self) -> RegistryStats:
        return RegistryStats(
            heartbeats=self._heartbeats,
            failures=self._log.failures,
            last_error=self._log.last_error,
            redis_up=self._log.redis_up,
        )

    async def nodes(self) -> dict[str, str]:
        """Every live node (this one included once registered) -> its URL.
        Raises ``CoordinationUnavailable`` if Redis cannot be asked."""
        return await self._store.nodes()

    async def url_of(self, node: str) -> str | None:
        """The URL of ``node`` if it is live, else ``None`` (redirect there)."""
        return await self._store.url_of(node)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat until cancelled, then unregister.

        Readiness is reported after the first heartbeat attempt, whether or not it reached
        Redis (rule 2: the node serves either way). Error handling: ``CoordinationError`` is
        counted and retried; anything else propagates.
        """
        try:
            started = False
            while True:
                delay = self._tick if await self._beat() else self._backoff.next_delay()
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(delay)
        finally:
            with trio.move_on_after(UNREGISTER_TIMEOUT, shield=True):
                try:
                    await self._store.unregister(self.node)
                except CoordinationError as exc:
                    log.warning("node registry: could not unregister %s: %s", self.node, exc)

    async def _beat(self) -> bool:
        try:
            await self._store.register(self.node, self.url, self.ttl_ms)
        except CoordinationError as exc:
            self._log.failed(exc)
            return False
        self._heartbeats += 1
        self._log.succeeded()
        self._backoff.reset()
        return True


__all__ = ["NodeRegistry", "RegistryStats"]
