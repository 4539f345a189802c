"""The snapshotter: the pure debounce schedule (time as an argument), then the trio writer on a
virtual clock with the real Redis for I/O, then fencing, failures and recovery."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from snapkit import Recording, RedisProxy

from pubquiz_engine.snapshot import Snapshotter
from pubquiz_engine.snapshot.redis_store import RedisStore
from pubquiz_engine.snapshot.snapshotter import Build, DebounceSchedule, Due

# ------------------------------------------------------------------------------ pure schedule


def _build(tag: int) -> Build:
    return lambda: (b"", tag, 0)


def _start(schedule: DebounceSchedule, now: float) -> Due:
    """Start the write due at ``now``: it is in flight until ``finish``."""
    item = schedule.pop_due(now)
    assert item is not None, f"nothing due at {now}"
    return item


def _pop(schedule: DebounceSchedule, now: float) -> Due:
    """Start the write due at ``now`` and finish it at once (an instant, successful write)."""
    item = _start(schedule, now)
    assert not schedule.finish(item, now=now)
    return item


def test_first_request_is_due_at_once_then_at_most_once_per_interval() -> None:
    s = DebounceSchedule(0.5)
    s.request("A", 1, _build(1), urgent=False, now=10.0)
    assert s.next_due() == 10.0
    assert _pop(s, 10.0).build() == (b"", 1, 0)
    s.request("A", 1, _build(2), urgent=False, now=10.1)
    assert s.next_due() == 10.5 and s.pop_due(10.49) is None
    # Later requests replace the build but never push the write back.
    s.request("A", 1, _build(3), urgent=False, now=10.4)
    assert s.next_due() == 10.5 and len(s) == 1
    assert _pop(s, 10.5).build() == (b"", 3, 0)
    assert s.next_due() is None and len(s) == 0


def test_urgent_request_is_due_at_once_and_pulls_a_pending_one_forward() -> None:
    s = DebounceSchedule(0.5)
    s.request("A", 1, _build(1), urgent=False, now=0.0)
    _pop(s, 0.0)
    s.request("A", 1, _build(2), urgent=False, now=0.1)
    assert s.next_due() == 0.5
    s.request("A", 1, _build(3), urgent=True, now=0.2)
    assert s.next_due() == 0.2
    item = _pop(s, 0.2)
    assert (item.code, item.build()) == ("A", (b"", 3, 0))
    assert s.next_due() is None  # the superseded heap entry is skipped


def test_sessions_are_independent_and_ordered_by_due_time() -> None:
    s = DebounceSchedule(1.0)
    s.request("A", 1, _build(1), urgent=False, now=0.0)
    _pop(s, 0.0)
    s.request("A", 1, _build(2), urgent=False, now=0.1)  # due 1.0
    s.request("B", 7, _build(3), urgent=False, now=0.2)  # due 0.2
    item = _pop(s, 0.2)
    assert (item.code, item.epoch) == ("B", 7)
    assert s.pop_due(0.9) is None and _pop(s, 1.0).code == "A"


def test_retry_hurry_and_forget() -> None:
    s = DebounceSchedule(1.0)
    s.request("A", 1, _build(1), urgent=False, now=0.0)
    failed = _start(s, 0.0)
    assert s.finish(failed, now=0.3, failed=True)
    assert s.next_due() == 0.3 and _pop(s, 0.3).build() == (b"", 1, 0)
    # A newer request that came in during the failed write keeps its build, due at once.
    s.request("A", 1, _build(1), urgent=False, now=1.2)  # due 1.3
    failed = _start(s, 1.3)
    s.request("A", 1, _build(2), urgent=False, now=1.4)  # due 2.3
    assert s.finish(failed, now=1.5, failed=True)
    assert _pop(s, 1.5).build() == (b"", 2, 0)
    s.request("A", 1, _build(3), urgent=False, now=1.6)  # due 2.5
    s.hurry(now=1.7)
    assert _pop(s, 1.7).build() == (b"", 3, 0)
    s.request("A", 1, _build(4), urgent=True, now=1.8)
    s.forget("A", below_epoch=1)  # epoch 1 is not below 1: kept
    assert "A" in s
    s.forget("A", below_epoch=2)
    assert "A" not in s and s.next_due() is None
    s.request("A", 2, _build(5), urgent=False, now=1.9)
    s.forget("A")  # session closed: history goes too, so the next request is due at once
    s.request("A", 2, _build(6), urgent=False, now=2.0)
    assert s.next_due() == 2.0


def test_one_write_in_flight_per_session_and_newer_requests_wait_for_it() -> None:
    s = DebounceSchedule(1.0, limit=8)
    s.request("A", 1, _build(1), urgent=True, now=0.0)
    a1 = _start(s, 0.0)
    # While A's write is in flight, urgent requests for A coalesce and wait for it; B goes on.
    s.request("A", 1, _build(2), urgent=True, now=0.1)
    s.request("A", 1, _build(3), urgent=True, now=0.2)
    s.request("B", 1, _build(4), urgent=True, now=0.2)
    assert len(s) == 2 and s.in_flight == 1
    b = _start(s, 0.2)
    assert b.code == "B" and s.pop_due(5.0) is None and s.next_due() is None
    assert not s.finish(a1, now=0.3)
    assert s.next_due() == 0.1  # the first urgent request's due time (never postponed)
    a2 = _start(s, 0.3)
    assert (a2.code, a2.build()) == ("A", (b"", 3, 0)) and a2.started == 0.3
    assert s.in_flight == 2 and len(s) == 0
    s.finish(a2, now=0.4)
    s.finish(b, now=0.4)
    assert s.in_flight == 0 and s.next_due() is None


def test_limit_bounds_the_writes_in_flight() -> None:
    s = DebounceSchedule(0.0, limit=2)
    for code in "ABC":
        s.request(code, 1, _build(0), urgent=True, now=0.0)
    first, second = _start(s, 0.0), _start(s, 0.0)
    assert s.in_flight == 2 and len(s) == 1
    assert s.pop_due(0.0) is None and s.next_due() is None  # full: only a finish changes that
    s.finish(first, now=1.0)
    assert s.next_due() == 0.0 and _start(s, 1.0).code == "C"
    assert {first.code, second.code} == {"A", "B"}


def test_a_failure_pauses_every_start_and_writes_failing_together_back_off_once() -> None:
    s = DebounceSchedule(0.0, limit=8)
    for code in "ABC":
        s.request(code, 1, _build(0), urgent=True, now=0.0)
    a, b, c = (_start(s, 0.0) for _ in range(3))
    # A fails first: news, the caller decides a back-off.
    assert s.finish(a, now=0.5, failed=True)
    s.pause_until(1.5, now=0.5)
    s.request("D", 1, _build(1), urgent=True, now=0.6)
    assert s.pop_due(1.4) is None and s.next_due() == 1.5  # D waits for the pause too
    # B and C started before that back-off was decided: the same outage, no further back-off.
    assert not s.finish(b, now=0.7, failed=True)
    assert s.finish(c, now=0.8) is False  # C went through
    assert len(s) == 3  # A and B to retry, D new
    retried = [_start(s, 1.5) for _ in range(3)]
    assert sorted(item.code for item in retried) == ["A", "B", "D"]
    # A write started after the pause that fails again is news: the back-off grows.
    assert s.finish(retried[0], now=2.1, failed=True)


def test_a_forgotten_session_is_not_retried_and_its_next_write_waits_for_the_old_one() -> None:
    s = DebounceSchedule(0.0, limit=8)
    s.request("A", 1, _build(1), urgent=True, now=0.0)
    old = _start(s, 0.0)
    s.forget("A")  # the session closed while its write was in flight
    s.request("A", 2, _build(2), urgent=True, now=0.1)  # it came back (a takeover) meanwhile
    assert s.pop_due(0.1) is None  # never two writes of one session at once
    assert s.finish(old, now=0.2, failed=True)  # Redis failed: back off, but no retry
    item = _start(s, 0.2)
    assert (item.epoch, item.build()) == (2, (b"", 2, 0))
    s.finish(item, now=0.3)
    assert len(s) == 0 and s.in_flight == 0  # the failed old write was not requeued


requests = st.lists(
    st.tuples(st.floats(min_value=0, max_value=0.4), st.sampled_from("ABC"), st.booleans()),
    min_size=1, max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(requests, st.sampled_from([0.0, 0.25, 0.5]))
def test_schedule_properties(reqs: list[tuple[float, str, bool]], interval: float) -> None:
    """Simulate a writer that writes whatever is due (instantly). Then: every session's last
    request is written; nothing is written more often than requested; two writes of a session
    closer than ``interval`` only happen when an urgent request came in between."""
    s = DebounceSchedule(interval)
    now = 0.0
    times: list[float] = []
    for gap, _, _ in reqs:
        now += gap
        times.append(now)
    written: list[tuple[float, str, int]] = []
    urgent_at: dict[str, list[float]] = {}

    def drain_until(limit: float) -> None:
        for _ in range(1000):
            due = s.next_due()
            if due is None or due > limit:
                return
            item = s.pop_due(due)
            assert item is not None
            written.append((due, item.code, item.build()[1]))
            s.finish(item, now=due)

    for i, ((_, code, urgent), t) in enumerate(zip(reqs, times, strict=True)):
        drain_until(t)
        s.request(code, 1, _build(i), urgent=urgent, now=t)
        if urgent:
            urgent_at.setdefault(code, []).append(t)
    drain_until(float("inf"))
    assert len(s) == 0 and len(written) <= len(reqs)
    for code in "ABC":
        mine = [w for w in written if w[1] == code]
        asked = [i for i, (_, c, _) in enumerate(reqs) if c == code]
        assert [w[2] for w in mine][-1:] == asked[-1:]
        for (t0, _, _), (t1, _, _) in itertools.pairwise(mine):
            assert t1 >= t0
            if t1 - t0 < interval - 1e-9:
                assert any(t0 <= u <= t1 for u in urgent_at.get(code, []))


@settings(max_examples=200, deadline=None)
@given(requests, st.lists(st.floats(min_value=0, max_value=0.3), min_size=1, max_size=10),
       st.sampled_from([1, 2, 3]), st.sampled_from([0.0, 0.25]))
def test_schedule_properties_with_writes_in_flight(
    reqs: list[tuple[float, str, bool]], durations: list[float], limit: int, interval: float
) -> None:
    """A writer whose writes take time (``durations``, cycled), at most ``limit`` at once. Then:
    never more than ``limit`` in flight, never two of one session; each session's writes carry
    ever newer builds; every session's last request is written."""
    s = DebounceSchedule(interval, limit=limit)
    flying: list[tuple[float, Due]] = []  # (ends at, write)
    stored: dict[str, list[int]] = {}
    cycle = itertools.cycle(durations)
    clock = [0.0]  # the simulation's time: events are processed in time order

    def run_until(limit_time: float) -> None:
        for _ in range(10_000):
            due = s.next_due()
            start = None if due is None else max(due, clock[0])
            end = min((f[0] for f in flying), default=math.inf)
            if flying and end <= limit_time and (start is None or end <= start):
                flying.sort(key=lambda f: f[0])
                clock[0], item = flying.pop(0)
                s.finish(item, now=clock[0])
                stored.setdefault(item.code, []).append(item.build()[1])
                continue
            if start is None or start > limit_time:
                return
            clock[0] = now = start
            item = s.pop_due(now)
            assert item is not None
            assert item.code not in {f[1].code for f in flying}
            flying.append((now + next(cycle), item))
            assert len(flying) <= limit and s.in_flight == len(flying)
        raise AssertionError("did not settle")

    builds: dict[str, int] = {}
    now = 0.0
    for i, (gap, code, urgent) in enumerate(reqs):
        now += gap
        run_until(now)
        clock[0] = now
        builds[code] = i
        s.request(code, 1, _build(i), urgent=urgent, now=now)
    run_until(math.inf)
    assert len(s) == 0 and s.in_flight == 0
    for code, last in builds.items():
        seqs = stored[code]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        assert seqs[-1] == last


