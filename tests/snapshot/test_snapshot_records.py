"""The snapshot record format, lease values, the back-off, and the package's import rules."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.errors import LocalError
from pubquiz_engine.snapshot import (
    SNAPSHOT_FORMAT,
    CoordinationError,
    CoordinationUnavailable,
    Lease,
    LeaseOwner,
    Snapshot,
    SnapshotCorrupt,
    decode_snapshot,
    encode_snapshot,
)
from pubquiz_engine.snapshot._backoff import Backoff, FailureLog
from pubquiz_engine.snapshot.records import parse_lease_value

counts = st.integers(min_value=0, max_value=2**53)
snapshots = st.builds(
    Snapshot,
    code=st.text(min_size=1, max_size=12),
    epoch=st.integers(min_value=1, max_value=2**53),
    seq=counts,
    watermark=counts,
    saved_at=st.floats(min_value=0, max_value=4e9),
    data=st.binary(max_size=256),
)


@given(snapshots)
def test_snapshot_record_round_trips(snapshot: Snapshot) -> None:
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot


def test_record_is_a_documented_msgpack_map() -> None:
    snap = Snapshot(code="ABCD", epoch=3, seq=17, watermark=42, saved_at=1.5, data=b"\x00state")
    record = msgpack.unpackb(encode_snapshot(snap), raw=False)
    assert record == {"format": SNAPSHOT_FORMAT, "code": "ABCD", "epoch": 3, "seq": 17,
                      "watermark": 42, "saved_at": 1.5, "data": b"\x00state"}
    # Extra keys from a later format-1 writer are ignored.
    record["note"] = "added later"
    assert decode_snapshot(msgpack.packb(record, use_bin_type=True)) == snap


def _record(**changes: object) -> bytes:
    record: dict[str, object] = {"format": 1, "code": "ABCD", "epoch": 1, "seq": 0,
                                 "watermark": 0, "saved_at": 1.0, "data": b""}
    record.update(changes)
    packed: bytes = msgpack.packb({k: v for k, v in record.items() if v is not ...},
                                  use_bin_type=True)
    return packed


@pytest.mark.parametrize("raw", [
    b"",
    b"\xc1",  # never used in msgpack
    msgpack.packb([1, 2]),
    _record(format=2),
    _record(format=...),
    _record(epoch=0),
    _record(epoch=True),
    _record(seq=-1),
    _record(code=""),
    _record(data="text, not bytes"),
    _record(saved_at=None),
    msgpack.packb({"format": 1, "data": msgpack.ExtType(1, b"x")}, use_bin_type=True),
])
def test_unreadable_records_are_refused(raw: bytes) -> None:
    with pytest.raises(SnapshotCorrupt):
        decode_snapshot(raw)


def test_errors_are_local_errors() -> None:
    assert issubclass(CoordinationUnavailable, CoordinationError)
    assert issubclass(SnapshotCorrupt, CoordinationError)
    assert issubclass(CoordinationError, LocalError)


def test_lease_value_and_parse() -> None:
    lease = Lease(code="ABCD", node="node:a", epoch=12, ttl_ms=1000)
    assert lease.value == "node:a:12"
    assert parse_lease_value(lease.value) == LeaseOwner("node:a", 12)
    for bad in ("", "node", "node:", ":3", "node:x"):
        with pytest.raises(CoordinationError):
            parse_lease_value(bad)
    for kwargs in ({"epoch": 0}, {"ttl_ms": 0}, {"code": ""}, {"node": ""}, {"epoch": True}):
        with pytest.raises(ValueError):
            Lease(**{"code": "C", "node": "n", "epoch": 1, "ttl_ms": 1, **kwargs})  # type: ignore[arg-type]


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(0.1, 1.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.1
    jittered = Backoff(0.1, 1.0, jitter=0.5, rng=random.Random(7))
    delays = [jittered.next_delay() for _ in range(50)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[10:]) <= 1.0 and min(delays[10:]) >= 0.5


def test_failure_log_logs_transitions_only(caplog: pytest.LogCaptureFixture) -> None:
    flog = FailureLog("tester", logging.getLogger("test.snapshot"))
    with caplog.at_level(logging.INFO, logger="test.snapshot"):
        for _ in range(5):
            flog.failed(CoordinationUnavailable("down"))
        assert (flog.failures, flog.redis_up) == (5, False)
        assert flog.last_error == "CoordinationUnavailable: down"
        flog.succeeded()
        flog.succeeded()
    assert flog.redis_up
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


def _modules_after(script: str) -> set[str]:
    script += "\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script],
                         capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_only_redis_store_imports_redis() -> None:
    loaded = _modules_after(
        "import json, sys\n"
        "import pubquiz_engine.snapshot as s\n"
        "import pubquiz_engine.snapshot.leases, pubquiz_engine.snapshot.snapshotter\n"
        "import pubquiz_engine.snapshot.registry, pubquiz_engine.snapshot.records\n"
        "s.Snapshotter, s.LeaseKeeper\n"
    )
    assert "redis" not in loaded
    assert not any(m.startswith("pubquiz_engine.server") for m in loaded)
    loaded = _modules_after("import json, sys\nimport pubquiz_engine.snapshot as s\ns.RedisStore\n")
    assert "redis" in loaded

