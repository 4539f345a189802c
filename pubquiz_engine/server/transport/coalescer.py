"""Write coalescing: each connection's frames of one scheduler pass leave in one ``send()``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from pubquiz_engine.server.transport.config import Counters

if TYPE_CHECKING:
    from pubquiz_engine.server.transport.websocket import WebSocket

__all__ = ["Coalescer"]


class Coalescer:
    """Flushes, once per scheduler pass, every connection written to during the pass.

    The first write of a pass registers the connection and wakes the coalescer's task; trio
    runs that task in its next batch, after the tasks already runnable, so a broadcast and
    the replies of every reader that ran in the same batch leave in one ``send()`` each. Each
    pass is timed from its first write to the end of its flush (``TransportStatistics``).
    """

    __slots__ = ("_counters", "_dirty", "_first_write", "_frames_before", "_wakeup")

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._dirty: list[WebSocket] = []
        self._wakeup = trio.Event()
        self._first_write = 0.0
        self._frames_before = 0

    def add(self, ws: WebSocket) -> None:
        if not self._dirty:
            self._wakeup.set()
            self._first_write = time.perf_counter()
            self._frames_before = self._counters.frames_out
        self._dirty.append(ws)

    async def run(self) -> None:
        counters = self._counters
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            dirty, self._dirty = self._dirty, []
            for ws in dirty:
                ws._flush()
            seconds = time.perf_counter() - self._first_write
            counters.write_passes += 1
            counters.write_pass_seconds_total += seconds
            if seconds > counters.write_pass_seconds_max:
                counters.write_pass_seconds_max = seconds
                counters.write_pass_frames_at_max = counters.frames_out - self._frames_before


