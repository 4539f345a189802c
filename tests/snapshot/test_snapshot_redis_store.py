"""RedisStore against the real Redis: leases and fencing, snapshots, the registry, failures.

Expiry is forced with ``PEXPIRE key 0`` (Redis removes the key as expired at once) instead of
waiting out a TTL: the scripts only ever see "the key is gone", whichever way it went. The TTLs
themselves are checked with PTTL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import redis
import trio
from snapkit import RedisProxy, closed_port_url

from pubquiz_engine.errors import StaleEpoch
from pubquiz_engine.snapshot import (
    CoordinationError,
    CoordinationUnavailable,
    LeaseOwner,
    SnapshotCorrupt,
    open_redis_store,
)
from pubquiz_engine.snapshot.redis_store import RedisStore

pytestmark = pytest.mark.redis


def _raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


def expire_now(url: str, key: str) -> None:
    """Make ``key`` expire now, as if its TTL ran out."""
    client = _raw(url)
    try:
        client.pexpire(key, 0)
        assert client.exists(key) == 0
    finally:
        client.close()


def pttl(url: str, key: str) -> int:
    client = _raw(url)
    try:
        return int(client.pttl(key))
    finally:
        client.close()


async def test_lease_is_exclusive(store: RedisStore) -> None:
    with trio.fail_after(10):
        lease = await store.acquire("EXCL", "node-a", 5_000)
        assert lease is not None and (lease.node, lease.epoch, lease.ttl_ms) == ("node-a", 1, 5000)
        assert await store.acquire("EXCL", "node-b", 5_000) is None
        assert await store.acquire("EXCL", "node-a", 5_000) is None  # not re-entrant either
        assert await store.owner("EXCL") == LeaseOwner("node-a", 1)
        # A refused attempt does not raise the epoch: the holder's writes stay valid.
        assert await store.current_epoch("EXCL") == 1


async def test_concurrent_acquires_have_exactly_one_winner(store: RedisStore) -> None:
    winners = []

    async def attempt(i: int) -> None:
        lease = await store.acquire("RACE", f"node-{i}", 5_000)
        if lease is not None:
            winners.append(lease)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(attempt, i)
    assert len(winners) == 1
    assert await store.owner("RACE") == LeaseOwner(winners[0].node, 1)


async def test_lease_ttl_is_set_and_renew_extends_it(store: RedisStore, redis_url: str) -> None:
    with trio.fail_after(10):
        lease = await store.acquire("TTL1", "node-a", 60_000)
        assert lease is not None
        key = store.key("lease", "TTL1")
        assert 0 < pttl(redis_url, key) <= 60_000
        _raw(redis_url).pexpire(key, 1_000)
        assert pttl(redis_url, key) <= 1_000
        assert await store.renew(lease)
        assert pttl(redis_url, key) > 50_000
        assert pttl(redis_url, store.key("epoch", "TTL1")) == -1  # the counter never expires


async def test_expiry_then_takeover_with_a_higher_epoch(store: RedisStore, redis_url: str) -> None:
    with trio.fail_after(10):
        old = await store.acquire("TAKE", "node-a", 5_000)
        assert old is not None and old.epoch == 1
        await store.save_snapshot("TAKE", old.epoch, b"state-a", 5, 50)
        expire_now(redis_url, store.key("lease", "TAKE"))
        assert await store.owner("TAKE") is None

        new = await store.acquire("TAKE", "node-b", 5_000)
        assert new is not None and new.epoch == 2
        assert await store.owner("TAKE") == LeaseOwner("node-b", 2)
        # The new owner starts from the old snapshot ...
        snap = await store.load_snapshot("TAKE")
        assert snap is not None and (snap.epoch, snap.seq, snap.watermark) == (1, 5, 50)
        # ... and the old one is fenced everywhere: no renewal, no release, no snapshot.
        assert not await store.renew(old)
        assert not await store.release(old)
        with pytest.raises(StaleEpoch):
            await store.save_snapshot("TAKE", old.epoch, b"late write from a", 6, 60)
        assert await store.owner("TAKE") == LeaseOwner("node-b", 2)
        await store.save_snapshot("TAKE", new.epoch, b"state-b", 6, 60)

        # Released and re-acquired: the epoch still only goes up.
        assert await store.release(new)
        again = await store.acquire("TAKE", "node-a", 5_000)
        assert again is not None and again.epoch == 3


async def test_renew_of_a_stolen_lease_fails_even_with_reclaim(
    store: RedisStore, redis_url: str
) -> None:
    with trio.fail_after(10):
        mine = await store.acquire("STOL", "node-a", 5_000)
        assert mine is not None
        expire_now(redis_url, store.key("lease", "STOL"))
        theirs = await store.acquire("STOL", "node-b", 5_000)
        assert theirs is not None
        assert await store.renew_many([mine, theirs], reclaim=True) == [False, True]
        assert await store.owner("STOL") == LeaseOwner("node-b", 2)


async def test_reclaim_only_an_expired_lease_nobody_took(store: RedisStore, redis_url: str) -> None:
    with trio.fail_after(10):
        lease = await store.acquire("RECL", "node-a", 5_000)
        assert lease is not None
        expire_now(redis_url, store.key("lease", "RECL"))
        assert not await store.renew(lease)  # default: gone means lost
        assert await store.owner("RECL") is None
        assert await store.renew(lease, reclaim=True)
        assert await store.owner("RECL") == LeaseOwner("node-a", 1)
        assert 0 < pttl(redis_url, store.key("lease", "RECL")) <= 5_000


async def test_release_is_compare_and_delete(store: RedisStore, redis_url: str) -> None:
    with trio.fail_after(10):
        first = await store.acquire("REL1", "node-a", 5_000)
        assert first is not None
        expire_now(redis_url, store.key("lease", "REL1"))
        second = await store.acquire("REL1", "node-b", 5_000)
        assert second is not None
        assert not await store.release(first)
        assert await store.owner("REL1") == LeaseOwner("node-b", 2)
        assert await store.release(second)
        assert await store.owner("REL1") is None


async def test_acquire_at_least_a_known_epoch(store: RedisStore) -> None:
    with trio.fail_after(10):
        lease = await store.acquire("ATLE", "node-a", 5_000, at_least=41)
        assert lease is not None and lease.epoch == 41
        assert await store.release(lease)
        lease = await store.acquire("ATLE", "node-a", 5_000, at_least=7)
        assert lease is not None and lease.epoch == 42


async def test_snapshot_round_trip(store: RedisStore) -> None:
    with trio.fail_after(10):
        assert await store.load_snapshot("SNAP") is None
        lease = await store.acquire("SNAP", "node-a", 5_000)
        assert lease is not None
        data = bytes(range(256)) * 40
        before = time.time()
        await store.save_snapshot("SNAP", lease.epoch, data, 1234, 987)
        snap = await store.load_snapshot("SNAP")
        assert snap is not None
        assert (snap.code, snap.epoch, snap.seq, snap.watermark, snap.data) == (
            "SNAP", 1, 1234, 987, data)
        assert before <= snap.saved_at <= time.time()
        await store.save_snapshot("SNAP", lease.epoch, b"newer", 1235, 990)
        snap = await store.load_snapshot("SNAP")
        assert snap is not None and (snap.seq, snap.data) == (1235, b"newer")
        await store.delete_snapshot("SNAP")
        assert await store.load_snapshot("SNAP") is None
        assert await store.current_epoch("SNAP") == 1


async def test_stale_snapshot_write_is_refused_and_changes_nothing(store: RedisStore) -> None:
    with trio.fail_after(10):
        await store.acquire("STAL", "node-a", 5_000, at_least=5)
        await store.save_snapshot("STAL", 5, b"current", 10, 100)
        with pytest.raises(StaleEpoch, match="epoch 4 < current epoch 5"):
            await store.save_snapshot("STAL", 4, b"stale", 99, 999)
        snap = await store.load_snapshot("STAL")
        assert snap is not None and (snap.epoch, snap.seq, snap.data) == (5, 10, b"current")


async def test_snapshot_ttl_and_corrupt_records(redis_url: str, redis_prefix: str) -> None:
    store = open_redis_store(redis_url, prefix=redis_prefix, snapshot_ttl_ms=30_000)
    try:
        with trio.fail_after(10):
            await store.save_snapshot("EXPI", 1, b"x", 1, 1)
            assert 0 < pttl(redis_url, store.key("snap", "EXPI")) <= 30_000
            _raw(redis_url).set(store.key("snap", "EXPI"), b"\x93not a record")
            with pytest.raises(SnapshotCorrupt):
                await store.load_snapshot("EXPI")
            # A record filed under another session's key is refused too.
            await store.save_snapshot("OTHR", 1, b"x", 1, 1)
            client = _raw(redis_url)
            other = client.get(store.key("snap", "OTHR"))
            assert isinstance(other, bytes)
            client.set(store.key("snap", "EXPI"), other)
            with pytest.raises(CoordinationError, match="is for session 'OTHR'"):
                await store.load_snapshot("EXPI")
    finally:
        await store.aclose()


async def test_wrong_key_type_is_a_coordination_error(store: RedisStore, redis_url: str) -> None:
    _raw(redis_url).set(store.key("epoch", "WRNG"), b"not a number")
    with trio.fail_after(10):
        with pytest.raises(CoordinationError) as info:
            await store.acquire("WRNG", "node-a", 5_000)
    assert not isinstance(info.value, CoordinationUnavailable)
    assert isinstance(info.value.__cause__, redis.RedisError)


async def test_node_registry_keys(store: RedisStore, redis_url: str, redis_prefix: str) -> None:
    with trio.fail_after(10):
        assert await store.nodes() == {}
        await store.register("node-a", "ws://127.0.0.1:9001/", 60_000)
        await store.register("node-b", "ws://127.0.0.1:9002/", 60_000)
        assert await store.nodes() == {"node-a": "ws://127.0.0.1:9001/",
                                       "node-b": "ws://127.0.0.1:9002/"}
        assert await store.url_of("node-b") == "ws://127.0.0.1:9002/"
        assert 0 < pttl(redis_url, f"{redis_prefix}node:node-a") <= 60_000
        # node-b stops heartbeating: its key expires and it drops out (and out of the set).
        expire_now(redis_url, f"{redis_prefix}node:node-b")
        assert await store.nodes() == {"node-a": "ws://127.0.0.1:9001/"}
        assert await store.url_of("node-b") is None
        members = _raw(redis_url).smembers(f"{redis_prefix}nodes")
        assert members == {b"node-a"}
        await store.unregister("node-a")
        assert await store.nodes() == {}


async def test_unreachable_redis_raises_the_mapped_error() -> None:
    store = open_redis_store(closed_port_url(), prefix="unreachable:", timeout=0.5,
                             connect_timeout=0.5)
    try:
        with trio.fail_after(10):
            calls: list[Callable[[], Awaitable[object]]] = [
                store.ping,
                lambda: store.acquire("DOWN", "node-a", 5_000),
                lambda: store.owner("DOWN"),
                lambda: store.save_snapshot("DOWN", 1, b"x", 1, 1),
                lambda: store.load_snapshot("DOWN"),
                lambda: store.register("node-a", "ws://x/", 1_000),
                store.nodes,
            ]
            for call in calls:
                with pytest.raises(CoordinationUnavailable) as info:
                    await call()
                assert isinstance(info.value.__cause__, redis.ConnectionError)
    finally:
        await store.aclose()


async def test_slow_redis_times_out_with_the_mapped_error(
    proxied: RedisStore, proxy: RedisProxy
) -> None:
    with trio.fail_after(10):
        assert await proxied.owner("SLOW") is None
        proxy.stall()
        before = trio.current_time()
        with pytest.raises(CoordinationUnavailable) as info:
            await proxied.owner("SLOW")
        # One call plus redis-py's one immediate retry, each bounded by the 0.5 s timeout.
        assert trio.current_time() - before < 2.5
        assert isinstance(info.value.__cause__, redis.TimeoutError | redis.ConnectionError)
        proxy.restore()
        assert await proxied.owner("SLOW") is None


async def test_redis_coming_back_needs_nothing_from_the_caller(
    proxied: RedisStore, proxy: RedisProxy
) -> None:
    with trio.fail_after(10):
        assert await proxied.acquire("BACK", "node-a", 5_000) is not None
        proxy.cut()
        with pytest.raises(CoordinationUnavailable):
            await proxied.owner("BACK")
        proxy.restore()
        assert await proxied.owner("BACK") == LeaseOwner("node-a", 1)
