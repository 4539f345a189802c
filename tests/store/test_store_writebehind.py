"""WriteBehind on both backends: group commit, faults and retries, backpressure, fencing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from storekit import FlakyStore, answer, participant, score, session

from pubquiz_engine.errors import QueueFull, StaleEpoch, StoreError
from pubquiz_engine.store import Store, Ticket, WriteBehind
from pubquiz_engine.store.records import Record, WriteOutcome

Codes = Callable[[], str]


async def test_group_commit_acks_every_ticket(store: Store, codes: Codes) -> None:
    code = codes()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(store, max_batch=100)
            await nursery.start(wb.run)
            first = wb.submit(session(code))
            tickets = [wb.submit(answer(code, 1, rid)) for rid in range(1_000)]
            assert not tickets[-1].committed
            await first.wait()
            for ticket in tickets:
                await ticket.wait()
            assert all(t.committed for t in tickets)
            stats = wb.stats()
            assert (stats.depth, stats.in_flight, stats.lag_seconds) == (0, 0, 0.0)
            assert stats.records == 1_001 and stats.failures == 0
            # Group commit: far fewer commits than records, none larger than max_batch.
            assert 11 <= stats.batches < 1_001
            assert stats.last_flush_at is not None and stats.last_flush_seconds > 0
            assert await wb.drain(timeout=5)
            nursery.cancel_scope.cancel()
        assert len(await store.load_answers(code)) == 1_000


async def test_outage_loses_nothing_acked_and_stores_nothing_twice(
    store: Store, codes: Codes
) -> None:
    code = codes()
    flaky = FlakyStore(store)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(flaky, max_batch=50, min_backoff=0.01, max_backoff=0.05)
            await nursery.start(wb.run)
            await wb.submit(session(code)).wait()

            # 1. The connection dies after COMMIT went through: the retry must not double-store.
            flaky.fail_next(2, after_commit=True)
            acked = [wb.submit(answer(code, 1, rid)) for rid in range(100)]
            for ticket in acked:
                await ticket.wait()

            # 2. The database is down for a while: submits keep working, the lag rises.
            flaky.down()
            during = [wb.submit(answer(code, 2, rid)) for rid in range(100)]
            await flaky.wait_failures(flaky.failed + 4)  # several back-off rounds went by
            lag_down = wb.stats().lag_seconds
            assert lag_down >= 0.01 * 3  # at least the first back-off delays
            assert not any(t.committed for t in during)
            during += [wb.submit(answer(code, 2, rid)) for rid in range(100, 200)]  # still accepted
            assert wb.stats().depth == 200

            # 3. It comes back: everything commits and the lag falls back to zero.
            flaky.up()
            for ticket in during:
                await ticket.wait()
            assert await wb.drain(timeout=5)
            stats = wb.stats()
            assert stats.lag_seconds == 0.0 and stats.depth == 0
            assert stats.failures >= 6
            nursery.cancel_scope.cancel()

        stored = await store.load_answers(code)
        keys = [(a.participant_id, a.request_id) for a in stored]
        assert len(keys) == len(set(keys)) == 300
        assert set(keys) == {(1, r) for r in range(100)} | {(2, r) for r in range(200)}


async def test_queue_full_applies_backpressure_and_recovers(store: Store, codes: Codes) -> None:
    code = codes()
    flaky = FlakyStore(store)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(flaky, max_queue=100, max_batch=30, min_backoff=0.01, max_backoff=0.02)
            await nursery.start(wb.run)
            await wb.submit(session(code)).wait()
            flaky.down()
            accepted = [wb.submit(answer(code, 1, rid)) for rid in range(100)]
            with pytest.raises(QueueFull):
                wb.submit(answer(code, 1, 100))
            with pytest.raises(QueueFull):
                wb.submit_many([answer(code, 1, 101)])
            assert wb.stats().depth == 100
            assert QueueFull.__mro__[1].__name__ == "LocalError"
            assert not await wb.drain(timeout=0.05)  # bounded: gives up while the database is down

            flaky.up()
            for ticket in accepted:
                await ticket.wait()
            late = wb.submit(answer(code, 1, 100))  # accepted again
            await late.wait()
            nursery.cancel_scope.cancel()
        assert len(await store.load_answers(code)) == 101


async def test_records_of_accepted_work_are_never_refused(store: Store, codes: Codes) -> None:
    """Issue 16.3: the bound refuses new work (``submit``, ``has_room``), never ``record``:
    past the bound its records are queued and committed like any other."""
    code = codes()
    wb = WriteBehind(store, max_queue=10, max_batch=4)
    with trio.fail_after(20):
        wb.submit_many([session(code), participant(code, 1)])
        assert wb.has_room(8) and not wb.has_room(9)
        wb.submit_many([answer(code, 1, rid) for rid in range(8)])
        assert not wb.has_room(1)
        with pytest.raises(QueueFull):
            wb.submit(answer(code, 1, 8))
        scores = wb.record([score(code, 1, 5.0, seq) for seq in range(1, 6)])
        assert wb.stats().depth == 15 and not wb.has_room(1)
        async with trio.open_nursery() as nursery:
            await nursery.start(wb.run)
            await scores.wait()
            assert await wb.drain(timeout=5)
            assert wb.has_room(10)
            nursery.cancel_scope.cancel()
        results = await store.session_results(code)
    assert len(results.answers) == 8
    assert [(s.participant_id, s.score, s.updated_seq) for s in results.standings] == [
        (1, 5.0, 5)]


async def test_submit_many_is_all_or_nothing(store: Store, codes: Codes) -> None:
    code = codes()
    wb = WriteBehind(store, max_queue=10, max_batch=4)
    with trio.fail_after(20):
        wb.submit_many([answer(code, 1, rid) for rid in range(8)])
        with pytest.raises(QueueFull):
            wb.submit_many([answer(code, 1, rid) for rid in range(8, 11)])
        assert wb.stats().depth == 8
        group = wb.submit_many([session(code), participant(code, 1)])
        async with trio.open_nursery() as nursery:
            await nursery.start(wb.run)
            await group.wait()
            assert await wb.drain(timeout=5)
            nursery.cancel_scope.cancel()
        assert len(await store.load_answers(code)) == 8


async def test_fenced_session_tickets_raise_and_others_commit(store: Store, codes: Codes) -> None:
    fenced, other = codes(), codes()
    seen: list[str] = []
    with trio.fail_after(20):
        await store.write([session(fenced, 1), session(other, 1)])
        await store.claim_session(fenced, 5)
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(store, on_stale=seen.append)
            stale = wb.submit(answer(fenced, 1, 1, epoch=1))
            fine = wb.submit(answer(other, 1, 1, epoch=1))
            both = wb.submit_many([answer(fenced, 1, 2, epoch=1), answer(other, 1, 2, epoch=1)])
            await nursery.start(wb.run)
            with pytest.raises(StaleEpoch):
                await stale.wait()
            with pytest.raises(StaleEpoch):
                await both.wait()
            await fine.wait()
            assert fine.committed and not stale.committed
            assert seen == [fenced]
            assert wb.stats().refused == 2
            nursery.cancel_scope.cancel()
        assert await store.load_answers(fenced) == []
        assert len(await store.load_answers(other)) == 2


async def test_a_poison_record_fails_only_its_session(store: Store, codes: Codes) -> None:
    bad, good = codes(), codes()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(store)
            tickets: list[Ticket] = [wb.submit(session(good)), wb.submit(answer(good, 1, 1))]
            poisoned = wb.submit(answer(bad, 1, 1, value={"not json": {1, 2}}))
            tickets.append(wb.submit(answer(good, 1, 2)))
            await nursery.start(wb.run)
            for ticket in tickets:
                await ticket.wait()
            with pytest.raises(StoreError):
                await poisoned.wait()
            assert not poisoned.committed
            # The loop kept going: later records still commit.
            await wb.submit(answer(good, 1, 3)).wait()
            nursery.cancel_scope.cancel()
        assert len(await store.load_answers(good)) == 3


async def test_constructor_and_run_guard(store: Store) -> None:
    with pytest.raises(ValueError):
        WriteBehind(store, max_queue=0)
    with pytest.raises(ValueError):
        WriteBehind(store, min_backoff=1.0, max_backoff=0.5)
    with pytest.raises(ValueError):
        WriteBehind(store, linger=-0.001)
    wb = WriteBehind(store)
    with trio.fail_after(5):
        assert await wb.drain(timeout=1)  # nothing queued: drained at once
        async with trio.open_nursery() as nursery:
            await nursery.start(wb.run)
            with pytest.raises(RuntimeError):
                await wb.run()
            nursery.cancel_scope.cancel()


# --- linger (rule 7): a batch of linger records nobody awaits collects more; others go at once

#: Longer than any test runs: a batch that lingered this long would fail the test's guard.
FOREVER = 3_600.0


class CountingStore(FlakyStore):
    """A real store that remembers the size of every write and wakes ``wait_writes``."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.sizes: list[int] = []
        self._written = trio.Event()

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        outcome = await super().write(records)
        self.sizes.append(len(records))
        self._written.set()
        return outcome

    async def wait_writes(self, k: int) -> None:
        while len(self.sizes) < k:
            self._written = trio.Event()
            await self._written.wait()


