"""The snapshot writer: urgent writes at once, the rest at most once per interval per session,
many sessions at once.

Sessions call ``Snapshotter.request(code, epoch, build, urgent)``: urgent on a phase change, not
urgent on every other change (an answer during a question). One dispatcher task (``run``) starts
each write that falls due as a task of its own, through a ``SnapshotStore`` (in production
``RedisStore``), so one session's write never waits for another's.

Rules this module keeps:

1. ``request`` never blocks and never raises: a session must not stop, or even wait, because
   Redis is down or slow. It only records "this session is dirty" and wakes the dispatcher.
2. Writes of different sessions run concurrently, bounded: at most one write per session in
   flight (build, durable wait and save), so a session's snapshots are stored in the order they
   were built and never older after newer; a request that comes in meanwhile waits for it and
   is coalesced with later ones (rule 4). At most ``concurrency`` writes are in flight in all
   (it bounds the built states held in memory and the tasks; Redis round trips are bounded
   further by the store's threads, see ``redis_store``). A session whose commit or save stalls
   holds one place, not everyone's phase changes.
3. The state is built when it is written, not when it is requested: ``build()`` runs on the trio
   thread just before the write (so it sees a consistent state - the session mutates its state
   only on that thread, never across an await) and returns the newest state. Ten answers in one
   interval cost one build and one write, and the write is never older than the last request.
4. Debouncing is a throttle, not a postponement: a non-urgent request is written at
   ``max(now, last write of that session + interval)``; later requests never push it back, so a
   busy question is snapshotted every ``interval``, not only once it goes quiet. An urgent request
   is due at once (or as soon as the session's write in flight ends). Every request is
   eventually written (or superseded by a newer one).
5. A failed write is retried (re-built, so with the newest state) after a back-off shared by
   every session: if Redis is down it is down for all of them, so one failure pauses the start
   of every write (those in flight finish) and the writes that fail together count as one
   failure of the back-off, not ``concurrency`` of them. Failures are counted, logged on the
   transitions, and shown by ``stats()``.
6. A write refused as stale (``errors.StaleEpoch``) is not retried: the session's pending request
   is dropped and ``on_fenced(code)`` tells the server to stop serving it.
7. With ``durable``, a built state is written only once ``durable(code)`` says what it holds is
   stored elsewhere first (the server: the database commit of the session's records so far),
   so a snapshot never holds a change the database refused (output commit, see
   ``server/session.py``); ``False`` drops the write. The wait holds the session's place
   (rule 2): the commit is one group commit for every session, so those places free together.
8. A session that leaves the node is forgotten; a write of it in flight then stores nothing
   once its ``durable`` wait ends, and ``settle(code)`` returns once a save already under way
   has returned: an ended session deletes its snapshot after that, so no late write of this
   node leaves a snapshot without a lease (an orphan to adopt).

The scheduling decisions are the pure ``DebounceSchedule`` (time is an argument; in flight,
the bound and the back-off's pause included), tested without a clock; ``Snapshotter`` is the
thin trio shell around it.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Awaitable, Callable

import attrs
import trio

from pubquiz_engine.errors import StaleEpoch
from pubquiz_engine.snapshot._backoff import Backoff, FailureLog
from pubquiz_engine.snapshot.records import CoordinationError, SnapshotStore

log = logging.getLogger(__name__)

#: Returns the session state to store: (data, seq, watermark).
Build = Callable[[], tuple[bytes, int, int]]
#: After a build, waits until what that state holds is durable elsewhere (the database):
#: True to write it, False to drop it (it never will be: the session is fenced).
Durable = Callable[[str], Awaitable[bool]]


@attrs.define
class _Pending:
    epoch: int
    build: Build
    due: float
    token: int  # identifies this entry's heap item; older heap items for the code are skipped


@attrs.frozen
class Due:
    """A write the schedule says to do now. It is in flight from ``pop_due`` until ``finish``."""

    code: str
    epoch: int
    build: Build
    started: float  # when ``pop_due`` handed it out


class DebounceSchedule:
    """Which sessions to write next, and when (pure: ``now`` is always an argument).

    At most one pending entry per session, ordered by due time in a heap (stale heap items -
    superseded by a newer due time for the same session - are skipped when they surface). At
    most one write per session in flight, and at most ``limit`` in all: a pending entry of a
    session whose write is in flight leaves the heap when it surfaces and goes back in when that
    write finishes (rule 2 of the module: never two writes of one session at once, never out
    of order). ``pause_until`` holds every start back (the shared back-off, rule 5).
    """

    def __init__(self, interval: float, *, limit: int = 1) -> None:
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        if not limit >= 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.interval = interval
        self.limit = limit
        self._pending: dict[str, _Pending] = {}
        self._last_start: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._tokens = 0
        # Sessions with a write in flight -> whether it was forgotten meanwhile (then a failure
        # is not retried: the session is gone, or fenced at that epoch).
        self._flying: dict[str, bool] = {}
        self._paused_until = -math.inf
        self._paused_at = -math.inf  # when the current back-off was decided

    def __len__(self) -> int:
        """Sessions waiting for a write (a session in flight with a newer request counts)."""
        return len(self._pending)

    def __contains__(self, code: object) -> bool:
        return code in self._pending

    @property
    def in_flight(self) -> int:
        """Writes handed out by ``pop_due`` and not finished yet."""
        return len(self._flying)

    def forgotten(self, code: str) -> bool:
        """Whether ``code``'s write in flight was forgotten since it started (its session
        left this node: storing it now would only leave a stale snapshot behind)."""
        return self._flying.get(code, False)

    def _push(self, code: str, entry: _Pending, due: float) -> None:
        self._tokens += 1
        entry.due, entry.token = due, self._tokens
        heapq.heappush(self._heap, (due, self._tokens, code))

    def request(self, code: str, epoch: int, build: Build, *, urgent: bool, now: float) -> None:
        """Note that ``code`` needs writing (see the module rules for when it falls due)."""
        last = self._last_start.get(code)
        due = now if urgent or last is None else max(now, last + self.interval)
        entry = self._pending.get(code)
        if entry is None:
            entry = _Pending(epoch, build, due, 0)
            self._pending[code] = entry
            self._push(code, entry, due)
            return
        # The newest request carries the newest build and epoch; the due time only moves
        # earlier (rule 4: never postponed by a later request).
        entry.epoch, entry.build = epoch, build
        if due < entry.due:
            self._push(code, entry, due)

    def next_due(self) -> float | None:
        """When ``pop_due`` can next hand out a write: ``None`` while nothing can start (nothing
        pending but what waits for its session's write in flight, or ``limit`` in flight: a
        ``finish`` changes that). Never earlier than a pause's end."""
        if len(self._flying) >= self.limit:
            return None
        self._drop_unstartable_heads()
        return max(self._heap[0][0], self._paused_until) if self._heap else None

    def pop_due(self, now: float) -> Due | None:
        """The earliest pending write that can start at ``now``; it is in flight (started at
        ``now``) until ``finish``."""
        if len(self._flying) >= self.limit or now < self._paused_until:
            return None
        self._drop_unstartable_heads()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, code = heapq.heappop(self._heap)
        entry = self._pending.pop(code)
        self._last_start[code] = now
        self._flying[code] = False
        return Due(code, entry.epoch, entry.build, now)

    def finish(self, item: Due, *, now: float, failed: bool = False) -> bool:
        """``item``'s write ended. A newer request for its session that waited becomes
        startable (due when it was due).

        ``failed``: write the session again, due at ``now`` but behind any pause (re-built, so
        with the newest state; a newer request that arrived meanwhile keeps its build, due no
        later than ``now``), unless it was forgotten meanwhile. The result then says whether
        the caller should back off further (``pause_until``): ``True`` when the write started
        after the current back-off was decided, ``False`` when it started before (it failed in
        the outage already paused for: N writes failing together back off once, not N times).
        """
        forgotten = self._flying.pop(item.code)
        entry = self._pending.get(item.code)
        if failed and not forgotten:
            if entry is None:
                self._pending[item.code] = entry = _Pending(item.epoch, item.build, now, 0)
            entry.due = min(entry.due, now)
        if entry is not None:
            # Its heap item (if any) left when it surfaced while this write was in flight.
            self._push(item.code, entry, entry.due)
        return failed and item.started > self._paused_at

    def pause_until(self, until: float, *, now: float) -> None:
        """Start no write before ``until`` (a back-off decided at ``now``). In-flight writes go
        on; ``hurry`` does not lift it."""
        self._paused_until, self._paused_at = until, now

    def hurry(self, *, now: float) -> None:
        """Make every pending write due at ``now`` (a flush before shutdown)."""
        for code, entry in self._pending.items():
            if entry.due > now:
                self._push(code, entry, now)

    def forget(self, code: str, *, below_epoch: int | None = None) -> None:
        """Drop the session's pending write and its history (the session closed), or with
        ``below_epoch`` only a pending write whose epoch is lower (we were fenced at it).
        A write in flight goes on (it cannot be taken back) but is not retried if it fails,
        and the session's next write still waits for it (never two at once)."""
        entry = self._pending.get(code)
        if below_epoch is None:
            self._pending.pop(code, None)
            self._last_start.pop(code, None)
            if code in self._flying:
                self._flying[code] = True
        elif entry is not None and entry.epoch < below_epoch:
            del self._pending[code]

    def _drop_unstartable_heads(self) -> None:
        """Pop heap items that are stale (superseded) or whose session has a write in flight
        (``finish`` pushes that session's entry again)."""
        heap = self._heap
        while heap:
            _, token, code = heap[0]
            entry = self._pending.get(code)
            if entry is not None and entry.token == token and code not in self._flying:
                return
            heapq.heappop(heap)


