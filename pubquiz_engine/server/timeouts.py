"""Many deadlines of one constant timeout, kept by one task: ``TimeoutQueue``.

A connection has ``join_timeout`` seconds to join. A cancel scope per connection would keep
that deadline for free in code, but not in CPU: entering and leaving one costs ~11 us on this
VM (trio 0.35: a ``CancelStatus``, an entry in the deadline heap), about 3% of the engine's CPU
per join, and 19,000 phones joining in a minute wait in 19,000 of them. Every such deadline is
``now + timeout`` for one constant ``timeout``, so they come due in the order they were set:
a FIFO holds them sorted, setting one is an append, and one task expires them in order.

Rules this module keeps:

1. **Never early, late by at most ``resolution``.** An item is expired no earlier than its
   deadline and at most ``resolution`` after it (plus the scheduler's own lag): the task
   wakes at most once per ``resolution`` and expires everything due by then.
2. **Expired once, or not at all.** ``expire(item)`` is called once for each ``add`` whose
   ``Timeout`` was not cancelled by its deadline. A cancelled entry drops its item at once
   (a closed connection is not kept alive until its deadline), and stays in the FIFO as an
   empty slot until its turn.
3. **``expire`` runs in the queue's task, and must not wait.** It may close a connection;
   whatever it must wait for belongs to the task that owns the item. An exception from it is
   logged with the item and does not stop the queue.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, NoReturn, TypeVar

import trio

__all__ = ["Timeout", "TimeoutQueue"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The coarsest a queue wakes by default: late by at most this much (rule 1).
MAX_RESOLUTION: Final = 0.1


class Timeout(Generic[T]):
    """One deadline in a ``TimeoutQueue``: ``cancel()`` it once it is met."""

    __slots__ = ("deadline", "item")

    def __init__(self, deadline: float, item: T) -> None:
        self.deadline = deadline
        self.item: T | None = item

    def cancel(self) -> None:
        self.item = None

    @property
    def pending(self) -> bool:
        """Not cancelled, not expired."""
        return self.item is not None


class TimeoutQueue(Generic[T]):
    """Deadlines ``timeout`` seconds after ``add``, expired by ``run`` (a task) in order."""

    def __init__(self, timeout: float, expire: Callable[[T], object], *,
                 resolution: float | None = None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = timeout
        self.resolution = (resolution if resolution is not None
                           else min(MAX_RESOLUTION, timeout / 16))
        self._expire = expire
        self._fifo: deque[Timeout[T]] = deque()
        self._added: trio.Event | None = None  # set while ``run`` waits on an empty FIFO

    def __len__(self) -> int:
        """Entries in the FIFO, cancelled ones included until their turn."""
        return len(self._fifo)

    def add(self, item: T) -> Timeout[T]:
        """A deadline for ``item``, ``timeout`` seconds from now."""
        entry = Timeout(trio.current_time() + self.timeout, item)
        self._fifo.append(entry)
        if self._added is not None:
            self._added.set()
        return entry

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        fifo = self._fifo
        task_status.started()
        while True:
            if not fifo:
                self._added = trio.Event()
                await self._added.wait()
                self._added = None
            # Rule 1: the head's deadline, but not sooner than one resolution after the last
            # wake-up, which expired everything due then.
            await trio.sleep_until(max(fifo[0].deadline, trio.current_time() + self.resolution))
            now = trio.current_time()
            while fifo and fifo[0].deadline <= now:
                entry = fifo.popleft()
                item = entry.item
                if item is None:
                    continue
                entry.item = None
                try:
                    self._expire(item)
                except Exception:
                    log.exception("expiring %r failed", item)
