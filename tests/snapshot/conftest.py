"""Fixtures for the snapshot tests: a store on the real Redis (under this test's key prefix), a
cuttable proxy in front of it, and a second store behind that proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from snapkit import RedisProxy

from pubquiz_engine.snapshot.redis_store import RedisStore

#: Short socket timeouts keep the "Redis is slow" tests fast; loopback answers in well under
#: a millisecond, so they never fire by accident.
TIMEOUT = 0.5


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore.from_url(redis_url, prefix=redis_prefix, timeout=TIMEOUT,
                                 connect_timeout=TIMEOUT)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def proxy(redis_url: str, nursery: trio.Nursery) -> RedisProxy:
    running = RedisProxy(redis_url)
    await nursery.start(running.run)
    return running


@pytest.fixture
async def proxied(proxy: RedisProxy, redis_prefix: str) -> AsyncIterator[RedisStore]:
    """A store reaching the same Redis (same prefix) through ``proxy``."""
    opened = RedisStore.from_url(proxy.url, prefix=redis_prefix, timeout=TIMEOUT,
                                 connect_timeout=TIMEOUT)
    try:
        yield opened
    finally:
        await opened.aclose()