# ------------------------------------------------------------------------------ trio writer

@pytest.fixture
def virtual_clock() -> trio.testing.MockClock:
    # Not autojump_threshold=0: a Redis call runs on a thread, and the loop looks idle while it
    # does; a zero threshold would jump virtual time during every call. 10 ms of real idleness
    # is far above a loopback round trip.
    return trio.testing.MockClock(autojump_threshold=0.01)


async def _metronome() -> None:
    """Keeps a deadline near: if a Redis call ever stalls longer than the autojump threshold,
    virtual time advances by one beat, never straight to the test's ``fail_after`` deadline."""
    for _ in range(100_000):
        await trio.sleep(0.25)


class Builds:
    """A fake build function per session: counts calls and their (virtual) times."""

    def __init__(self) -> None:
        self.seq = 0
        self.times: list[float] = []
        self.sizes: list[int] = []

    def __call__(self) -> tuple[bytes, int, int]:
        data = f"state at seq {self.seq}".encode()
        self.times.append(trio.current_time())
        self.sizes.append(len(data))
        return data, self.seq, self.seq * 10


@pytest.mark.redis
async def test_debounced_writes_on_a_virtual_clock(
    virtual_clock: trio.testing.MockClock, store: RedisStore, nursery: trio.Nursery
) -> None:
    nursery.start_soon(_metronome)
    writer = Snapshotter(store, interval=0.5)
    build = Builds()
    with trio.fail_after(60):
        lease = await store.acquire("DEBO", "node-a", 60_000)
        assert lease is not None
        await nursery.start(writer.run)
        start = trio.current_time()
        for seq in range(40):  # an answer every 50 ms for 2 s of a question
            build.seq = seq
            writer.request("DEBO", lease.epoch, build, urgent=False)
            await trio.sleep(0.05)
        await writer.flush()
        elapsed = trio.current_time() - start
        snap = await store.load_snapshot("DEBO")
    # 40 requests over ~2 s at one write per 0.5 s: the leading write plus one per interval.
    assert 4 <= len(build.times) <= elapsed / 0.5 + 2, build.times
    gaps = [b - a for a, b in zip(build.times, build.times[1:], strict=False)]
    assert min(gaps) >= 0.5 - 1e-9, gaps
    assert snap is not None and (snap.seq, snap.watermark) == (39, 390)
    assert snap.data == b"state at seq 39"
    stats = writer.stats()
    assert (stats.writes, stats.failures, stats.pending) == (len(build.times), 0, 0)
    assert stats.bytes_written == sum(build.sizes)

    # A phase change right after a write is not debounced: it is built at once.
    build.seq = 40
    before = trio.current_time()
    writer.request("DEBO", lease.epoch, build, urgent=True)
    with trio.fail_after(60):
        await writer.flush()
    assert build.times[-1] == before
    snap = await store.load_snapshot("DEBO")
    assert snap is not None and snap.seq == 40


