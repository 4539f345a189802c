"""The engine's metrics in Prometheus form (prometheus-client), served at ``/metrics``.

Two kinds of series:

* **Events the engine counts as they happen** (messages in, answers accepted and rejected, frame
  errors, sessions created and ended, snapshot and lease events, ack latency, event-loop lag):
  prometheus-client counters and histograms bumped on the hot path.
* **State that already exists elsewhere** (open connections, live sessions and members, the
  transport's byte and frame counters, the write-behind queue): read when scraped, through a
  collector that calls ``sample()``. Copying it into gauges on every change would cost the hot
  path for nothing.

Rules this module keeps:

1. **One registry per engine** (``Metrics.registry``), never the global one: several engines
   in one process (tests) keep separate counts, and nothing else in the process leaks in.
2. **The hot path pays one counter increment.** What every answer bumps (messages in,
   answers accepted, the ack latency histogram) is plain ints in ``_HotCounters``, read by
   a collector at scrape time: a prometheus-client ``inc()`` takes a lock (measured 1.15 us
   per call, ``observe()`` 3.2 us, on a loaded 2-core VM; an attribute increment ~0.05 us,
   a bisect into the buckets ~0.3 us), and an answer paid three of them (a refused one also
   two labelled ones, now plain dict entries). The rarer events
   keep prometheus-client's counters; their labelled children are looked up once and cached.
3. **Label values are bounded**: error codes, rejection reasons and event kinds come from fixed
   enums in the code, never from a client's input, so a client cannot grow the series set.
4. **No ``*_created`` series.** prometheus-client adds a ``<name>_created`` gauge (the Unix time
   the series was made) to every counter and histogram; nothing alerts on them and they were 30
   of 82 series. ``render`` leaves them out, for this registry only (prometheus-client's own
   switch, ``disable_created_metrics()``, is process-wide).
"""

from __future__ import annotations

import bisect
import gc
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from pubquiz_engine.server.transport import TransportStatistics
from pubquiz_engine.store.writebehind import WriteBehindStats

#: Ack latency buckets in seconds (targets: p99 < 25 ms durable, < 5 ms fast).
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Event-loop lag buckets in seconds: a healthy loop stays under a few ms.
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The Content-Type of ``Metrics.render()``.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Snapshot events the engine sees itself (label ``event`` of ``pubquiz_snapshot_events_total``):
#: a takeover ``loaded`` a snapshot, or could not read one (``load_failed``). Writes and their
#: failures come from the snapshotter's stats (``SnapshotStats``).
SNAPSHOT_EVENTS = ("loaded", "load_failed")
#: Lease events the engine sees itself (label ``event`` of ``pubquiz_lease_events_total``):
#: ``acquired`` for a new session, ``taken_over`` from a gone node, ``fenced`` = a database or
#: snapshot write refused for a stale epoch. Renewals and losses come from the lease keeper's
#: stats (``LeaseStats``).
LEASE_EVENTS = ("acquired", "taken_over", "fenced")
#: How a node answered a client for a session another node holds (label ``event`` of
#: ``pubquiz_route_events_total``): a ``redirect`` to the owner's own address, or
#: ``lease_wait``: the owner is gone and its lease still runs (``unavailable`` with
#: ``retry_after_ms``).
ROUTE_EVENTS = ("redirect", "lease_wait")
#: Frame error codes shown at zero from the start: the ones ``PubquizFrameErrorsHigh`` (docs/
#: operations.md) watches, so that its rate() has a series before the first error.
WATCHED_FRAME_ERRORS = ("malformed_frame", "frame_too_large", "limit_exceeded", "text_frame",
                        "rate_limited")


