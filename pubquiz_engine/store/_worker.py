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
   timeouts (SQLite's busy timeout, PostgreSQL's connect and statement timeouts), and a caller
   whose job can be made to return early passes ``on_cancel`` (PostgreSQL shuts its socket
   down): then a cancel is bounded even when the job's own timeouts cannot fire, such as a
   statement sent into a network black hole.
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


class _Skipped(Exception):
    """The outcome of a job whose caller was cancelled before it started (never seen outside:
    the caller raises ``Cancelled`` instead)."""


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

    async def run(self, fn: Callable[[], T], *, on_cancel: Callable[[], None] | None = None) -> T:
        """Run ``fn()`` on this worker's thread and return its result (or raise its exception).

        ``on_cancel``: for a job that can be made to return early. When the waiting task is
        cancelled, a job still queued is skipped, and a running one gets ``on_cancel()`` called
        (on the event loop's thread, at once: it must not block), which must make it return
        soon, for example by interrupting its I/O. Either way the task still waits for the job
        to be done with, then raises ``Cancelled`` (not whatever the interrupted job raised).
        Without ``on_cancel`` a cancel waits for the job to finish on its own.
        """
        if self._closed:
            raise trio.ClosedResourceError("worker is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        # "queued" -> "running" (the worker thread) or "skipped" (a cancel first), under lock.
        state = ["queued"]
        lock = threading.Lock()

        def job() -> None:
            with lock:
                skipped = state[0] == "skipped"
                state[0] = "running"
            result = outcome.Error(_Skipped()) if skipped else outcome.capture(fn)
            # If the run already ended there is nobody left to hand the result to.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put(job)

        interrupted = False

        def abort(_: object) -> trio.lowlevel.Abort:
            # The job is queued or running and will reschedule us: never leave it behind.
            nonlocal interrupted
            if on_cancel is not None and not interrupted:
                interrupted = True
                with lock:
                    running = state[0] == "running"
                    if not running:
                        state[0] = "skipped"
                if running:
                    on_cancel()
            return trio.lowlevel.Abort.FAILED

        # reschedule() hands over the Outcome; this unwraps it (returns or raises).
        try:
            value: T = await trio.lowlevel.wait_task_rescheduled(abort)
        except BaseException:
            if interrupted:  # the interruption's error is ours: report the cancel instead
                await trio.lowlevel.checkpoint_if_cancelled()
            raise
        return value

    def close(self) -> None:
        """Let the thread exit after the jobs already queued. Idempotent; does not block."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
