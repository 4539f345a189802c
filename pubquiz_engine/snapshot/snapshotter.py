"""The snapshot writer: urgent writes at once, the rest at most once per interval per session.

Sessions call ``Snapshotter.request(code, epoch, build, urgent)``: urgent on a phase change, not
urgent on every other change (an answer during a question). One writer task drains the requests
and writes through a ``SnapshotStore`` (in production ``RedisStore``).

Rules this module keeps:

1. ``request`` never blocks and never raises: a session must not stop, or even wait, because
   Redis is down or slow. It only records "this session is dirty" and wakes the writer.
2. The state is built when it is written, not when it is requested: ``build()`` runs on the trio
   thread just before the write (so it sees a consistent state - the session mutates its state
   only on that thread, never across an await) and returns the newest state. Ten answers in one
   interval cost one build and one write, and the write is never older than the last request.
3. Debouncing is a throttle, not a postponement: a non-urgent request is written at
   ``max(now, last write of that session + interval)``; later requests never push it back, so a
   busy question is snapshotted every ``interval``, not only once it goes quiet. An urgent request
   is due at once. Every request is eventually written (or superseded by a newer one).
4. A failed write is retried (re-built, so with the newest state) after a back-off shared by the
   whole writer: if Redis is down it is down for every session. Failures are counted, logged on
   the transitions, and shown by ``stats()``.
5. A write refused as stale (``errors.StaleEpoch``) is not retried: the session's pending request
   is dropped and ``on_fenced(code)`` tells the server to stop serving it.
6. With ``durable``, a built state is written only once ``durable(code)`` says what it holds is
   stored elsewhere first (the server: the database commit of the session's records so far),
   so a snapshot never holds a change the database refused (output commit, see
   ``server/session.py``); ``False`` drops the write.

The scheduling decisions are the pure ``DebounceSchedule`` (time is an argument), tested without
a clock; ``Snapshotter`` is the thin trio shell around it.
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
    """A write the schedule says to do now."""

    code: str
    epoch: int
    build: Build


class DebounceSchedule:
    """Which session to write next, and when (pure: ``now`` is always an argument).

    At most one pending entry per session, ordered by due time in a heap (stale heap items -
    superseded by a newer due time for the same session - are skipped when they surface).
    """

    def __init__(self, interval: float) -> None:
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        self.interval = interval
        self._pending: dict[str, _Pending] = {}
        self._last_start: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, code: object) -> bool:
        return code in self._pending

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
        # earlier (rule 3: never postponed by a later request).
        entry.epoch, entry.build = epoch, build
        if due < entry.due:
            self._push(code, entry, due)

    def next_due(self) -> float | None:
        """When the earliest pending write falls due (``None`` if nothing is pending)."""
        self._drop_stale_heads()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Due | None:
        """The earliest pending write if it is due at ``now``; it counts as started at ``now``."""
        self._drop_stale_heads()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, code = heapq.heappop(self._heap)
        entry = self._pending.pop(code)
        self._last_start[code] = now
        return Due(code, entry.epoch, entry.build)

    def retry(self, item: Due, *, now: float) -> None:
        """A write failed: make the session due again at ``now`` (the caller backs off first).
        A newer request that arrived meanwhile keeps its build, due no later than ``now``."""
        entry = self._pending.get(item.code)
        if entry is None:
            self._pending[item.code] = entry = _Pending(item.epoch, item.build, now, 0)
            self._push(item.code, entry, now)
        elif entry.due > now:
            self._push(item.code, entry, now)

    def hurry(self, *, now: float) -> None:
        """Make every pending write due at ``now`` (a flush before shutdown)."""
        for code, entry in self._pending.items():
            if entry.due > now:
                self._push(code, entry, now)

    def forget(self, code: str, *, below_epoch: int | None = None) -> None:
        """Drop the session's pending write and its history (the session closed), or with
        ``below_epoch`` only a pending write whose epoch is lower (we were fenced at it)."""
        entry = self._pending.get(code)
        if below_epoch is None:
            self._pending.pop(code, None)
            self._last_start.pop(code, None)
        elif entry is not None and entry.epoch < below_epoch:
            del self._pending[code]

    def _drop_stale_heads(self) -> None:
        heap = self._heap
        while heap:
            _, token, code = heap[0]
            entry = self._pending.get(code)
            if entry is not None and entry.token == token:
                return
            heapq.heappop(heap)


@attrs.frozen
class SnapshotterStats:
    """What ``/health`` shows about snapshots."""

    pending: int  # sessions waiting for a write
    writes: int  # snapshots stored
    failures: int  # write attempts that failed (Redis down, slow, or refusing)
    stale: int  # writes refused because another node has a higher epoch
    build_errors: int  # build() raised (a bug in the caller; logged with its traceback)
    bytes_written: int
    last_error: str | None
    redis_up: bool  # whether the last write attempt reached Redis


class Snapshotter:
    """One writer task for every session's snapshots (see the module rules).

    ``on_fenced(code)`` is called, on the writer task, when a write for ``code`` is refused as
    stale; it must not block (the server closes the session with ``CloseCode.FENCED``).
    ``on_written(code, seq)`` is called after each successful write with the seq it stored
    (the server releases durable acks that waited for the snapshot holding their question).
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        interval: float = 0.5,
        on_fenced: Callable[[str], None] | None = None,
        on_written: Callable[[str, int], None] | None = None,
        durable: Durable | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._schedule = DebounceSchedule(interval)
        self._on_fenced = on_fenced
        self._on_written = on_written
        self._durable = durable
        self._backoff = Backoff(backoff_initial, backoff_max, rng=rng or random.Random())
        self._log = FailureLog("snapshotter", log)
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._busy = False
        self._writes = 0
        self._stale = 0
        self._build_errors = 0
        self._bytes = 0

    # ------------------------------------------------------------------ sync API (never blocks)
    def request(self, code: str, epoch: int, build: Build, urgent: bool = False) -> None:
        """Ask for ``code``'s state to be written: at once if ``urgent``, else debounced."""
        self._schedule.request(code, epoch, build, urgent=urgent, now=trio.current_time())
        self._wake.set()

    def forget(self, code: str) -> None:
        """The session is gone from this node: drop its pending write, if any."""
        self._schedule.forget(code)

    def stats(self) -> SnapshotterStats:
        return SnapshotterStats(
            pending=len(self._schedule),
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
        while len(self._schedule) or self._busy:
            await self._progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer. Runs until cancelled; readiness is immediate.

        Error handling: ``CoordinationError`` from the store is counted and retried with
        back-off; ``StaleEpoch`` fences the session; an exception from ``build()`` is logged and
        that request dropped. Anything else is a bug and propagates.
        """
        task_status.started()
        while True:
            # A fresh event before looking at the schedule: a request made after the look sets
            # this one, so the wait below cannot miss it.
            self._wake = trio.Event()
            item = self._schedule.pop_due(trio.current_time())
            if item is None:
                self._signal_progress()
                due = self._schedule.next_due()
                with trio.move_on_at(math.inf if due is None else due):
                    await self._wake.wait()
                continue
            self._busy = True
            try:
                failed = await self._write(item)
            finally:
                self._busy = False
                self._signal_progress()
            if failed:
                await trio.sleep(self._backoff.next_delay())

    async def _write(self, item: Due) -> bool:
        """Write one snapshot; ``True`` if it failed and should be retried after a back-off."""
        try:
            data, seq, watermark = item.build()
        except Exception:
            self._build_errors += 1
            log.exception("snapshotter: building the snapshot of %s failed", item.code)
            return False
        if self._durable is not None and not await self._durable(item.code):
            log.info("snapshotter: %s not written: its state will never be durable", item.code)
            return False
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
            self._schedule.retry(item, now=trio.current_time())
            return True
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


__all__ = ["Build", "DebounceSchedule", "Due", "Snapshotter", "SnapshotterStats"]