@asynccontextmanager
async def running(store: Store, **options: Any) -> AsyncIterator[tuple[WriteBehind,
                                                                      CountingStore]]:
    """A ``WriteBehind(**options)`` over a ``CountingStore`` of ``store``, its flush task
    running for the body (at most 30 s), cancelled after it."""
    counting = CountingStore(store)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            wb = WriteBehind(counting, **options)
            await nursery.start(wb.run)
            yield wb, counting
            nursery.cancel_scope.cancel()


async def test_records_nobody_awaits_share_one_commit(store: Store, codes: Codes) -> None:
    code = codes()
    async with running(store, linger=FOREVER) as (wb, counting):
        first = wb.submit(session(code), linger=True)
        await trio.testing.wait_all_tasks_blocked()
        later = [wb.submit(answer(code, 1, rid), linger=True) for rid in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        assert counting.sizes == [] and wb.stats().depth == 6  # lingering, not lost
        await later[-1].wait()  # awaited: it goes now, everything queued with it
        assert counting.sizes == [6] and first.committed
    assert len(await store.load_answers(code)) == 5


async def test_an_awaited_ticket_does_not_linger(store: Store, codes: Codes) -> None:
    code = codes()
    async with running(store, linger=FOREVER) as (wb, counting):
        # Awaited before the flush task even looked at the batch.
        await wb.submit(session(code), linger=True).wait()
        # Awaited while the batch lingers.
        ticket = wb.submit(answer(code, 1, 1), linger=True)
        await trio.testing.wait_all_tasks_blocked()
        await ticket.wait()
        assert counting.sizes == [1, 1]


async def test_a_full_batch_does_not_linger(store: Store, codes: Codes) -> None:
    """A batch queued behind the lingering one means that one is full: it goes, and the
    awaited second one right after it, in order."""
    code = codes()
    async with running(store, max_batch=3, linger=FOREVER) as (wb, counting):
        tickets = [wb.submit(session(code), linger=True)]
        tickets += [wb.submit(answer(code, 1, rid), linger=True) for rid in range(4)]
        await tickets[-1].wait()
        assert counting.sizes == [3, 2] and all(t.committed for t in tickets)
    assert len(await store.load_answers(code)) == 4


async def test_drain_commits_a_lingering_batch(store: Store, codes: Codes) -> None:
    code = codes()
    async with running(store, linger=FOREVER) as (wb, counting):
        tickets = [wb.submit(record, linger=True)
                   for record in (session(code), answer(code, 1, 1))]
        assert await wb.drain(timeout=FOREVER)
        assert counting.sizes == [2] and all(t.committed for t in tickets)


async def test_linger_is_bounded_when_nobody_awaits(store: Store, codes: Codes) -> None:
    code = codes()
    async with running(store, linger=0.01) as (wb, counting):
        tickets = [wb.submit(record, linger=True)
                   for record in (session(code), answer(code, 1, 1))]
        await counting.wait_writes(1)  # nobody awaited a ticket: the linger ran out
        assert counting.sizes == [2]
        assert wb.stats().depth == 0 and all(t.committed for t in tickets)
    assert len(await store.load_answers(code)) == 1


async def test_a_lingering_batch_survives_an_outage_and_fencing(
    store: Store, codes: Codes
) -> None:
    """The lingered batch takes the ordinary path: retried while the database is down,
    its fenced session refused, the other committed."""
    live, stale = codes(), codes()
    async with running(store, linger=FOREVER, min_backoff=0.01, max_backoff=0.05) as (wb, counting):
        await wb.submit_many([session(live), session(stale, epoch=2)]).wait()
        counting.fail_next(2)
        good = wb.submit(answer(live, 1, 1), linger=True)
        bad = wb.submit(answer(stale, 1, 1, epoch=1), linger=True)
        await trio.testing.wait_all_tasks_blocked()
        assert counting.writes == 1  # still lingering: not yet tried
        with pytest.raises(StaleEpoch):
            await bad.wait()
        assert good.committed and counting.failed == 2
    assert len(await store.load_answers(live)) == 1
    assert await store.load_answers(stale) == []


async def test_a_record_without_linger_ends_the_linger(store: Store, codes: Codes) -> None:
    """Lingering is opt-in: a record queued as usual (a join, an event, a durable answer)
    commits at once, and so does the lingering batch it joins."""
    code = codes()
    async with running(store, linger=FOREVER) as (wb, counting):
        lingering = wb.submit(session(code), linger=True)
        await trio.testing.wait_all_tasks_blocked()
        assert counting.sizes == []
        usual = wb.record([participant(code, 1), answer(code, 1, 1)])
        await counting.wait_writes(1)  # nobody awaited a ticket
        assert counting.sizes == [3] and lingering.committed and usual.committed
        alone = wb.submit(answer(code, 1, 2))  # alone in its batch: goes at once too
        await counting.wait_writes(2)
        assert counting.sizes == [3, 1] and alone.committed
    assert len(await store.load_answers(code)) == 2
