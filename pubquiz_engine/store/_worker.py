"""One dedicated OS thread per database connection, driven from trio.

Why not ``trio.to_thread.run_sync``: its threads come from a shared cache, so consecutive calls
for one connection may run on different threads, and SQLite connections must stay on the thread
that created them. A ``Worker`` owns exactly one thread, runs jobs on it strictly in order
(which also serialises everything done with its connection), and hands each result back to the
waiting trio task without blocking the event loop.

Rules this module keeps:

1. The event loop never waits on a database call: the calling task parks until the thread
   reschedules it through the trio token.
2. A job that has started is never abandoned: cancelling the waiting task takes effect when the
   job returns (as with ``trio.to_thread.run_sync`` by default). Jobs therefore carry their own
   timeouts (SQLite's busy timeout, PostgreSQL's connect and statement timeouts).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

T = TypeVar("T")

_Job = Callable[[], None]


class Worker:
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on this worker's thread and return its result (or raise its exception)."""
        if self._closed:
            raise trio.ClosedResourceError("worker is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def job() -> None:
            result = outcome.capture(fn)
            # If the run already ended there is nobody left to hand the result to.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put(job)

        def abort(_: object) -> trio.lowlevel.Abort:
            # The job is queued or running and will reschedule us: never leave it behind.
            return trio.lowlevel.Abort.FAILED

        # reschedule() hands over the Outcome; this unwraps it (returns or raises).
        value: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return value

    def close(self) -> None:
        """Let the thread exit after the jobs already queued. Idempotent; does not block."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
