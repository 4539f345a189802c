"""The snapshotter writes many sessions at once (issue 24): a session whose commit or Redis write
stalls delays no other session's snapshot, a session never has two writes in flight, the bound
holds, a failure backs every write off, ``flush`` waits for what is in flight, and a stale
epoch still fences.

Most tests use ``MemoryStore``, an in-memory ``SnapshotStore`` whose saves a test can hold per
session, on trio's autojump clock (no threads, so virtual time is exact); the fencing test goes
through the real Redis. Nothing waits for a condition by sleeping: tests wait on events under
``trio.fail_after`` (virtual seconds on the autojump clock: a hang fails at once).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from pubquiz_engine.errors import StaleEpoch
from pubquiz_engine.snapshot import Snapshotter
from pubquiz_engine.snapshot.records import CoordinationUnavailable
from pubquiz_engine.snapshot.redis_store import RedisStore


@attrs.define
class Saved:
    code: str
    epoch: int
    seq: int
    at: float


class MemoryStore:
    """A ``SnapshotStore`` in memory. ``hold(code)``: that session's saves wait until
    ``release(code)``; ``down``: saves take ``latency`` then fail as Redis unreachable; a save
    with an epoch below the highest one stored for its session is refused as stale."""

    def __init__(self, latency: float | Callable[[], float] = 0.0) -> None:
        self.latency = latency if callable(latency) else lambda: latency
        self.down = False
        self.saved: list[Saved] = []
        self.attempts: list[tuple[str, float]] = []  # (code, start) of every save
        self.flying: dict[str, int] = {}
        self.max_flying = 0
        self.max_flying_per_session = 0
        self._held: dict[str, trio.Event] = {}
        self._changed = trio.Event()

    def hold(self, code: str) -> None:
        self._held[code] = trio.Event()

    def release(self, code: str) -> None:
        self._held.pop(code).set()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait (without sleeping) until ``condition()`` holds after some save starts or ends."""
        while not condition():
            await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def save_snapshot(self, code: str, epoch: int, data: bytes, seq: int,
                            watermark: int) -> None:
        self.attempts.append((code, trio.current_time()))
        self.flying[code] = self.flying.get(code, 0) + 1
        self.max_flying = max(self.max_flying, sum(self.flying.values()))
        self.max_flying_per_session = max(self.max_flying_per_session, self.flying[code])
        self._signal()
        try:
            held = self._held.get(code)
            if held is not None:
                await held.wait()
            await trio.sleep(self.latency())
            if self.down:
                raise CoordinationUnavailable("save_snapshot: connection refused")
            newest = max((s.epoch for s in self.saved if s.code == code), default=0)
            if epoch < newest:
                raise StaleEpoch(f"snapshot of {code} refused: epoch {epoch} < {newest}")
            self.saved.append(Saved(code, epoch, seq, trio.current_time()))
        finally:
            self.flying[code] -= 1
            self._signal()

    def seqs(self, code: str) -> list[int]:
        return [s.seq for s in self.saved if s.code == code]


class Session:
    """A session's build function: its seq goes up with every change."""

    def __init__(self, seq: int = 1) -> None:
        self.seq = seq
        self.builds = 0

    def change(self) -> Session:
        self.seq += 1
        return self

    def __call__(self) -> tuple[bytes, int, int]:
        self.builds += 1
        return f"state {self.seq}".encode(), self.seq, self.seq


def _written(store: MemoryStore, code: str) -> Callable[[], bool]:
    return lambda: bool(store.seqs(code))