class SnapshotStats(Protocol):
    """What the metrics read of ``snapshot.SnapshotterStats`` (structural: no import)."""

    @property
    def pending(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def writes(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def stale(self) -> int: ...
    @property
    def bytes_written(self) -> int: ...
    @property
    def redis_up(self) -> bool: ...


class LeaseStats(Protocol):
    """What the metrics read of ``snapshot.LeaseKeeperStats``."""

    @property
    def held(self) -> int: ...
    @property
    def overdue(self) -> int: ...
    @property
    def renewals(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def redis_up(self) -> bool: ...


@attrs.frozen
class EngineSample:
    """The engine's state at scrape time (``Engine._sample`` builds it)."""

    sessions: int
    members: int
    ready: bool
    stopping: bool
    transport: TransportStatistics | None
    write_behind: WriteBehindStats
    #: Unix time now, for the age of the last flush.
    now: float
    #: With Redis: the snapshotter's and the lease keeper's ``stats()``.
    snapshots: SnapshotStats | None = None
    leases: LeaseStats | None = None
    #: With Redis: the most events any live session is ahead of its last stored snapshot.
    snapshot_lag_events: int = 0


class _GcCollections:
    """The cyclic GC's collections per generation since start (prometheus-client's own
    ``GCCollector`` names its series ``python_gc_*``; every series here is ``pubquiz_*``).
    A generation 2 collection walks the whole heap and pauses the loop meanwhile."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "pubquiz_gc_collections", "Cyclic GC collections per generation (2: full ones, "
            "which pause the event loop).", labels=["generation"])
        for generation, stats in enumerate(gc.get_stats()):
            family.add_metric([str(generation)], stats["collections"])
        yield family


#: Metric types prometheus-client gives a ``<name>_created`` sample (rule 4).
_HAS_CREATED = frozenset({"counter", "histogram", "summary"})


@attrs.define
class _WithoutCreated:
    """A view of a registry without the ``<name>_created`` samples (rule 4)."""

    registry: CollectorRegistry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            if metric.type in _HAS_CREATED:
                created = metric.name + "_created"
                metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class Metrics:
    """The engine's counters; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Rule 2: messages in, answers accepted and the ack latency are plain ints.
        self._hot = _HotCounters()
        r.register(self._hot)
        self._sessions_created = Counter(
            "pubquiz_sessions_created", "Sessions created on this process.", registry=r)
        self._sessions_ended = Counter(
            "pubquiz_sessions_ended", "Sessions whose nursery ended on this process.",
            registry=r)
        self._snapshot = Counter(
            "pubquiz_snapshot_events", "Session snapshot events (Redis).", ["event"],
            registry=r)
        self._lease = Counter(
            "pubquiz_lease_events", "Session lease events (Redis; fenced = a write refused "
            "for a stale epoch).", ["event"], registry=r)
        self._route = Counter(
            "pubquiz_route_events", "Clients for a session another node holds: redirected to "
            "its node, or told to wait for its lease (its node is gone).", ["event"],
            registry=r)
        self._loop_lag = Histogram(
            "pubquiz_event_loop_lag_seconds", "How late a 100 ms sleep wakes up: time the event "
            "loop spent busy.", buckets=LOOP_LAG_BUCKETS, registry=r)
        self._loop_lag_last = Gauge(
            "pubquiz_event_loop_lag_last_seconds", "The latest event-loop lag measurement.",
            registry=r)
        # Open file descriptors against their limit (LimitNOFILE), resident memory, CPU.
        ProcessCollector(namespace="pubquiz", registry=r)
        r.register(_GcCollections())
        # Rule 2: labelled children, looked up once per label value.
        self._children: dict[tuple[str, str], Any] = {}
        # Show the fixed-label series at zero from the start, so that rate() and alerts see a
        # series before its first event.
        for kind in SNAPSHOT_EVENTS:
            self._child(self._snapshot, "snapshot", kind)
        for kind in LEASE_EVENTS:
            self._child(self._lease, "lease", kind)
        for kind in ROUTE_EVENTS:
            self._child(self._route, "route", kind)

    def _child(self, family: Counter, name: str, label: str) -> Any:
        child = self._children.get((name, label))
        if child is None:
            child = self._children[(name, label)] = family.labels(label)
        return child

    # --- the hot path (names kept from the first Metrics: connection.py calls them) ---------

    def message_in(self) -> None:
        self._hot.messages_in += 1

    def frame_error(self, code: str) -> None:
        errors = self._hot.frame_errors
        errors[code] = errors.get(code, 0) + 1

    def answer_accepted(self) -> None:
        self._hot.answers_accepted += 1

    def answer_rejected(self, reason: str) -> None:
        rejected = self._hot.answers_rejected
        rejected[reason] = rejected.get(reason, 0) + 1

    def ack_latency(self, seconds: float) -> None:
        hot = self._hot
        # A bucket's bound is inclusive (le): the first bound >= seconds counts it.
        hot.ack_counts[bisect.bisect_left(ACK_BUCKETS, seconds)] += 1
        hot.ack_sum += seconds

    # --- engine events ------------------------------------------------------------------------

    def session_created(self) -> None:
        self._sessions_created.inc()

    def session_ended(self) -> None:
        self._sessions_ended.inc()

    def snapshot_event(self, event: str) -> None:
        """One of ``SNAPSHOT_EVENTS``."""
        self._child(self._snapshot, "snapshot", event).inc()

    def lease_event(self, event: str) -> None:
        """One of ``LEASE_EVENTS``."""
        self._child(self._lease, "lease", event).inc()

    def route_event(self, event: str) -> None:
        """One of ``ROUTE_EVENTS``."""
        self._child(self._route, "route", event).inc()

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)
        self._loop_lag_last.set(seconds)

    # --- reading ------------------------------------------------------------------------------

    def watch(self, sample: Callable[[], EngineSample]) -> None:
        """Expose the engine's state, read through ``sample()`` at every scrape."""
        self.registry.register(_EngineCollector(sample))

    def render(self) -> bytes:
        """Every series in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(_WithoutCreated(self.registry))

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0.0 when absent): for tests and ``/health``."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


class _HotCounters(Collector):
    """The series every answer bumps, as plain ints (rule 2), exposed at scrape time with
    the names and types prometheus-client's own counters and histogram gave them."""

    __slots__ = ("ack_counts", "ack_sum", "answers_accepted", "answers_rejected", "frame_errors",
                 "messages_in")

    def __init__(self) -> None:
        self.messages_in = 0
        self.answers_accepted = 0
        #: By error code (rule 3: codes of the engine's enums). The watched frame errors are
        #: shown at zero from the start, so that rate() and alerts see a series before the
        #: first error.
        self.frame_errors: dict[str, int] = dict.fromkeys(WATCHED_FRAME_ERRORS, 0)
        self.answers_rejected: dict[str, int] = {}
        #: Per bucket of ``ACK_BUCKETS`` (not cumulative), the last one for ``+Inf``.
        self.ack_counts = [0] * (len(ACK_BUCKETS) + 1)
        self.ack_sum = 0.0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "pubquiz_messages_in", "Client messages received and handled (decoded or not).",
            value=self.messages_in)
        yield CounterMetricFamily(
            "pubquiz_answers_accepted", "Answers the session accepted.",
            value=self.answers_accepted)
        for name, help_text, label, counts in (
            ("pubquiz_frame_errors", "Error replies sent to clients, by error code.", "code",
             self.frame_errors),
            ("pubquiz_answers_rejected", "Answers the session refused, by error code.",
             "reason", self.answers_rejected),
        ):
            family = CounterMetricFamily(name, help_text, labels=[label])
            for value, count in counts.items():
                family.add_metric([value], count)
            yield family
        cumulative, buckets = 0, []
        for bound, count in zip((*map(_bound, ACK_BUCKETS), "+Inf"), self.ack_counts,
                                strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "pubquiz_ack_latency_seconds", "Answer received to answer_ack sent (durable: "
            "includes the commit).", buckets=buckets, sum_value=self.ack_sum)


def _bound(le: float) -> str:
    """A bucket bound as prometheus-client writes it (``0.005``, ``1.0``)."""
    return repr(float(le))


class _EngineCollector(Collector):
    """Reads the engine's state when scraped (the second kind of series)."""

    def __init__(self, sample: Callable[[], EngineSample]) -> None:
        self._sample = sample

    def describe(self) -> list[Metric]:
        # No description up front: the registry must not call sample() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        s = self._sample()
        yield _gauge("pubquiz_sessions", "Live sessions on this process.", s.sessions)
        yield _gauge("pubquiz_members", "Players, hosts and displays attached to live sessions.",
                     s.members)
        yield _gauge("pubquiz_ready", "1 while the engine accepts connections (/ready).",
                     1.0 if s.ready and not s.stopping else 0.0)
        yield _gauge("pubquiz_stopping", "1 once a graceful stop (drain) has begun.",
                     1.0 if s.stopping else 0.0)
        t = s.transport
        if t is not None:
            yield _gauge("pubquiz_connections", "Open WebSocket connections.", t.connections_open)
            for name, help_text, value in (
                ("pubquiz_connections_accepted", "WebSocket connections accepted.",
                 t.connections_total),
                ("pubquiz_http_requests", "Plain HTTP requests served (health, metrics).",
                 t.http_requests),
                ("pubquiz_handshake_failures", "Connections dropped before the WebSocket "
                 "handshake completed.", t.handshake_failures),
                ("pubquiz_messages_out", "WebSocket data messages sent.", t.frames_out),
                ("pubquiz_bytes_in", "Bytes received on WebSocket connections.", t.bytes_in),
                ("pubquiz_bytes_out", "Bytes sent on WebSocket connections.", t.bytes_out),
                ("pubquiz_closed_slow_consumer", "Connections closed because their send "
                 "backlog passed max_backlog_bytes (4101).", t.closed_slow_consumer),
                ("pubquiz_closed_idle", "Connections closed for not answering pings.",
                 t.closed_idle),
                ("pubquiz_write_passes", "Coalesced write passes (a broadcast is one).",
                 t.write_passes),
                ("pubquiz_write_pass_seconds", "Time from each write pass's first write to "
                 "every frame of it handed to the kernel, summed.", t.write_pass_seconds_total),
            ):
                yield CounterMetricFamily(name, help_text, value=value)
            yield _gauge("pubquiz_write_pass_slowest_seconds", "The slowest write pass so "
                         "far: first write to the kernel having every frame.",
                         t.write_pass_seconds_max)
        w = s.write_behind
        yield _gauge("pubquiz_write_behind_depth", "Records queued, not yet committed "
                     "(in flight included).", w.depth)
        yield _gauge("pubquiz_write_behind_in_flight", "Records in the commit running now.",
                     w.in_flight)
        yield _gauge("pubquiz_write_behind_max_queue", "Queue bound: past it answers are "
                     "refused as busy.", w.max_queue)
        yield _gauge("pubquiz_write_behind_lag_seconds", "Age of the oldest uncommitted "
                     "record (0 when idle).", w.lag_seconds)
        yield _gauge("pubquiz_write_behind_last_flush_seconds", "Duration of the last "
                     "successful commit.", w.last_flush_seconds)
        age = s.now - w.last_flush_at if w.last_flush_at is not None else -1.0
        yield _gauge("pubquiz_write_behind_last_flush_age_seconds", "Seconds since the last "
                     "successful commit (-1 before the first).", age)
        for name, help_text, count in (
            ("pubquiz_write_behind_batches", "Batches committed.", w.batches),
            ("pubquiz_write_behind_records", "Records committed.", w.records),
            ("pubquiz_write_behind_failures", "Failed commit attempts (each retry counts).",
             w.failures),
            ("pubquiz_write_behind_refused", "Records refused for a stale epoch.", w.refused),
        ):
            yield CounterMetricFamily(name, help_text, value=count)
        if s.snapshots is not None:
            yield from _snapshot_families(s.snapshots)
            yield _gauge("pubquiz_snapshot_lag_events", "The most events a live session is "
                         "ahead of its last stored snapshot.", s.snapshot_lag_events)
        if s.leases is not None:
            yield from _lease_families(s.leases)


def _snapshot_families(snap: SnapshotStats) -> Iterator[Metric]:
    yield _gauge("pubquiz_snapshot_pending", "Sessions waiting for a snapshot write.",
                 snap.pending)
    yield _gauge("pubquiz_snapshot_in_flight", "Snapshot writes started and not finished "
                 "(at most snapshot_concurrency).", snap.in_flight)
    yield _gauge("pubquiz_snapshot_redis_up", "1 if the last snapshot write reached Redis.",
                 1.0 if snap.redis_up else 0.0)
    for name, help_text, count in (
        ("pubquiz_snapshot_writes", "Snapshots stored.", snap.writes),
        ("pubquiz_snapshot_failures", "Snapshot writes that failed (Redis down or slow).",
         snap.failures),
        ("pubquiz_snapshot_stale", "Snapshot writes refused: another node has a newer epoch.",
         snap.stale),
        ("pubquiz_snapshot_bytes", "Snapshot bytes written.", snap.bytes_written),
    ):
        yield CounterMetricFamily(name, help_text, value=count)


def _lease_families(lease: LeaseStats) -> Iterator[Metric]:
    yield _gauge("pubquiz_leases_held", "Session leases this node holds.", lease.held)
    yield _gauge("pubquiz_leases_overdue", "Held leases not confirmed within their TTL.",
                 lease.overdue)
    yield _gauge("pubquiz_lease_redis_up", "1 if the last lease renewal reached Redis.",
                 1.0 if lease.redis_up else 0.0)
    for name, help_text, count in (
        ("pubquiz_lease_renewals", "Lease renewals confirmed by Redis.", lease.renewals),
        ("pubquiz_leases_lost", "Leases found gone or taken over by another node.", lease.lost),
        ("pubquiz_lease_failures", "Lease renewal round trips that failed.", lease.failures),
    ):
        yield CounterMetricFamily(name, help_text, value=count)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))
