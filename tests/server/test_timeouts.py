"""``TimeoutQueue`` (server/timeouts.py): one task keeps many deadlines of one timeout.

On trio's autojump clock, so times are exact and nothing waits in real time.
"""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import trio
import trio.testing

from pubquiz_engine.server.timeouts import TimeoutQueue


class Item:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Item({self.name})"


async def test_each_item_expires_after_its_deadline_within_the_resolution(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    expired: list[tuple[str, float]] = []
    queue: TimeoutQueue[Item] = TimeoutQueue(
        10.0, lambda item: expired.append((item.name, trio.current_time())), resolution=0.5)
    await nursery.start(queue.run)
    added: dict[str, float] = {}
    for i in range(40):  # added 0.07 s apart: many fall within one resolution
        added[f"i{i}"] = trio.current_time()
        queue.add(Item(f"i{i}"))
        await trio.sleep(0.07)
    await trio.sleep(11)
    assert [name for name, _ in expired] == [f"i{i}" for i in range(40)]  # in order
    for name, at in expired:
        late = at - (added[name] + 10.0)
        assert 0 <= late <= 0.5 + 1e-9, (name, late)
    assert len(queue) == 0


async def test_a_cancelled_item_is_never_expired_and_not_kept(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    expired: list[str] = []
    queue: TimeoutQueue[Item] = TimeoutQueue(5.0, lambda item: expired.append(item.name))
    await nursery.start(queue.run)
    kept, dropped = Item("kept"), Item("dropped")
    queue.add(kept)
    timer = queue.add(dropped)
    assert timer.pending
    timer.cancel()
    assert not timer.pending
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None  # the FIFO's slot no longer holds it
    await trio.sleep(6)
    assert expired == ["kept"]
    assert len(queue) == 0


async def test_a_restarted_deadline_counts_from_the_restart(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """What a connection's ``_restart_join_window`` does: cancel, add again."""
    expired: list[float] = []
    queue: TimeoutQueue[Item] = TimeoutQueue(
        4.0, lambda item: expired.append(trio.current_time()), resolution=0.25)
    await nursery.start(queue.run)
    item = Item("retrying")
    timer = queue.add(item)
    await trio.sleep(3)
    timer.cancel()
    restarted = trio.current_time()
    queue.add(item)
    await trio.sleep(10)
    assert len(expired) == 1
    assert restarted + 4.0 <= expired[0] <= restarted + 4.25


async def test_an_empty_queue_waits_and_wakes_for_the_next_add(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    expired: list[float] = []
    queue: TimeoutQueue[Item] = TimeoutQueue(
        2.0, lambda item: expired.append(trio.current_time()), resolution=0.1)
    await nursery.start(queue.run)
    await trio.sleep(100)  # idle: nothing to expire, nothing expired
    assert expired == []
    start = trio.current_time()
    queue.add(Item("late"))
    await trio.sleep(3)
    assert len(expired) == 1 and start + 2.0 <= expired[0] <= start + 2.1


async def test_an_expire_that_raises_is_logged_and_the_queue_goes_on(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture
) -> None:
    expired: list[str] = []

    def expire(item: Item) -> None:
        if item.name == "bad":
            raise RuntimeError("boom")
        expired.append(item.name)

    queue: TimeoutQueue[Item] = TimeoutQueue(1.0, expire)
    await nursery.start(queue.run)
    with caplog.at_level(logging.ERROR, logger="pubquiz_engine.server.timeouts"):
        queue.add(Item("bad"))
        queue.add(Item("good"))
        await trio.sleep(2)
        queue.add(Item("later"))
        await trio.sleep(2)
    assert expired == ["good", "later"]
    assert "expiring Item(bad) failed" in caplog.text


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeoutQueue(0.0, print)
