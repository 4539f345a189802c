"""Where generated questions are kept: Redis when configured, else the engine's own store.

``open_cache(redis_url=..., database_url=...)`` gives a ``records.QuestionCache``: a
``RedisCache`` when a Redis URL is configured (``PUBQUIZ_REDIS_URL`` / ``--redis-url``), else a
``StoreCache`` on the database (``PUBQUIZ_DATABASE_URL`` / ``--database-url``, by default the
SQLite file in ``data/``), whose ``generation_cache`` table comes from store migration 0002.

Rules this module keeps:

1. A cache is an optimisation, never a dependency: every failure (unreachable, timed out,
   refused) is raised as ``records.CacheUnavailable`` and the generator goes on without the
   cache. Driver exceptions (redis-py, the store's) are translated here.
2. Redis calls are synchronous redis-py calls on a worker thread with 1 s socket timeouts and
   no retry, so the event loop never waits on Redis and a dead Redis costs at most a second or
   two. (This is the second module that imports redis-py, next to ``snapshot.redis_store``,
   whose client is private; the two are to be consolidated.) redis is imported only when a
   ``RedisCache`` is made, so generation works without the ``redis`` extra.
3. Entries expire on their own: Redis ``SET ... EX``; the store keeps an absolute expiry.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from pubquiz_engine.errors import StoreError
from pubquiz_engine.generate.records import CacheUnavailable, QuestionCache
from pubquiz_engine.store import Store, open_store

T = TypeVar("T")

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
    """The cache in Redis, under ``prefix`` (rule 2). ``close()`` releases the pool."""

    def __init__(self, url: str, *, prefix: str = "pubquiz:", timeout: float = 1.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis_error: type[Exception] = redis.RedisError
        self._prefix = prefix
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), decode_responses=False,
        )

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        def mapped() -> T:
            try:
                return fn()
            except self._redis_error as exc:
                raise CacheUnavailable(f"cache (redis) {what}: {type(exc).__name__}: "
                                       f"{exc}") from exc

        return await trio.to_thread.run_sync(mapped)

    async def get(self, key: str) -> str | None:
        raw = await self._call("get", lambda: self._client.get(self._prefix + key))
        if raw is None:
            return None
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        seconds = max(1, math.ceil(_ttl(ttl_seconds)))
        await self._call("set", lambda: self._client.set(
            self._prefix + key, value.encode("utf-8"), ex=seconds))

    def close(self) -> None:
        self._client.close()


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