@attrs.frozen
class SnapshotterStats:
    """What ``/health`` shows about snapshots."""

    pending: int  # sessions waiting for a write (not counting writes in flight)
    in_flight: int  # writes started and not finished (building, awaiting durable, or saving)
    writes: int  # snapshots stored
    failures: int  # write attempts that failed (Redis down, slow, or refusing)
    stale: int  # writes refused because another node has a higher epoch
    build_errors: int  # build() raised (a bug in the caller; logged with its traceback)
    bytes_written: int
    last_error: str | None
    redis_up: bool  # whether the last write attempt reached Redis


#: Default of ``concurrency``: sessions written at once (the engine's ``snapshot_concurrency``).
DEFAULT_CONCURRENCY = 32


class Snapshotter:
    """Every session's snapshots, written by one task per write in flight (see the module rules).

    ``on_fenced(code)`` is called, on a writer task, when a write for ``code`` is refused as
    stale; it must not block (the server closes the session with ``CloseCode.FENCED``).
    ``on_written(code, seq)`` is called after each successful write with the seq it stored
    (the server releases durable acks that waited for the snapshot holding their question).
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        interval: float = 0.5,
        concurrency: int = DEFAULT_CONCURRENCY,
        on_fenced: Callable[[str], None] | None = None,
        on_written: Callable[[str, int], None] | None = None,
        durable: Durable | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._schedule = DebounceSchedule(interval, limit=concurrency)
        self._on_fenced = on_fenced
        self._on_written = on_written
        self._durable = durable
        self._backoff = Backoff(backoff_initial, backoff_max, rng=rng or random.Random())
        self._log = FailureLog("snapshotter", log)
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._writes = 0
        self._stale = 0
        self._build_errors = 0
        self._bytes = 0
        self._saving: set[str] = set()  # sessions whose save is under way (``settle``)

    # ------------------------------------------------------------------ sync API (never blocks)
    def request(self, code: str, epoch: int, build: Build, urgent: bool = False) -> None:
        """Ask for ``code``'s state to be written: at once if ``urgent``, else debounced."""
        self._schedule.request(code, epoch, build, urgent=urgent, now=trio.current_time())
        self._wake.set()

    def forget(self, code: str) -> None:
        """The session is gone from this node: drop its pending write, if any (a write in
        flight finishes, and is not retried)."""
        self._schedule.forget(code)
        self._wake.set()

    async def settle(self, code: str) -> None:
        """Forget ``code`` and wait until its save under way, if any, has returned: after
        this, nothing of this node stores a snapshot of ``code`` (an ended session deletes
        its snapshot after this, so a late write cannot bring it back as an orphan). A write
        still waiting for ``durable`` is not waited for: it sees that it was forgotten and
        does not save. A save is bounded by the store's call timeouts."""
        self.forget(code)
        while code in self._saving:
            await self._progress.wait()

    def stats(self) -> SnapshotterStats:
        return SnapshotterStats(
            pending=len(self._schedule),
            in_flight=self._schedule.in_flight,
            writes=self._writes,
            failures=self._log.failures,
            stale=self._stale,
            build_errors=self._build_errors,
            bytes_written=self._bytes,
            last_error=self._log.last_error,
            redis_up=self._log.redis_up,
        )

    # ------------------------------------------------------------------ async API
    async def flush(self) -> None:
        """Make every pending write due now and wait until none is pending or in flight.

        While Redis is down this waits through the retries: bound it with a deadline
        (``with trio.move_on_after(...)``), as a graceful stop does.
        """
        self._schedule.hurry(now=trio.current_time())
        self._wake.set()
        while len(self._schedule) or self._schedule.in_flight:
            await self._progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The dispatcher: starts each write that falls due as a task of its own (at most
        ``concurrency`` at once). Runs until cancelled; readiness is immediate.

        Error handling: ``CoordinationError`` from the store is counted and retried after the
        shared back-off; ``StaleEpoch`` fences the session; an exception from ``build()`` is
        logged and that request dropped. Anything else is a bug and propagates (cancelling the
        other writes in flight).
        """
        async with trio.open_nursery() as writers:
            task_status.started()
            while True:
                # A fresh event before looking at the schedule: a request (or a finished
                # write) after the look sets this one, so the wait below cannot miss it.
                self._wake = trio.Event()
                now = trio.current_time()
                while (item := self._schedule.pop_due(now)) is not None:
                    writers.start_soon(self._write, item)
                if not len(self._schedule) and not self._schedule.in_flight:
                    self._signal_progress()
                due = self._schedule.next_due()
                with trio.move_on_at(math.inf if due is None else due):
                    await self._wake.wait()

    async def _write(self, item: Due) -> None:
        """Write one snapshot, then tell the schedule (and the dispatcher) it finished."""
        failed = False
        try:
            failed = await self._attempt(item)
        finally:
            now = trio.current_time()
            if self._schedule.finish(item, now=now, failed=failed):
                self._schedule.pause_until(now + self._backoff.next_delay(), now=now)
            self._wake.set()
            self._signal_progress()

    async def _attempt(self, item: Due) -> bool:
        """Build, wait for durable, save; ``True`` if it failed and should be retried."""
        try:
            data, seq, watermark = item.build()
        except Exception:
            self._build_errors += 1
            log.exception("snapshotter: building the snapshot of %s failed", item.code)
            return False
        if self._durable is not None and not await self._durable(item.code):
            log.info("snapshotter: %s not written: its state will never be durable", item.code)
            return False
        if self._schedule.forgotten(item.code):
            return False  # the session left this node meanwhile (``settle``)
        self._saving.add(item.code)
        try:
            await self._store.save_snapshot(item.code, item.epoch, data, seq, watermark)
        except StaleEpoch as exc:
            self._stale += 1
            self._log.succeeded()  # Redis answered: it is up
            log.warning("snapshotter: %s", exc)
            self._schedule.forget(item.code, below_epoch=item.epoch + 1)
            if self._on_fenced is not None:
                self._on_fenced(item.code)
            return False
        except CoordinationError as exc:
            self._log.failed(exc)
            return True
        finally:
            self._saving.discard(item.code)
        self._writes += 1
        self._bytes += len(data)
        self._log.succeeded()
        self._backoff.reset()
        if self._on_written is not None:
            self._on_written(item.code, seq)
        return False

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = trio.Event()


__all__ = [
    "DEFAULT_CONCURRENCY",
    "Build",
    "DebounceSchedule",
    "Due",
    "Snapshotter",
    "SnapshotterStats",
]
