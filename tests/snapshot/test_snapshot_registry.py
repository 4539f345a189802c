"""NodeRegistry against the real Redis: heartbeat, lookups for redirects, unregistering on a
graceful stop, and surviving an outage."""

from __future__ import annotations

import pytest
import trio
from snapkit import Recording, RedisProxy

from pubquiz_engine.snapshot import CoordinationUnavailable, NodeRegistry
from pubquiz_engine.snapshot.redis_store import RedisStore

pytestmark = pytest.mark.redis


async def test_nodes_see_each_other_and_leave_on_stop(store: RedisStore) -> None:
    rec = Recording(store)
    a = NodeRegistry(rec, "node-a", "ws://127.0.0.1:9001/", ttl_ms=150)
    b = NodeRegistry(store, "node-b", "ws://127.0.0.1:9002/", ttl_ms=150)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)  # readiness = first heartbeat done
            assert await a.nodes() == {"node-a": "ws://127.0.0.1:9001/",
                                       "node-b": "ws://127.0.0.1:9002/"}
            assert await b.url_of("node-a") == "ws://127.0.0.1:9001/"
            # Heartbeats keep node-a listed past several TTLs.
            await rec.wait_until(lambda: rec.count("register", ok=True) >= 8)
            assert await b.url_of("node-a") == "ws://127.0.0.1:9001/"
            nursery.cancel_scope.cancel()
        # Both stopped gracefully: both unregistered at once, not after their TTL.
        assert await store.nodes() == {}
    assert a.stats().heartbeats >= 8 and a.stats().failures == 0 and a.stats().redis_up


async def test_heartbeat_survives_an_outage(proxied: RedisStore, proxy: RedisProxy,
                                            store: RedisStore) -> None:
    rec = Recording(proxied)
    node = NodeRegistry(rec, "node-c", "ws://127.0.0.1:9003/", ttl_ms=300, backoff_initial=0.01)
    proxy.cut()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)  # ready even though Redis is unreachable
            with pytest.raises(CoordinationUnavailable):
                await node.nodes()
            await rec.wait_until(lambda: rec.count("register", ok=False) >= 3)
            stats = node.stats()
            assert (stats.heartbeats, stats.redis_up) == (0, False) and stats.failures >= 3
            proxy.restore()
            await rec.wait_until(lambda: rec.count("register", ok=True) >= 1)
            assert await store.url_of("node-c") == "ws://127.0.0.1:9003/"
            assert node.stats().redis_up
            nursery.cancel_scope.cancel()
    assert await store.url_of("node-c") is None