async def test_a_stalled_commit_wait_does_not_delay_another_sessions_urgent_write(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Fails on the single writer (main at f45707c): it awaits SLOW's durable() forever."""
    store = MemoryStore()

    async def durable(code: str) -> bool:
        if code == "SLOW":
            await trio.sleep_forever()  # its database commit never comes
        return True

    writer = Snapshotter(store, interval=0.5, durable=durable)
    await nursery.start(writer.run)
    writer.request("SLOW", 1, Session(), urgent=True)
    await trio.testing.wait_all_tasks_blocked()  # SLOW's write is waiting for its commit
    writer.request("FAST", 1, Session(), urgent=True)
    with trio.fail_after(1):
        await store.wait_until(_written(store, "FAST"))
    assert store.seqs("SLOW") == [] and writer.stats().in_flight == 1


async def test_a_hung_save_does_not_delay_another_sessions_urgent_write(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Fails on the single writer too: it waits for HUNG's save before writing FAST."""
    store = MemoryStore()
    store.hold("HUNG")
    writer = Snapshotter(store, interval=0.5)
    await nursery.start(writer.run)
    writer.request("HUNG", 1, Session(), urgent=True)
    with trio.fail_after(1):
        await store.wait_until(lambda: store.flying.get("HUNG") == 1)
        writer.request("FAST", 1, Session(), urgent=True)
        await store.wait_until(_written(store, "FAST"))
    assert store.seqs("HUNG") == []
    store.release("HUNG")
    with trio.fail_after(1):
        await writer.flush()
    assert store.seqs("HUNG") == [1]


async def test_one_write_per_session_in_flight_in_order_and_coalesced(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryStore()
    store.hold("A")
    writer = Snapshotter(store, interval=0.5)
    a = Session()
    await nursery.start(writer.run)
    writer.request("A", 1, a, urgent=True)
    with trio.fail_after(1):
        await store.wait_until(lambda: store.flying.get("A") == 1)
    for _ in range(3):  # three phase changes while seq 1 is being written
        writer.request("A", 1, a.change(), urgent=True)
        await trio.testing.wait_all_tasks_blocked()
    stats = writer.stats()
    assert (stats.in_flight, stats.pending, a.builds) == (1, 1, 1)  # waiting, not building
    store.release("A")
    with trio.fail_after(1):
        await writer.flush()
    # The three coalesced into one write of the newest state, after the first.
    assert store.seqs("A") == [1, 4] and a.builds == 2
    assert store.max_flying_per_session == 1


async def test_many_sessions_with_random_latencies_store_each_sessions_seqs_in_order(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Random save latencies and requests over 20 sessions, a bound of 4: never two writes of
    one session at once, never more than 4 in all, every session's seqs stored in increasing
    order, ending with its last state."""
    rng = random.Random(24)
    store = MemoryStore(latency=lambda: rng.uniform(0.0, 0.05))
    writer = Snapshotter(store, interval=0.02, concurrency=4)
    sessions = {f"S{i:02}": Session() for i in range(20)}
    await nursery.start(writer.run)
    for _ in range(400):
        code = rng.choice(sorted(sessions))
        writer.request(code, 1, sessions[code].change(), urgent=rng.random() < 0.3)
        await trio.sleep(rng.uniform(0.0, 0.01))
        assert writer.stats().in_flight <= 4
    with trio.fail_after(10):
        await writer.flush()
    assert store.max_flying <= 4 and store.max_flying_per_session == 1
    assert store.max_flying == 4  # the bound was reached, so it was exercised
    for code, session in sessions.items():
        seqs = store.seqs(code)
        assert seqs == sorted(set(seqs)) and seqs[-1] == session.seq, (code, seqs)


async def test_the_bound_holds_with_every_save_blocked(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryStore()
    codes = ["B0", "B1", "B2", "B3"]
    for code in codes:
        store.hold(code)
    sessions = {code: Session() for code in codes}
    writer = Snapshotter(store, interval=0.5, concurrency=3)
    await nursery.start(writer.run)
    for code in codes:
        writer.request(code, 1, sessions[code], urgent=True)
    with trio.fail_after(1):
        await store.wait_until(lambda: sum(store.flying.values()) == 3)
    await trio.testing.wait_all_tasks_blocked()
    stats = writer.stats()
    assert (sum(store.flying.values()), stats.in_flight, stats.pending) == (3, 3, 1)
    assert sessions["B3"].builds == 0  # not even built: it waits for a place
    store.release("B0")
    with trio.fail_after(1):
        await store.wait_until(lambda: store.flying.get("B3") == 1)
    await trio.testing.wait_all_tasks_blocked()
    assert writer.stats().in_flight == 3 and store.max_flying == 3
    for code in codes[1:]:
        store.release(code)
    with trio.fail_after(1):
        await writer.flush()
    assert all(store.seqs(code) == [1] for code in codes)


async def test_a_failure_backs_off_every_session_once(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """Redis down: the writes that fail together pause every start (a new session's too) for
    one back-off, doubling per round, not per failed write; once Redis is back all are written."""
    store = MemoryStore(latency=0.1)
    store.down = True
    writer = Snapshotter(store, interval=0.5, concurrency=8, backoff_initial=1.0,
                         backoff_max=60.0, rng=random.Random(1))
    await nursery.start(writer.run)
    start = trio.current_time()
    codes = [f"D{i}" for i in range(5)]
    for code in codes:
        writer.request(code, 1, Session(), urgent=True)
    with trio.fail_after(1):  # the first round: all 5 at once, failing together at +0.1
        await store.wait_until(lambda: writer.stats().failures == 5)
    writer.request("NEW", 1, Session(), urgent=True)  # due now, but Redis is backed off
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(code for code, _ in store.attempts) == codes
    with trio.fail_after(30):  # rounds 2 and 3
        await store.wait_until(lambda: writer.stats().failures == 5 + 6 + 6)
    rounds = sorted({round(at - start, 6) for _, at in store.attempts})
    assert len(rounds) == 3 and rounds[0] == 0.0
    # Round 2 after one back-off (1 s, minus up to 20% jitter) from the failures at 0.1;
    # round 3 after the doubled one (2 s) from round 2's failures. With the back-off grown
    # once per failed write, round 3 would wait 2**6 s.
    assert 0.1 + 0.8 <= rounds[1] <= 0.1 + 1.0, rounds
    assert rounds[1] + 0.1 + 1.6 <= rounds[2] <= rounds[1] + 0.1 + 2.0, rounds
    assert sorted(c for c, at in store.attempts if round(at - start, 6) == rounds[1]) == sorted(
        [*codes, "NEW"])
    store.down = False
    with trio.fail_after(30):
        await writer.flush()
    assert all(store.seqs(code) == [1] for code in [*codes, "NEW"])
    stats = writer.stats()
    assert stats.redis_up and (stats.pending, stats.in_flight) == (0, 0)


async def test_flush_waits_for_a_write_in_flight(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryStore()
    store.hold("F")
    writer = Snapshotter(store, interval=0.5)
    await nursery.start(writer.run)
    writer.request("F", 1, Session(), urgent=True)
    with trio.fail_after(1):
        await store.wait_until(lambda: store.flying.get("F") == 1)
    flushed = trio.Event()

    async def flush() -> None:
        await writer.flush()
        flushed.set()

    nursery.start_soon(flush)
    await trio.testing.wait_all_tasks_blocked()
    assert not flushed.is_set() and writer.stats().pending == 0  # nothing pending, one in flight
    store.release("F")
    with trio.fail_after(1):
        await flushed.wait()
    assert store.seqs("F") == [1]


async def test_settle_waits_for_a_save_under_way_then_nothing_more_is_stored(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """An ended session deletes its snapshot after ``settle``: a save still under way must
    have returned by then (stored after the delete, it would leave an orphan)."""
    store = MemoryStore()
    store.hold("END")
    writer = Snapshotter(store, interval=0.5)
    await nursery.start(writer.run)
    session = Session()
    writer.request("END", 1, session, urgent=True)
    with trio.fail_after(1):
        await store.wait_until(lambda: store.flying.get("END") == 1)
    writer.request("END", 1, session.change(), urgent=True)  # waits behind the one in flight
    settled = trio.Event()

    async def settle() -> None:
        await writer.settle("END")
        settled.set()

    nursery.start_soon(settle)
    await trio.testing.wait_all_tasks_blocked()
    assert not settled.is_set()  # the save under way has not returned
    store.release("END")
    with trio.fail_after(1):
        await settled.wait()
    assert store.seqs("END") == [1]  # the one under way, never the forgotten request
    with trio.fail_after(1):
        await writer.flush()
    assert store.seqs("END") == [1] and writer.stats().in_flight == 0


async def test_a_forgotten_write_waiting_for_its_commit_stores_nothing(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """``settle`` does not wait for a commit (it may never come); the write that waited for
    it sees that its session left and stores nothing."""
    store = MemoryStore()
    commit = trio.Event()

    async def durable(code: str) -> bool:
        await commit.wait()
        return True

    writer = Snapshotter(store, interval=0.5, durable=durable)
    await nursery.start(writer.run)
    writer.request("GONE", 1, Session(), urgent=True)
    await trio.testing.wait_all_tasks_blocked()  # waiting for its commit
    with trio.fail_after(1):
        await writer.settle("GONE")  # returns at once: no save under way
    commit.set()
    with trio.fail_after(1):
        await writer.flush()
    assert store.attempts == [] and writer.stats().in_flight == 0


class HeldSaves:
    """A real store whose saves of one session wait until released (Redis slow for it)."""

    def __init__(self, inner: RedisStore, code: str) -> None:
        self.inner = inner
        self.code = code
        self.entered = trio.Event()
        self.open = trio.Event()

    async def save_snapshot(self, code: str, epoch: int, data: bytes, seq: int,
                            watermark: int) -> None:
        if code == self.code:
            self.entered.set()
            await self.open.wait()
        await self.inner.save_snapshot(code, epoch, data, seq, watermark)


@pytest.mark.redis
async def test_stale_epoch_fences_while_another_write_hangs(store: RedisStore,
                                                            nursery: trio.Nursery) -> None:
    fenced, written = trio.Event(), trio.Event()
    fenced_codes: list[str] = []

    def on_fenced(code: str) -> None:
        fenced_codes.append(code)
        fenced.set()

    held = HeldSaves(store, "HANG")
    writer = Snapshotter(held, interval=0.0, on_fenced=on_fenced,
                         on_written=lambda code, seq: written.set())
    with trio.fail_after(10):
        await store.acquire("HANG", "node-a", 60_000)
        await store.acquire("FNCE", "node-b", 60_000, at_least=3)  # node-b took over at 3
        await store.acquire("FINE", "node-a", 60_000)
        await nursery.start(writer.run)
        writer.request("HANG", 1, Session(), urgent=True)
        await held.entered.wait()
        writer.request("FNCE", 2, Session(), urgent=True)
        writer.request("FINE", 1, Session(), urgent=True)
        await fenced.wait()
        await written.wait()
        assert fenced_codes == ["FNCE"] and await store.load_snapshot("FNCE") is None
        assert await store.load_snapshot("FINE") is not None
        assert await store.load_snapshot("HANG") is None and writer.stats().in_flight == 1
        held.open.set()
        await writer.flush()
        snap = await store.load_snapshot("HANG")
    assert snap is not None and snap.seq == 1
    stats = writer.stats()
    assert (stats.stale, stats.writes, stats.failures, stats.pending) == (1, 2, 0, 0)
