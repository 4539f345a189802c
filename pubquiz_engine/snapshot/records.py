"""What the failover layer stores in Redis, the snapshot format, its errors and its ports.

Rules this module keeps:

1. Plain data only. ``Lease``, ``LeaseOwner`` and ``Snapshot`` are frozen, validated values; the
   snapshot record's byte format is defined here (``encode_snapshot`` / ``decode_snapshot``) so
   that it can be tested, and read by tools, without Redis.
2. The Redis client never leaks. ``redis_store`` is the only module that imports ``redis``; it
   translates every driver exception into ``CoordinationUnavailable`` (Redis unreachable, slow or
   refusing writes: retry later) or ``CoordinationError`` (anything else it refused). A write
   carrying a fencing epoch lower than the session's current one raises ``errors.StaleEpoch``,
   the same class the database raises, so the server handles both fencings in one place.
3. The long-running parts (``LeaseKeeper``, ``Snapshotter``, ``NodeRegistry``) depend on the small
   ports below, not on ``RedisStore``: the server can run with no Redis at all, and tests can put
   a recording wrapper around the real store.

Snapshot record, format 1 (one msgpack map, stored as the value of ``{prefix}snap:{<code>}``):

=============  =========  ====================================================================
key            type       meaning
=============  =========  ====================================================================
``format``     int        always ``1``; a reader refuses any other value (``SnapshotCorrupt``)
``code``       str        the session's join code (a cross-check against the key)
``epoch``      int >= 1   the fencing epoch of the lease the writer held
``seq``        int >= 0   the session's sequence number the state reflects
``watermark``  int >= 0   the database position the state reflects: on takeover, replay every
                          stored record after it
``saved_at``   float      unix seconds (``time.time()``) on the writer when it was written
``data``       bin        the session state, opaque here (the game's ``to_snapshot()``
                          serialised by the server, with its own ``format`` key)
=============  =========  ====================================================================

Unknown extra keys are ignored (a later format 1 writer may add optional keys); a missing or
mistyped key makes the record unreadable. A change that older readers would misread bumps
``format``.

The bytes go through the codec's ``pack_stored`` / ``unpack_stored`` (its limits, its one
error): this module imports no msgpack, no trio and no redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import attrs

from pubquiz_engine.errors import CorruptData, LocalError
from pubquiz_engine.protocol.codec import pack_stored, unpack_stored

#: The snapshot record format this module writes and the only one it reads.
SNAPSHOT_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class CoordinationError(LocalError):
    """Redis refused or failed a request in a way that is not plain unavailability
    (a script error, a wrong key type, an unreadable snapshot)."""


class CoordinationUnavailable(CoordinationError):
    """Redis is unreachable, timed out, is loading, or is a read-only replica. Retry with
    back-off; a session never stops because of it."""


class SnapshotCorrupt(CoordinationError, CorruptData):
    """A stored snapshot record is not a readable format-1 record, or the session state it
    carries is not readable (``server.failover.read_state``)."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _non_empty(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _count(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    # bool is an int subclass; a seq of True is a bug, not a number.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class Lease:
    """A lease this node holds on one session: ``epoch`` is its fencing token.

    The Redis value of the lease key is ``value`` (``"{node}:{epoch}"``); renewing and releasing
    compare against it, so a lease can only ever extend or delete itself, never a successor.
    """

    code: str = attrs.field(validator=_non_empty)
    node: str = attrs.field(validator=_non_empty)
    epoch: int = attrs.field(validator=_positive)
    ttl_ms: int = attrs.field(validator=_positive)

    @property
    def value(self) -> str:
        return f"{self.node}:{self.epoch}"


class LeaseOwner(NamedTuple):
    """Who holds a session's lease right now (``RedisStore.owner``)."""

    node: str
    epoch: int


def parse_lease_value(raw: str) -> LeaseOwner:
    """``"{node}:{epoch}"`` -> ``LeaseOwner``. Node names may contain ``:``: the epoch is last."""
    node, sep, epoch = raw.rpartition(":")
    if not sep or not node or not epoch.isdigit():
        raise CoordinationError(f"unreadable lease value {raw!r}")
    return LeaseOwner(node, int(epoch))


@attrs.frozen
class Snapshot:
    """One stored snapshot (see the module docs for the record format)."""

    code: str = attrs.field(validator=_non_empty)
    epoch: int = attrs.field(validator=_positive)
    seq: int = attrs.field(validator=_count)
    watermark: int = attrs.field(validator=_count)
    saved_at: float
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The format-1 record for ``snapshot``."""
    return pack_stored(
        {
            "format": SNAPSHOT_FORMAT,
            "code": snapshot.code,
            "epoch": snapshot.epoch,
            "seq": snapshot.seq,
            "watermark": snapshot.watermark,
            "saved_at": float(snapshot.saved_at),
            "data": bytes(snapshot.data),
        }
    )


def decode_snapshot(raw: bytes) -> Snapshot:
    """Read a format-1 record; raise ``SnapshotCorrupt`` for anything else."""
    try:
        # str keys and values come back as str, bin as bytes; no ext types, no non-str map
        # keys: a record is written by us, so anything odd means damage.
        record: Any = unpack_stored(raw)
    except CorruptData as exc:
        raise SnapshotCorrupt(f"snapshot is not msgpack: {exc}") from exc
    if not isinstance(record, dict):
        raise SnapshotCorrupt(f"snapshot is a {type(record).__name__}, not a map")
    if record.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotCorrupt(f"unknown snapshot format {record.get('format')!r}")
    saved_at = record.get("saved_at")
    if not isinstance(saved_at, float | int) or isinstance(saved_at, bool):
        raise SnapshotCorrupt(f"snapshot saved_at is {saved_at!r}")
    data = record.get("data")
    if not isinstance(data, bytes):
        raise SnapshotCorrupt("snapshot data is not bytes")
    try:
        return Snapshot(
            code=record.get("code"),  # type: ignore[arg-type]  # validated by Snapshot
            epoch=record.get("epoch"),  # type: ignore[arg-type]
            seq=record.get("seq"),  # type: ignore[arg-type]
            watermark=record.get("watermark"),  # type: ignore[arg-type]
            saved_at=float(saved_at),
            data=data,
        )
    except ValueError as exc:
        raise SnapshotCorrupt(f"snapshot field invalid: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Ports: what the keeper, the snapshotter and the registry need from a store
# --------------------------------------------------------------------------------------------


class LeaseStore(Protocol):
    async def acquire(
        self, code: str, node: str, ttl_ms: int, *, at_least: int = 0
    ) -> Lease | None: ...

    async def renew_many(
        self, leases: Sequence[Lease], *, reclaim: bool = False
    ) -> list[bool]: ...

    async def release(self, lease: Lease) -> bool: ...


class SnapshotStore(Protocol):
    async def save_snapshot(
        self, code: str, epoch: int, data: bytes, seq: int, watermark: int
    ) -> None: ...


class NodeStore(Protocol):
    async def register(self, node: str, url: str, ttl_ms: int) -> None: ...

    async def unregister(self, node: str) -> None: ...

    async def nodes(self) -> dict[str, str]: ...

    async def url_of(self, node: str) -> str | None: ...


__all__ = [
    "SNAPSHOT_FORMAT",
    "CoordinationError",
    "CoordinationUnavailable",
    "Lease",
    "LeaseOwner",
    "LeaseStore",
    "NodeStore",
    "Snapshot",
    "SnapshotCorrupt",
    "SnapshotStore",
    "decode_snapshot",
    "encode_snapshot",
    "parse_lease_value",
]