@pytest.mark.redis
async def test_stale_epoch_fences_only_that_session(store: RedisStore,
                                                    nursery: trio.Nursery) -> None:
    fenced: list[str] = []
    writer = Snapshotter(store, interval=0.0, on_fenced=fenced.append)
    old_build, other_build = Builds(), Builds()
    with trio.fail_after(10):
        await store.acquire("FNCE", "node-b", 60_000, at_least=3)  # node-b took over at 3
        await store.acquire("FINE", "node-a", 60_000)
        await nursery.start(writer.run)
        writer.request("FNCE", 2, old_build, urgent=True)
        writer.request("FINE", 1, other_build, urgent=True)
        await writer.flush()
        assert await store.load_snapshot("FNCE") is None
        assert await store.load_snapshot("FINE") is not None
    assert fenced == ["FNCE"]
    stats = writer.stats()
    assert (stats.stale, stats.writes, stats.failures, stats.pending) == (1, 1, 0, 0)


@pytest.mark.redis
async def test_build_errors_are_counted_and_the_writer_goes_on(
    store: RedisStore, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> tuple[bytes, int, int]:
        raise RuntimeError("bug in the caller")

    writer = Snapshotter(store, interval=0.0)
    with trio.fail_after(10):
        await nursery.start(writer.run)
        writer.request("BRKN", 1, broken, urgent=True)
        writer.request("GOOD", 1, Builds(), urgent=True)
        await writer.flush()
        assert await store.load_snapshot("GOOD") is not None
    assert (writer.stats().build_errors, writer.stats().writes) == (1, 1)
    assert "bug in the caller" in caplog.text


def _failed_at_least(rec: Recording, n: int) -> bool:
    return rec.count("save_snapshot", ok=False) >= n


@pytest.mark.redis
async def test_redis_down_then_back(proxied: RedisStore, proxy: RedisProxy, store: RedisStore,
                                    nursery: trio.Nursery) -> None:
    rec = Recording(proxied)
    writer = Snapshotter(rec, interval=0.05, backoff_initial=0.01, backoff_max=0.05)
    build = Builds()
    with trio.fail_after(10):
        await nursery.start(writer.run)
        build.seq = 1
        writer.request("DOWN", 1, build, urgent=True)
        await writer.flush()
        proxy.cut()
        for seq in range(2, 6):
            build.seq = seq
            writer.request("DOWN", 1, build, urgent=seq % 2 == 0)  # never raises, never blocks
            await rec.wait_until(functools.partial(_failed_at_least, rec, seq - 1))
        stats = writer.stats()
        assert not stats.redis_up and stats.failures >= 4 and stats.pending == 1
        assert stats.last_error is not None and "save_snapshot" in stats.last_error
        snap = await store.load_snapshot("DOWN")
        assert snap is not None and snap.seq == 1  # Redis kept the last good one

        proxy.restore()
        await writer.flush()
        snap = await store.load_snapshot("DOWN")
    assert snap is not None and snap.seq == 5  # the retry carried the newest state
    stats = writer.stats()
    assert stats.redis_up and stats.pending == 0 and stats.writes == 2


@pytest.mark.redis
async def test_forget_drops_a_pending_write(store: RedisStore, nursery: trio.Nursery) -> None:
    writer = Snapshotter(store, interval=60.0)
    build = Builds()
    with trio.fail_after(10):
        await nursery.start(writer.run)
        writer.request("FRGT", 1, build, urgent=True)
        await writer.flush()
        writer.request("FRGT", 1, build, urgent=False)  # due in 60 s
        assert writer.stats().pending == 1
        writer.forget("FRGT")
        await writer.flush()
    assert writer.stats().pending == 0 and len(build.times) == 1
