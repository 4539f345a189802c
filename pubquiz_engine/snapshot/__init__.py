"""Failover building blocks: Redis snapshots, session leases with fencing epochs, node registry.

- ``RedisStore`` (``snapshot.redis_store``; built with ``open_redis_store(url, prefix=...)``):
  leases (``acquire``/``renew``/``release``/``owner``), fenced snapshot writes
  (``save_snapshot`` / ``load_snapshot``) and the node registry's keys. The only module that
  imports redis; it is loaded only when ``open_redis_store()`` is called or ``RedisStore`` is
  looked up, so the server runs without the ``redis`` extra.
- ``LeaseKeeper``: holds this node's leases and renews them; ``on_lost(code)`` when one is gone.
- ``Snapshotter``: urgent snapshots at once, the rest debounced per session; sessions written
  concurrently (one write in flight per session, at most ``concurrency`` in all).
- ``NodeRegistry``: this node's heartbeat; ``nodes()`` / ``url_of(node)`` for redirects.

Takeover, as the server drives it: ``lease = await keeper.acquire(code, at_least=db_epoch)``;
``snap = await store.load_snapshot(code)``; restore the state from ``snap.data``; replay from
the database every record after ``snap.watermark``; restart the timer with the remaining time;
serve, writing with ``lease.epoch``.

Rules this package keeps: it never imports ``server``; no Redis call runs on the trio thread;
Redis being down or slow never stops a session (failures are counted, logged, retried, and shown
by each part's ``stats()``); a write with a stale epoch raises ``errors.StaleEpoch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pubquiz_engine.snapshot.leases import LeaseKeeper, LeaseKeeperStats
from pubquiz_engine.snapshot.records import (
    SNAPSHOT_FORMAT,
    CoordinationError,
    CoordinationUnavailable,
    Lease,
    LeaseOwner,
    LeaseStore,
    NodeStore,
    Snapshot,
    SnapshotCorrupt,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
)
from pubquiz_engine.snapshot.registry import NodeRegistry, RegistryStats
from pubquiz_engine.snapshot.snapshotter import Build, Snapshotter, SnapshotterStats

if TYPE_CHECKING:
    from pubquiz_engine.snapshot.redis_store import RedisStore


def open_redis_store(
    url: str,
    *,
    prefix: str = "pubquiz:",
    timeout: float = 1.0,
    connect_timeout: float = 1.0,
    threads: int = 8,
    snapshot_ttl_ms: int | None = None,
) -> RedisStore:
    """A ``RedisStore`` on ``url`` (does not connect yet: the first call does)."""
    from pubquiz_engine.snapshot.redis_store import RedisStore

    return RedisStore.from_url(
        url, prefix=prefix, timeout=timeout, connect_timeout=connect_timeout,
        threads=threads, snapshot_ttl_ms=snapshot_ttl_ms,
    )


def __getattr__(name: str) -> object:
    # ``RedisStore`` is importable from here, but loads redis only when asked for.
    if name == "RedisStore":
        from pubquiz_engine.snapshot.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SNAPSHOT_FORMAT",
    "Build",
    "CoordinationError",
    "CoordinationUnavailable",
    "Lease",
    "LeaseKeeper",
    "LeaseKeeperStats",
    "LeaseOwner",
    "LeaseStore",
    "NodeRegistry",
    "NodeStore",
    "RedisStore",
    "RegistryStats",
    "Snapshot",
    "SnapshotCorrupt",
    "SnapshotStore",
    "Snapshotter",
    "SnapshotterStats",
    "decode_snapshot",
    "encode_snapshot",
    "open_redis_store",
]
