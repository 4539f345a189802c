"""The lease keeper: renews every session lease this node holds, and says when one is lost.

Rules this module keeps:

1. One task renews every held lease together, once per ``ttl / 3`` (one pipelined round trip for
   all of them), so a lease is renewed at least twice before it could expire, and a node with
   2,000 sessions makes one Redis call per tick, not 2,000.
2. A renewal that finds the lease gone or taken by a higher epoch stops holding it and calls
   ``on_lost(code)`` (synchronously, on the keeper's task): the server stops serving that session
   and tells its clients to reconnect (``CloseCode.FENCED``). ``on_lost`` must not block; an
   exception from it is a bug and propagates.
3. Redis being down is not a loss. A failed renewal is counted and retried with back-off (capped
   at the tick), the leases stay held, and ``stats()`` shows ``redis_up=False`` and how many
   leases are ``overdue`` (not confirmed within their TTL). Whether the session may still write
   is decided by fencing, not by our guess: when Redis answers again, a lease that was taken
   over is reported lost, and the database and the snapshot store refuse the old epoch.
4. ``reclaim=True`` re-takes a lease that expired during an outage when nobody acquired it since
   (see ``RedisStore.renew``). Off by default: with it off, an expired lease is reported lost.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import attrs
import trio

from pubquiz_engine.snapshot._backoff import Backoff, FailureLog
from pubquiz_engine.snapshot.records import CoordinationError, Lease, LeaseStore

log = logging.getLogger(__name__)


@attrs.define
class _Held:
    lease: Lease
    valid_until: float  # trio time: last confirmed start + ttl; after it we cannot vouch for it


@attrs.frozen
class LeaseKeeperStats:
    """What ``/health`` shows about leases."""

    held: int  # leases this node holds
    overdue: int  # held leases not confirmed within their TTL (Redis unreachable)
    renewals: int  # lease renewals confirmed by Redis
    lost: int  # leases found gone or taken over (on_lost called)
    failures: int  # renewal round trips that failed
    last_error: str | None
    redis_up: bool  # whether the last renewal round trip reached Redis


class LeaseKeeper:
    """Holds this node's session leases (``ttl_ms`` each) and keeps them alive."""

    def __init__(
        self,
        store: LeaseStore,
        node: str,
        *,
        on_lost: Callable[[str], None],
        ttl_ms: int = 10_000,
        reclaim: bool = False,
        backoff_initial: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(ttl_ms, int) or ttl_ms < 30:
            raise ValueError(f"ttl_ms must be an int >= 30, got {ttl_ms!r}")
        self._store = store
        self.node = node
        self.ttl_ms = ttl_ms
        self._on_lost = on_lost
        self._reclaim = reclaim
        self._tick = ttl_ms / 3000  # seconds between renewals
        self._backoff = Backoff(min(backoff_initial, self._tick), self._tick,
                                rng=rng or random.Random())
        self._log = FailureLog("lease keeper", log)
        self._held: dict[str, _Held] = {}
        self._renewals = 0
        self._lost = 0

    # ------------------------------------------------------------------ sync API
    def hold(self, lease: Lease) -> None:
        """Start renewing ``lease`` (one acquired elsewhere, e.g. by ``RedisStore.acquire``).
        Its ``ttl_ms`` should be at least the keeper's: renewals come every keeper ``ttl / 3``."""
        self._held[lease.code] = _Held(lease, trio.current_time() + lease.ttl_ms / 1000)

    def drop(self, code: str) -> Lease | None:
        """Stop renewing the session's lease without releasing it (it expires on its own)."""
        held = self._held.pop(code, None)
        return None if held is None else held.lease

    def lease_of(self, code: str) -> Lease | None:
        """The lease held for ``code``, or ``None``."""
        held = self._held.get(code)
        return None if held is None else held.lease

    def stats(self) -> LeaseKeeperStats:
        now = trio.current_time()
        return LeaseKeeperStats(
            held=len(self._held),
            overdue=sum(1 for h in self._held.values() if h.valid_until < now),
            renewals=self._renewals,
            lost=self._lost,
            failures=self._log.failures,
            last_error=self._log.last_error,
            redis_up=self._log.redis_up,
        )

    # ------------------------------------------------------------------ async API
    async def acquire(self, code: str, *, at_least: int = 0) -> Lease | None:
        """Acquire the session's lease for this node and hold it; ``None`` if another holds it.

        Raises ``CoordinationUnavailable`` if Redis cannot be asked: the caller decides (a
        node must not serve a session it could not lease).
        """
        lease = await self._store.acquire(code, self.node, self.ttl_ms, at_least=at_least)
        if lease is not None:
            self.hold(lease)
        return lease

    async def release(self, code: str) -> bool:
        """Stop holding the session's lease and delete it if still ours (a session that ended or
        a graceful stop). Never raises for Redis trouble: the lease then expires by itself."""
        lease = self.drop(code)
        if lease is None:
            return False
        try:
            return await self._store.release(lease)
        except CoordinationError as exc:
            log.warning("lease keeper: could not release %s (it will expire): %s", code, exc)
            return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew held leases every ``ttl / 3`` until cancelled; readiness is immediate.

        Error handling: ``CoordinationError`` is counted and retried with back-off; the leases
        stay held. Anything else propagates.
        """
        task_status.started()
        next_at = trio.current_time() + self._tick
        while True:
            await trio.sleep_until(next_at)
            started = trio.current_time()
            if await self._renew_all(started):
                self._backoff.reset()
                # Schedule from the start of the round trip, so a slow Redis does not make
                # the renewals drift later and later.
                next_at = started + self._tick
            else:
                next_at = trio.current_time() + self._backoff.next_delay()

    async def _renew_all(self, started: float) -> bool:
        held = [h.lease for h in self._held.values()]
        if not held:
            return True
        try:
            results = await self._store.renew_many(held, reclaim=self._reclaim)
        except CoordinationError as exc:
            self._log.failed(exc)
            return False
        self._log.succeeded()
        stray: list[Lease] = []
        for lease, ok in zip(held, results, strict=True):
            current = self._held.get(lease.code)
            if current is None or current.lease != lease:
                # Released or replaced while the round trip was in flight. If the release's
                # delete reached Redis first, this renewal (reclaim) set the lease again: a
                # lease nobody holds, that peers would wait out for a whole TTL. Delete it.
                if ok and current is None:
                    stray.append(lease)
                continue
            if ok:
                self._renewals += 1
                current.valid_until = started + lease.ttl_ms / 1000
                continue
            del self._held[lease.code]
            self._lost += 1
            log.warning("lease keeper: lost the lease of %s (epoch %d)", lease.code, lease.epoch)
            self._on_lost(lease.code)
        for lease in stray:
            try:
                await self._store.release(lease)  # compare-and-delete: only if still ours
            except CoordinationError as exc:
                log.warning("lease keeper: could not release %s (it will expire): %s",
                            lease.code, exc)
        return True


__all__ = ["LeaseKeeper", "LeaseKeeperStats"]
