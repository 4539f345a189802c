"""LeaseKeeper against the real Redis: renewal keeps a lease alive, a stolen or expired lease is
reported once, and an outage is survived (counted, retried, recovered)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis
import trio
from snapkit import Recording, RedisProxy

from pubquiz_engine.snapshot import Lease, LeaseKeeper, LeaseOwner
from pubquiz_engine.snapshot.redis_store import RedisStore

pytestmark = pytest.mark.redis


class Lost:
    """The on_lost callback: remembers codes and wakes a waiter."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.event = trio.Event()

    def __call__(self, code: str) -> None:
        self.codes.append(code)
        self.event.set()


def _expire_now(url: str, key: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.pexpire(key, 0)
    finally:
        client.close()


async def test_renewal_keeps_the_lease_past_its_ttl(store: RedisStore, nursery: trio.Nursery,
                                                    redis_url: str) -> None:
    rec, lost = Recording(store), Lost()
    keeper = LeaseKeeper(rec, "node-a", on_lost=lost, ttl_ms=150)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        lease = await keeper.acquire("KEEP")
        assert lease is not None and keeper.lease_of("KEEP") == lease
        # Eight renewals at ttl/3 span well over two TTLs: only renewal can keep it alive.
        await rec.wait_until(lambda: rec.count("renew_many", ok=True) >= 8)
        assert await store.owner("KEEP") == LeaseOwner("node-a", lease.epoch)
    stats = keeper.stats()
    assert (stats.held, stats.lost, stats.failures, stats.redis_up) == (1, 0, 0, True)
    assert stats.renewals >= 8 and stats.overdue == 0
    assert lost.codes == []


async def test_stolen_lease_fires_on_lost_once(store: RedisStore, nursery: trio.Nursery,
                                               redis_url: str) -> None:
    lost = Lost()
    keeper = LeaseKeeper(store, "node-a", on_lost=lost, ttl_ms=300)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        await keeper.acquire("GONE")
        await keeper.acquire("STAY")
        _expire_now(redis_url, store.key("lease", "GONE"))
        thief = await store.acquire("GONE", "node-b", 5_000)
        assert thief is not None and thief.epoch == 2
        await lost.event.wait()
    assert lost.codes == ["GONE"]
    assert keeper.lease_of("GONE") is None and keeper.lease_of("STAY") is not None
    assert (keeper.stats().lost, keeper.stats().held) == (1, 1)
    assert await store.owner("GONE") == LeaseOwner("node-b", 2)  # untouched by the loser


async def test_expired_lease_is_lost_without_reclaim(store: RedisStore, nursery: trio.Nursery,
                                                     redis_url: str) -> None:
    lost = Lost()
    keeper = LeaseKeeper(store, "node-a", on_lost=lost, ttl_ms=300)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        await keeper.acquire("EXPD")
        _expire_now(redis_url, store.key("lease", "EXPD"))
        await lost.event.wait()
    assert lost.codes == ["EXPD"]
    assert await store.owner("EXPD") is None


async def test_release_deletes_and_does_not_report_a_loss(store: RedisStore,
                                                          nursery: trio.Nursery) -> None:
    lost = Lost()
    keeper = LeaseKeeper(store, "node-a", on_lost=lost, ttl_ms=300)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        await keeper.acquire("BYE1")
        assert await keeper.acquire("BYE1") is None  # already ours: no second lease
        assert await keeper.release("BYE1")
        assert not await keeper.release("BYE1")
        assert await store.owner("BYE1") is None
        # Another node can take it at once, with a higher epoch.
        taker = await store.acquire("BYE1", "node-b", 5_000)
        assert taker is not None and taker.epoch == 2
    assert keeper.stats().held == 0 and lost.codes == []


@pytest.mark.parametrize("reclaim", [False, True])
async def test_outage_longer_than_the_ttl(proxied: RedisStore, proxy: RedisProxy,
                                          store: RedisStore, nursery: trio.Nursery,
                                          reclaim: bool) -> None:
    """Redis unreachable for longer than the TTL: the keeper keeps running, counts failures,
    reports the lease overdue; when Redis is back the lease (expired for real meanwhile) is
    either re-taken (reclaim) or reported lost."""
    rec, lost = Recording(proxied), Lost()
    keeper = LeaseKeeper(rec, "node-a", on_lost=lost, ttl_ms=150, reclaim=reclaim,
                         backoff_initial=0.01)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        lease = await keeper.acquire("OUTG")
        assert lease is not None
        proxy.cut()
        await rec.wait_until(lambda: keeper.stats().overdue == 1)
        stats = keeper.stats()
        assert stats.held == 1 and not stats.redis_up and stats.failures >= 1
        assert stats.last_error is not None and "CoordinationUnavailable" in stats.last_error
        assert lost.codes == []  # an outage is not a loss
        assert await store.owner("OUTG") is None  # the TTL really ran out in Redis

        proxy.restore()
        failures = keeper.stats().failures
        await rec.wait_until(lambda: rec.count("renew_many", ok=True) >= 1)
    stats = keeper.stats()
    assert stats.redis_up and stats.failures == failures
    if reclaim:
        assert lost.codes == [] and stats.held == 1 and stats.overdue == 0
        assert await store.owner("OUTG") == LeaseOwner("node-a", lease.epoch)
    else:
        assert lost.codes == ["OUTG"] and stats.held == 0
        assert await store.owner("OUTG") is None


async def test_keeper_survives_a_short_outage_with_its_lease(
    proxied: RedisStore, proxy: RedisProxy, store: RedisStore, nursery: trio.Nursery
) -> None:
    rec, lost = Recording(proxied), Lost()
    keeper = LeaseKeeper(rec, "node-a", on_lost=lost, ttl_ms=1_500, backoff_initial=0.01)
    with trio.fail_after(10):
        await keeper.acquire("SHRT")
        proxy.cut()
        await nursery.start(keeper.run)
        await rec.wait_until(lambda: rec.count("renew_many", ok=False) >= 3)
        proxy.restore()
        await rec.wait_until(lambda: rec.count("renew_many", ok=True) >= 1)
    stats = keeper.stats()
    assert (stats.held, stats.lost, stats.redis_up, stats.overdue) == (1, 0, True, 0)
    assert stats.failures >= 3 and stats.renewals >= 1
    assert lost.codes == []
    assert await store.owner("SHRT") == LeaseOwner("node-a", 1)


class _GatedRenewals:
    """A store whose renewals wait at a gate: a release can land while one is in flight."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.in_flight = trio.Event()
        self.go = trio.Event()
        self.releases = 0
        self.released = trio.Event()

    async def acquire(self, code: str, node: str, ttl_ms: int, *, at_least: int = 0
                      ) -> Lease | None:
        return await self.inner.acquire(code, node, ttl_ms, at_least=at_least)

    async def renew_many(self, leases: Sequence[Lease], *, reclaim: bool = False) -> list[bool]:
        self.in_flight.set()
        await self.go.wait()
        return await self.inner.renew_many(leases, reclaim=reclaim)

    async def release(self, lease: Lease) -> bool:
        done = await self.inner.release(lease)
        self.releases += 1
        self.released.set()
        self.released = trio.Event()
        return done

    async def owner(self, code: str) -> LeaseOwner | None:
        return await self.inner.owner(code)


async def test_a_release_during_a_renewal_leaves_no_lease_behind(
        store: RedisStore, nursery: trio.Nursery) -> None:
    """The release's delete reaches Redis before an in-flight renewal, which (reclaim) sets
    the lease again: the keeper deletes that stray lease, or peers would wait it out for a
    whole TTL thinking its node still holds the session (issue 17)."""
    gated = _GatedRenewals(store)
    keeper = LeaseKeeper(gated, "node-a", on_lost=Lost(), ttl_ms=300, reclaim=True)
    with trio.fail_after(10):
        await nursery.start(keeper.run)
        assert await keeper.acquire("RACE") is not None
        await gated.in_flight.wait()
        assert await keeper.release("RACE")  # deleted while the renewal waits at the gate
        assert await store.owner("RACE") is None
        released = gated.released
        gated.go.set()  # the renewal reclaims the deleted lease ...
        await released.wait()  # ... and the keeper deletes it again
    assert gated.releases == 2
    assert await store.owner("RACE") is None
