"""Redis: leases with fencing epochs, fenced snapshots, the node registry. The one redis module.

Rules this module keeps:

1. The event loop never waits on Redis. Every call runs the synchronous ``redis.Redis`` client
   on a worker thread (``trio.to_thread.run_sync``) behind a ``trio.CapacityLimiter`` of
   ``threads`` (default 8, the connection pool's size too). Snapshot writes may hold at most
   half of them (the snapshotter writes several sessions at once), so slow or stalled snapshot
   writes cannot starve lease renewals of threads. (8 rather than 4: with 20 sessions changing
   phase at once on a loaded 2-core machine, 4 snapshot threads instead of 2 cut a phase
   change's wait in the outbox by half, docs/performance.md: each call is a thread hop.)
2. Every call is bounded: ``socket_connect_timeout`` and ``socket_timeout`` (default 1 s each)
   and redis-py's own retry reduced to one immediate retry (for a pooled connection that died
   while idle). The callers - the lease keeper, the snapshotter, the registry - own the real
   retry policy, with back-off. A started call is never abandoned (trio waits for the thread),
   which is safe because of these timeouts.
3. Driver exceptions never leak: connection errors, timeouts, a loading or read-only server become
   ``CoordinationUnavailable``; any other ``redis.RedisError`` becomes ``CoordinationError``; a
   fenced write raises ``errors.StaleEpoch``.
4. Every decision that reads then writes is one Lua script, so it is atomic in Redis: acquiring
   (check, bump the epoch, set), renewing and releasing (compare, then extend or delete), and the
   fenced snapshot write (compare the epoch, then set).

Keys, all under ``prefix`` (the ``{...}`` is a Redis Cluster hash tag: a session's keys share a
slot, so its scripts stay legal on a cluster):

- ``lease:{<code>}``  = ``"<node>:<epoch>"`` with a PX expiry: who serves the session.
- ``epoch:{<code>}``  = the last epoch handed out for the session. Only ever increases and never
  expires: it is what makes a stale writer detectable after its lease is gone. (It must outlive
  the session's data in the database, which also checks epochs.)
- ``snap:{<code>}``   = the snapshot record (format in ``records``), optional PX expiry.
- ``node:<node>``     = the node's public URL with a PX expiry (the heartbeat); ``nodes`` is the
  set of node names that have registered, pruned lazily of names whose key expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
import redis
import redis.exceptions as rex
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from pubquiz_engine.errors import StaleEpoch
from pubquiz_engine.snapshot.records import (
    CoordinationError,
    CoordinationUnavailable,
    Lease,
    LeaseOwner,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    parse_lease_value,
)

T = TypeVar("T")


@attrs.frozen
class SessionRoute:
    """Where a session is served, as Redis says now (``RedisStore.route``).

    ``owner``: the lease holder, or None (free). ``ttl_ms``: how long its lease has left (0
    when free). ``url``: the owner's registered public URL, or None when its registration has
    lapsed (it died, or cannot reach Redis): never redirect there.
    """

    owner: LeaseOwner | None
    ttl_ms: int
    url: str | None

# KEYS[1] lease, KEYS[2] epoch counter; ARGV node, ttl_ms, at_least.
# Returns the new epoch, or 0 when the lease is held (epochs start at 1). The counter is only
# bumped when the lease is actually taken: bumping it on a failed attempt would fence the
# rightful holder's snapshot writes.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch < floor then
  epoch = floor
  redis.call('SET', KEYS[2], epoch)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

# KEYS[1] lease, KEYS[2] epoch counter; ARGV value, ttl_ms, epoch, reclaim ("1" or "0").
# 1: extended. 2: it had expired, nobody acquired since (the counter still says our epoch), and
# reclaim was asked: set again. 0: lost (another value, or gone and not reclaimable).
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current == false and ARGV[4] == '1' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""

# KEYS[1] lease; ARGV value. Compare-and-delete: never deletes a successor's lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] snapshot, KEYS[2] epoch counter; ARGV epoch, record, ttl_ms ("0" = no expiry).
# Returns {1, current} when stored, {0, current} when the epoch is stale.
_SAVE_SNAPSHOT = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < current then
  return {0, current}
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1, current}
"""

