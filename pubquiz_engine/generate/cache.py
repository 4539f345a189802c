"""Where generated questions are kept: Redis when configured, else the engine's own store.

``open_cache(redis_url=..., database_url=...)`` gives a ``records.QuestionCache``: a
``RedisCache`` when a Redis URL is configured (``PUBQUIZ_REDIS_URL`` / ``--redis-url``), else a
``StoreCache`` on the database (``PUBQUIZ_DATABASE_URL`` / ``--database-url``, by default the
SQLite file in ``data/``), whose ``generation_cache`` table comes from store migration 0002.

Rules this module keeps:

1. A cache is an optimisation, never a dependency: every failure (unreachable, timed out,
   refused) is raised as ``records.CacheUnavailable`` and the generator goes on without the
   cache. The errors of the store and of ``snapshot.RedisStore`` are translated here.
2. Redis is reached through ``snapshot.RedisStore`` (the only module that imports redis-py):
   calls on worker threads with 1 s socket timeouts, so the event loop never waits on Redis
   and a dead Redis costs at most a second or two. The snapshot module is imported only when a
   ``RedisCache`` is made, so generation works without the ``redis`` extra.
3. Entries expire on their own: Redis ``SET ... EX``; the store keeps an absolute expiry.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pubquiz_engine.errors import StoreError
from pubquiz_engine.generate.records import CacheUnavailable, QuestionCache
from pubquiz_engine.store import Store, open_store

#: The default time a generated round stays cached: a week of quiz preparation.
DEFAULT_TTL_SECONDS = 7 * 24 * 3600


def _ttl(ttl_seconds: float) -> float:
    if not isinstance(ttl_seconds, int | float) or not math.isfinite(ttl_seconds) \
            or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a number > 0, got {ttl_seconds!r}")
    return ttl_seconds


class StoreCache:
    """The cache in the database the engine already has (``Store.cache_get``/``cache_put``)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str) -> str | None:
        try:
            return await self._store.cache_get(key)
        except StoreError as exc:
            raise CacheUnavailable(f"cache (database): {exc}") from exc

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        try:
            await self._store.cache_put(key, value, _ttl(ttl_seconds))
        except StoreError as exc:
            raise CacheUnavailable(f"cache (database): {exc}") from exc


class RedisCache:
    """The cache in Redis, under ``prefix`` (rule 2), through the snapshot module's
    ``RedisStore`` (the one place that speaks redis-py). ``close()`` releases the pool."""

    def __init__(self, url: str, *, prefix: str = "pubquiz:", timeout: float = 1.0) -> None:
        from pubquiz_engine.snapshot import open_redis_store

        self._redis = open_redis_store(url, prefix=prefix, timeout=timeout,
                                       connect_timeout=timeout)

    async def get(self, key: str) -> str | None:
        from pubquiz_engine.snapshot import CoordinationError

        try:
            return await self._redis.cache_get(key)
        except CoordinationError as exc:
            raise CacheUnavailable(f"cache (redis) get: {exc}") from exc

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        from pubquiz_engine.snapshot import CoordinationError

        seconds = max(1, math.ceil(_ttl(ttl_seconds)))
        try:
            await self._redis.cache_put(key, value, seconds)
        except CoordinationError as exc:
            raise CacheUnavailable(f"cache (redis) set: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


@asynccontextmanager
async def open_cache(*, redis_url: str | None, database_url: str,
                     redis_prefix: str = "pubquiz:") -> AsyncIterator[QuestionCache]:
    """The configured cache, closed on exit. Raises ``CacheUnavailable`` if the store cannot
    be opened (a Redis connection is only tried on first use)."""
    if redis_url:
        try:
            cache = RedisCache(redis_url, prefix=redis_prefix)
        except ImportError as exc:
            raise CacheUnavailable(f"cache (redis): needs pubquiz-engine[redis]: {exc}") from exc
        except ValueError as exc:  # an unreadable URL
            raise CacheUnavailable(f"cache (redis): {exc}") from exc
        try:
            yield cache
        finally:
            cache.close()
        return
    try:
        store = await open_store(database_url)
    except (StoreError, ValueError, OSError) as exc:
        # OSError: SqliteStore.open lets one through when it cannot make the file's directory.
        raise CacheUnavailable(f"cache (database): {exc}") from exc
    try:
        yield StoreCache(store)
    finally:
        await store.aclose()
