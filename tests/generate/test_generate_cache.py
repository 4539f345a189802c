"""The generation cache in the store (both backends) and in Redis."""

from __future__ import annotations

import secrets

import pytest
import trio

from pubquiz_engine.generate import CacheUnavailable
from pubquiz_engine.generate.cache import RedisCache, StoreCache, open_cache
from pubquiz_engine.store import open_store


def key() -> str:
    # The PostgreSQL database is shared by the whole test run: keys of this test's own.
    return f"ai-questions:test-{secrets.token_hex(6)}"


async def test_store_cache_round_trip_replace_and_expiry(store_url: str) -> None:
    with trio.fail_after(20):
        store = await open_store(store_url)
        try:
            a, b = key(), key()
            assert await store.cache_get(a) is None
            await store.cache_put(a, "first ✓", 60)
            assert await store.cache_get(a) == "first ✓"
            await store.cache_put(a, "second", 60)
            assert await store.cache_get(a) == "second"
            await store.cache_put(b, "short-lived", 0.05)
            # The expiry is a point in time: waiting for it is the condition itself.
            await trio.sleep(0.2)
            assert await store.cache_get(b) is None
            assert await store.cache_get(a) == "second"
            with pytest.raises(ValueError):
                await store.cache_put(a, "x", 0)
        finally:
            await store.aclose()


async def test_store_cache_survives_reopening(store_url: str) -> None:
    k = key()
    with trio.fail_after(20):
        async with open_cache(redis_url=None, database_url=store_url) as cache:
            assert isinstance(cache, StoreCache)
            await cache.put(k, "kept", 60)
        async with open_cache(redis_url=None, database_url=store_url) as cache:
            assert await cache.get(k) == "kept"


async def test_a_closed_store_is_cache_unavailable(sqlite_url: str) -> None:
    with trio.fail_after(20):
        store = await open_store(sqlite_url)
        await store.aclose()
        cache = StoreCache(store)
        with pytest.raises(CacheUnavailable, match="database"):
            await cache.get(key())
        with pytest.raises(CacheUnavailable, match="database"):
            await cache.put(key(), "x", 1)


async def test_an_unopenable_store_is_cache_unavailable() -> None:
    with trio.fail_after(20), pytest.raises(CacheUnavailable):
        async with open_cache(redis_url=None, database_url="mysql://nope"):
            pass


@pytest.mark.redis
async def test_redis_cache_round_trip_and_ttl(redis_url: str, redis_prefix: str) -> None:
    import redis

    cache = RedisCache(redis_url, prefix=redis_prefix)
    k = key()
    try:
        with trio.fail_after(20):
            assert await cache.get(k) is None
            await cache.put(k, "värde", 30.2)
            assert await cache.get(k) == "värde"
    finally:
        cache.close()
    client = redis.Redis.from_url(redis_url)
    try:
        assert 30 <= client.ttl(redis_prefix + k) <= 31  # rounded up to whole seconds
    finally:
        client.close()


async def test_unreachable_redis_is_cache_unavailable_quickly() -> None:
    # Nothing listens on port 1 of the loopback: refused at once.
    cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        with trio.fail_after(10):
            with pytest.raises(CacheUnavailable, match="redis"):
                await cache.get(key())
            with pytest.raises(CacheUnavailable, match="redis"):
                await cache.put(key(), "x", 5)
    finally:
        cache.close()
