"""The write-behind persister: one per process, group commit, bounded, never drops a batch.

How it works. ``submit`` (sync, never blocks) appends a record to the *open batch*, the last of
a FIFO of batches waiting to be committed; a batch holds at most ``max_batch`` records, after
which a new one opens. ``run`` is the one flush task: it waits until a batch is queued, takes the
oldest, commits it with ``Store.write`` (one transaction), wakes every ticket of that batch, and
loops at once. So the ack latency of a record that someone waits for is about one commit (the one
in flight when it arrived plus its own), and batches grow by themselves under load: while one
commit runs, the next batch fills.

A batch whose records were all queued with ``linger=True`` (records nobody is about to wait
for: ``fast`` answers, whose acks went out already) may *linger*: the flush task lets it
collect records for up to ``linger`` seconds after its first one, and commits it at once when
a record without ``linger`` joins it, a ticket of it is awaited (``Ticket.wait``), a batch
queues behind it (it is full) or ``drain`` asks. Each commit costs the writer thread a
fixed amount of CPU on the engine's core whatever its size (about 0.45 ms on PostgreSQL, see
docs/benchmarks.md), so at 1,000 ``fast`` answers/s a commit per answer or two took a quarter
of that core from the event loop; lingering groups them without delaying anyone who waits.

Rules this module keeps:

1. Bounded, and the bound refuses new work, never the records of work already accepted.
   ``depth`` counts records submitted and not yet committed (the in-flight batch included).
   ``submit``/``submit_many`` are for new work: one that would take ``depth`` past
   ``max_queue`` raises ``errors.QueueFull`` and changes nothing (all-or-nothing); the server
   answers a retryable ``busy``. ``record`` is for what accepted work produces (a reveal's
   score rows and events, a session's end): it is never refused, so it can take ``depth`` past
   ``max_queue``. How far is bounded by construction: the server admits new work
   (``has_room``) before it changes anything and admits none while the queue is at the bound,
   so past it only what was already admitted adds records (one request's worth, such as one
   reveal's score rows), plus the few a running session's timer writes (a question closing at
   its deadline, a session ending).
2. Never drops a batch while the database is down: ``StoreUnavailable`` is retried with capped
   exponential back-off (``min_backoff`` .. ``max_backoff``), the batch keeps its place at the
   head, submits keep being accepted up to the bound. Records are idempotent, so a commit that
   succeeded but whose answer was lost (the connection died during COMMIT) is harmless to retry.
3. A non-retryable ``StoreError`` (a bug: e.g. a value that is not JSON) is isolated: the batch is
   retried one session at a time, and only the failing session's tickets raise that error.
4. Fencing: sessions refused for a stale epoch are reported to ``on_stale(code)`` (once per
   batch) and their tickets raise ``errors.StaleEpoch``.
5. Tickets are cheap: one small object per submit that points at its batch; each batch has one
   ``trio.Event``. No task per record.
6. One task mutates the queue's head (``run``); ``submit`` only appends, synchronously, on the
   trio thread, so no lock is needed.
7. Nothing awaited lingers, and lingering is opt-in: a batch lingers only while every record
   in it was queued with ``linger=True``, no ticket of it (nor of a batch behind it) is
   awaited and no ``drain`` runs, and never longer than ``linger`` seconds after its first
   record, which bounds what a ``kill -9`` can take from ``fast`` answers beyond the commit in
   flight (DESIGN.md: "at most one flush window"). Records queued without it (the default)
   commit as soon as the commit before them is done, as if there were no linger at all.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import attrs
import trio

from pubquiz_engine.errors import QueueFull, StaleEpoch, StoreError, StoreUnavailable
from pubquiz_engine.store.records import Record, Store, WriteOutcome

log = logging.getLogger(__name__)


class _Batch:
    """Records committed together, and what came of it (shared by the batch's tickets)."""

    __slots__ = ("committed", "event", "failed", "first_at", "hurry", "records",
                 "refused", "urgent")

    def __init__(self, first_at: float, hurry: Callable[[], None]) -> None:
        self.records: list[Record] = []
        self.first_at = first_at  # trio clock: when its oldest record was submitted
        self.event = trio.Event()
        self.urgent = False  # it must not linger: a record without linger, or awaited (rule 7)
        self.hurry = hurry  # wakes the flush task if it lets this batch linger
        self.committed = False
        self.refused: frozenset[str] = frozenset()
        self.failed: dict[str, StoreError] = {}


class Ticket:
    """The promise that a submitted record (or group) is committed.

    ``committed`` is True once its batch committed and its session(s) were neither fenced nor
    failed. ``await wait()`` returns at that point, or raises ``errors.StaleEpoch`` (a session
    of the ticket was fenced) or ``errors.StoreError`` (its records could not be written).
    """

    __slots__ = ("_batch", "_codes")

    def __init__(self, batch: _Batch, codes: tuple[str, ...]) -> None:
        self._batch = batch
        self._codes = codes

    @property
    def committed(self) -> bool:
        batch = self._batch
        return batch.committed and not any(
            code in batch.refused or code in batch.failed for code in self._codes
        )

    async def wait(self) -> None:
        batch = self._batch
        if not batch.urgent:
            batch.urgent = True
            batch.hurry()
        await batch.event.wait()
        for code in self._codes:
            if code in self._batch.failed:
                raise self._batch.failed[code]
            if code in self._batch.refused:
                raise StaleEpoch(f"session {code}: a newer epoch owns it; records not written")


@attrs.frozen
class WriteBehindStats:
    depth: int  # records submitted, not yet committed (in flight included); may pass
    #             max_queue by the records of accepted work (rule 1)
    in_flight: int  # records in the batch being committed now
    lag_seconds: float  # age of the oldest uncommitted record; 0.0 when idle
    last_flush_at: float | None  # unix time of the last successful commit
    last_flush_seconds: float  # duration of that commit (retries excluded)
    batches: int  # batches committed
    records: int  # records committed (fenced or failed ones excluded)
    failures: int  # failed commit attempts (each retry counts)
    refused: int  # records refused for a stale epoch
    max_queue: int


class WriteBehind:
    """See the module docstring. Start ``run`` in the engine's nursery; submit from anywhere on
    the trio thread; ``drain`` before stopping."""

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 50_000,
        max_batch: int = 2_000,
        linger: float = 0.0,
        on_stale: Callable[[str], None] | None = None,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be >= 1")
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        if linger < 0:
            raise ValueError("linger must be >= 0")
        self._store = store
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._linger = linger
        self._on_stale = on_stale
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._queue: deque[_Batch] = deque()  # waiting batches; the last one may be open
        self._open: _Batch | None = None  # the batch new records join
        self._in_flight: _Batch | None = None
        self._depth = 0
        self._wakeup = trio.Event()  # set when a batch is queued
        self._hurry = trio.Event()  # set when the lingering head batch must go (rule 7)
        self._draining = 0  # drain() calls waiting: nothing lingers
        self._idle = trio.Event()  # set whenever depth == 0
        self._idle.set()
        self._running = False
        # statistics
        self._last_flush_at: float | None = None
        self._last_flush_seconds = 0.0
        self._batches = 0
        self._records = 0
        self._failures = 0
        self._refused = 0

    # --- producers (sync, never block) -----------------------------------------------------

    def submit(self, record: Record, *, linger: bool = False) -> Ticket:
        """Queue one record. Raises ``errors.QueueFull`` at the bound (nothing queued).
        ``linger``: nobody is about to wait for it, its batch may linger (rule 7)."""
        if self._depth >= self._max_queue:
            raise QueueFull(f"write-behind queue is full ({self._max_queue} records)")
        batch = self._batch_for(1, linger)
        batch.records.append(record)
        self._depth += 1
        return Ticket(batch, (record.code,))

    def has_room(self, count: int = 1) -> bool:
        """Whether new work that writes ``count`` records may be admitted now (the server
        checks this before it changes anything, then queues with ``record``)."""
        return self._depth + count <= self._max_queue

    def record(self, records: Sequence[Record], *, linger: bool = False) -> Ticket:
        """Queue the records of work already accepted. Never refused (rule 1): dropping them
        would lose what a client was told happened. They share one batch. ``linger``: as for
        ``submit``."""
        batch = self._batch_for(len(records), linger)
        batch.records.extend(records)
        self._depth += len(records)
        return Ticket(batch, tuple(dict.fromkeys(r.code for r in records)))

    def submit_many(self, records: Sequence[Record], *, linger: bool = False) -> Ticket:
        """Queue records together: all of them or (``QueueFull``) none. They share one batch,
        even if that makes the batch larger than ``max_batch``."""
        if self._depth + len(records) > self._max_queue:
            raise QueueFull(f"write-behind queue is full ({self._max_queue} records)")
        return self.record(records, linger=linger)

    def _batch_for(self, count: int, linger: bool) -> _Batch:
        batch = self._open
        if batch is None or (batch.records and len(batch.records) + count > self._max_batch):
            batch = self._open = _Batch(trio.current_time(), self._hurry_up)
            self._queue.append(batch)
            self._wakeup.set()
            self._hurry_up()  # a batch behind a lingering one: that one is full
        if not (linger or batch.urgent):
            batch.urgent = True
            self._hurry_up()
        if self._depth == 0:
            self._idle = trio.Event()
        return batch

    # --- the flush task --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The flush loop. Runs until cancelled; one per instance.

        Error handling: database failures never leave this loop (retried or isolated, see the
        module docstring). Cancelled mid-commit, the batch stays at the head of the queue (the
        commit in progress finishes first) and a later ``run`` retries it: idempotent.
        """
        if self._running:
            raise RuntimeError("WriteBehind.run is already running")
        self._running = True
        try:
            task_status.started()
            while True:
                while not self._queue:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                batch = self._queue[0]
                if self._linger and not batch.urgent:
                    await self._let_linger(batch)
                if batch is self._open:
                    self._open = None  # closed: new records go to a new batch
                self._in_flight = batch
                await self._commit(batch)
                self._queue.popleft()
                self._in_flight = None
                self._depth -= len(batch.records)
                batch.committed = True
                batch.event.set()
                if self._depth == 0:
                    self._idle.set()
        finally:
            self._running = False
            self._in_flight = None

    def _hurry_up(self) -> None:
        self._hurry.set()

    async def _let_linger(self, batch: _Batch) -> None:
        """Let the head batch collect records while nobody waits for it (rule 7)."""
        with trio.move_on_at(batch.first_at + self._linger):
            while not (batch.urgent or self._draining or len(self._queue) > 1):
                self._hurry = trio.Event()
                await self._hurry.wait()

    async def _commit(self, batch: _Batch) -> None:
        batch.failed.clear()  # a run cancelled half way may have left some behind
        try:
            outcome = await self._write_with_retry(batch.records)
            refused = outcome.refused
        except StoreError as exc:
            # Not retryable: find the session(s) at fault, commit the others.
            log.error("write-behind batch failed (%s); retrying it per session", exc)
            refused = await self._commit_per_session(batch)
        batch.refused = refused
        bad = refused | batch.failed.keys()
        self._records += sum(1 for r in batch.records if r.code not in bad)
        self._refused += sum(1 for r in batch.records if r.code in refused)
        for code in sorted(refused):
            log.warning("session %s fenced: a newer epoch owns it", code)
            if self._on_stale is not None:
                self._on_stale(code)

    async def _commit_per_session(self, batch: _Batch) -> frozenset[str]:
        by_code: dict[str, list[Record]] = {}
        for record in batch.records:
            by_code.setdefault(record.code, []).append(record)
        refused: set[str] = set()
        for code, records in by_code.items():
            try:
                refused |= (await self._write_with_retry(records)).refused
            except StoreError as exc:
                log.error("write-behind: session %s records not written: %s", code, exc)
                batch.failed[code] = exc
        return frozenset(refused)

    async def _write_with_retry(self, records: Sequence[Record]) -> WriteOutcome:
        delay = self._min_backoff
        down_since: float | None = None
        while True:  # bounded by cancellation only: the batch is never dropped
            started = time.monotonic()
            try:
                outcome = await self._store.write(records)
            except StoreUnavailable as exc:
                self._failures += 1
                if down_since is None:
                    down_since = started
                    log.warning("database unavailable, retrying with back-off: %s", exc)
                else:
                    log.debug("database still unavailable: %s", exc)
                await trio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            except StoreError:
                self._failures += 1
                raise
            self._last_flush_seconds = time.monotonic() - started
            self._last_flush_at = time.time()
            self._batches += 1
            if down_since is not None:
                log.warning(
                    "database back after %.1f s; batch committed", time.monotonic() - down_since
                )
            return outcome

    # --- graceful stop and observability ----------------------------------------------------

    async def drain(self, *, timeout: float) -> bool:
        """Wait until every record submitted so far is committed, at most ``timeout`` seconds.
        Returns True if the queue emptied in time. Needs ``run`` to be running."""
        self._draining += 1
        self._hurry_up()
        try:
            with trio.move_on_after(timeout):
                while self._depth:
                    await self._idle.wait()
        finally:
            self._draining -= 1
        return self._depth == 0

    def stats(self) -> WriteBehindStats:
        oldest = self._queue[0] if self._queue else None
        lag = trio.current_time() - oldest.first_at if oldest is not None else 0.0
        in_flight = len(self._in_flight.records) if self._in_flight is not None else 0
        return WriteBehindStats(
            depth=self._depth,
            in_flight=in_flight,
            lag_seconds=max(0.0, lag),
            last_flush_at=self._last_flush_at,
            last_flush_seconds=self._last_flush_seconds,
            batches=self._batches,
            records=self._records,
            failures=self._failures,
            refused=self._refused,
            max_queue=self._max_queue,
        )