# The driver exceptions that mean "not reachable right now" rather than "refused".
_UNAVAILABLE: tuple[type[Exception], ...] = (
    rex.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, AuthenticationError
    rex.TimeoutError,
    rex.ReadOnlyError,  # we reached a replica: a failover in Redis is in progress
    rex.MasterDownError,
    rex.TryAgainError,
    rex.ClusterDownError,
)


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Translate redis-py exceptions at the boundary (and only here)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise CoordinationUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except rex.RedisError as exc:
        raise CoordinationError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _text(raw: bytes | str) -> str:
    # decode_responses=False gives bytes; the annotations also allow str.
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def _blob(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{kind} must be a non-empty string of at most 200 chars, got {value!r}")
    return value


def _check_ttl(ttl_ms: int) -> int:
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms < 1:
        raise ValueError(f"ttl_ms must be an int >= 1, got {ttl_ms!r}")
    return ttl_ms


class RedisStore:
    """Leases, snapshots and the node registry in one Redis, under one key prefix.

    Build it with ``RedisStore.from_url(url, prefix=...)`` (or pass a ``redis.Redis`` made with
    timeouts); every method is ``async`` and raises only ``CoordinationError`` subclasses,
    ``errors.StaleEpoch`` and ``ValueError`` (for arguments that are bugs).

    Resource handling: ``aclose()`` (or ``close()``) closes the connection pool; the store is
    unusable afterwards. It does not delete anything: leases expire on their own.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "pubquiz:",
        threads: int = 8,
        snapshot_ttl_ms: int | None = None,
    ) -> None:
        if not 1 <= threads <= 16:
            raise ValueError(f"threads must be in 1..16, got {threads!r}")
        if snapshot_ttl_ms is not None:
            _check_ttl(snapshot_ttl_ms)
        self._client = client
        self._prefix = prefix
        self._limiter = trio.CapacityLimiter(threads)
        # Taken before ``_limiter`` by snapshot writes only (rule 1): the other half of the
        # threads stays for leases, the registry and takeovers however many sessions write.
        self._save_limiter = trio.CapacityLimiter(max(1, threads // 2))
        self._snapshot_ttl_ms = snapshot_ttl_ms or 0
        # Script objects cache the SHA and fall back to SCRIPT LOAD on NOSCRIPT (e.g. after a
        # Redis restart), so a restarted Redis needs nothing from us.
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._save = client.register_script(_SAVE_SNAPSHOT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "pubquiz:",
        timeout: float = 1.0,
        connect_timeout: float = 1.0,
        threads: int = 8,
        snapshot_ttl_ms: int | None = None,
    ) -> RedisStore:
        """A store on ``url`` (``redis://host:port/db``) with bounded calls (see the rules)."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            # One immediate retry covers a pooled connection that Redis closed while idle;
            # anything longer is the caller's back-off, not a stall inside one call.
            retry=Retry(NoBackoff(), 1),
            max_connections=threads,
            decode_responses=False,
        )
        return cls(client, prefix=prefix, threads=threads, snapshot_ttl_ms=snapshot_ttl_ms)

    # ------------------------------------------------------------------ plumbing
    def key(self, kind: str, code: str) -> str:
        """The Redis key for a session's ``lease``, ``epoch`` or ``snap`` (public for tools)."""
        return f"{self._prefix}{kind}:{{{code}}}"

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    @property
    def _nodes_key(self) -> str:
        return f"{self._prefix}nodes"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        def mapped() -> T:
            with _mapped(what):
                return fn()

        return await trio.to_thread.run_sync(mapped, limiter=self._limiter)

    def close(self) -> None:
        """Close the connection pool (does not block on the network)."""
        self._client.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def ping(self) -> None:
        """Raise ``CoordinationUnavailable`` unless Redis answers."""
        await self._call("ping", self._client.ping)

    # ------------------------------------------------------------------ leases
    async def acquire(
        self, code: str, node: str, ttl_ms: int, *, at_least: int = 0
    ) -> Lease | None:
        """Take the session's lease if nobody holds it, with the next epoch.

        The epoch is the session's counter plus one, raised to ``at_least`` if that is higher
        (pass the epoch the database last saw, so that a Redis which lost its data cannot hand
        out an epoch the database would refuse). ``None`` if the lease is held.
        """
        _check_name("code", code)
        _check_name("node", node)
        _check_ttl(ttl_ms)
        keys = [self.key("lease", code), self.key("epoch", code)]
        epoch = await self._call(
            "acquire", lambda: self._acquire(keys=keys, args=[node, ttl_ms, int(at_least)])
        )
        if not epoch:
            return None
        return Lease(code=code, node=node, epoch=int(epoch), ttl_ms=ttl_ms)

    async def renew(self, lease: Lease, *, reclaim: bool = False) -> bool:
        """Extend the lease to a full ``ttl_ms`` if it is still ours; ``False`` if it is not.

        ``reclaim=True`` also takes it back when it has expired but nobody acquired it since
        (the epoch counter still equals ours): safe, since any other taker would have raised
        the counter, and it spares every session a takeover after a Redis outage longer than
        the TTL.
        """
        return (await self.renew_many([lease], reclaim=reclaim))[0]

    async def renew_many(self, leases: Sequence[Lease], *, reclaim: bool = False) -> list[bool]:
        """``renew`` for many leases in one round trip (a pipeline); results in order."""
        if not leases:
            return []
        flag = "1" if reclaim else "0"

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for lease in leases:
                self._renew(
                    keys=[self.key("lease", lease.code), self.key("epoch", lease.code)],
                    args=[lease.value, lease.ttl_ms, lease.epoch, flag],
                    client=pipe,
                )
            return pipe.execute()

        results = await self._call("renew", run)
        return [int(r) > 0 for r in results]

    async def release(self, lease: Lease) -> bool:
        """Delete the lease if it is still ours (compare-and-delete); ``True`` if deleted."""
        key = self.key("lease", lease.code)
        deleted = await self._call(
            "release", lambda: self._release(keys=[key], args=[lease.value])
        )
        return bool(deleted)

    async def owner(self, code: str) -> LeaseOwner | None:
        """Who holds the session's lease now, or ``None``."""
        key = self.key("lease", _check_name("code", code))
        raw = await self._call("owner", lambda: self._client.get(key))
        if raw is None:
            return None
        return parse_lease_value(_text(raw))

    async def current_epoch(self, code: str) -> int:
        """The last epoch handed out for the session (0 if none ever was)."""
        key = self.key("epoch", _check_name("code", code))
        raw = await self._call("current_epoch", lambda: self._client.get(key))
        return 0 if raw is None else int(raw)

    async def route(self, code: str) -> SessionRoute:
        """The session's lease holder, its lease's remaining time and the holder's URL.

        The lease and its PTTL are read atomically (MULTI); the URL is read after, so a node
        that dies in between is at worst redirected to once more, never after its registration
        lapsed. Two round trips when the lease is held, one when it is free.
        """
        key = self.key("lease", _check_name("code", code))

        def run() -> SessionRoute:
            pipe = self._client.pipeline(transaction=True)
            pipe.get(key)
            pipe.pttl(key)
            raw, pttl = pipe.execute()
            if raw is None:
                return SessionRoute(owner=None, ttl_ms=0, url=None)
            owner = parse_lease_value(_text(raw))
            url = self._client.get(self._node_key(owner.node))
            return SessionRoute(owner=owner, ttl_ms=max(int(pttl), 0),
                                url=None if url is None else _text(url))

        return await self._call("route", run)

    # ------------------------------------------------------------------ snapshots
    async def save_snapshot(
        self, code: str, epoch: int, data: bytes, seq: int, watermark: int
    ) -> None:
        """Store the session's snapshot unless ``epoch`` is below the session's current epoch
        (then raise ``errors.StaleEpoch``: another node has taken over)."""
        record = encode_snapshot(
            Snapshot(code=code, epoch=epoch, seq=seq, watermark=watermark,
                     saved_at=time.time(), data=data)
        )
        keys = [self.key("snap", code), self.key("epoch", code)]
        async with self._save_limiter:
            result = await self._call(
                "save_snapshot",
                lambda: self._save(keys=keys, args=[epoch, record, self._snapshot_ttl_ms]),
            )
        stored, current = int(result[0]), int(result[1])
        if not stored:
            raise StaleEpoch(
                f"snapshot of {code} refused: epoch {epoch} < current epoch {current}"
            )

    async def load_snapshot(self, code: str) -> Snapshot | None:
        """The session's last snapshot, or ``None``; ``SnapshotCorrupt`` if unreadable."""
        key = self.key("snap", _check_name("code", code))
        raw = await self._call("load_snapshot", lambda: self._client.get(key))
        if raw is None:
            return None
        snapshot = decode_snapshot(_blob(raw))
        if snapshot.code != code:
            raise CoordinationError(f"snapshot under {key!r} is for session {snapshot.code!r}")
        return snapshot

    async def delete_snapshot(self, code: str) -> None:
        """Forget a finished session's snapshot (its epoch counter stays, on purpose)."""
        key = self.key("snap", _check_name("code", code))
        await self._call("delete_snapshot", lambda: self._client.delete(key))

    # ------------------------------------------------------------------ a small text cache
    def cache_key(self, key: str) -> str:
        """The Redis key of cache entry ``key``: the prefix, then the key as the caller
        namespaced it (e.g. ``ai-questions:<hash>``, docs/quiz-format.md)."""
        return f"{self._prefix}{key}"

    async def cache_get(self, key: str) -> str | None:
        """The text stored under ``key``, or None (absent or expired)."""
        raw = await self._call("cache get", lambda: self._client.get(self.cache_key(key)))
        return None if raw is None else _text(raw)

    async def cache_put(self, key: str, value: str, ttl_seconds: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (whole seconds, >= 1)."""
        if not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be an int >= 1, got {ttl_seconds!r}")
        await self._call("cache put", lambda: self._client.set(
            self.cache_key(key), value.encode("utf-8"), ex=ttl_seconds))

    # ------------------------------------------------------------------ node registry
    async def register(self, node: str, url: str, ttl_ms: int) -> None:
        """One heartbeat: the node is live, at ``url``, for the next ``ttl_ms``."""
        key = self._node_key(_check_name("node", node))
        _check_ttl(ttl_ms)

        def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(key, url.encode("utf-8"), px=ttl_ms)
            pipe.sadd(self._nodes_key, node)
            pipe.execute()

        await self._call("register", run)

    async def unregister(self, node: str) -> None:
        """The node leaves (a graceful stop): it is no longer listed."""
        key = self._node_key(_check_name("node", node))

        def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(key)
            pipe.srem(self._nodes_key, node)
            pipe.execute()

        await self._call("unregister", run)

    async def nodes(self) -> dict[str, str]:
        """Every live node and its URL. Names whose heartbeat expired are pruned on the way."""

        def run() -> dict[str, str]:
            names = sorted(_text(n) for n in self._client.smembers(self._nodes_key))
            if not names:
                return {}
            urls = self._client.mget([self._node_key(n) for n in names])
            live = {n: _text(u) for n, u in zip(names, urls, strict=True)
                    if u is not None}
            dead = [n for n in names if n not in live]
            if dead:
                # A node that re-registers between MGET and SREM re-adds itself on its next
                # heartbeat (ttl/3 later): harmless.
                self._client.srem(self._nodes_key, *dead)
            return live

        return await self._call("nodes", run)

    async def url_of(self, node: str) -> str | None:
        """The live node's URL, or ``None`` if it is not live."""
        key = self._node_key(_check_name("node", node))
        raw = await self._call("url_of", lambda: self._client.get(key))
        return None if raw is None else _text(raw)


__all__ = ["RedisStore", "SessionRoute"]
