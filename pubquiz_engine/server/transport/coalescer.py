"""Write coalescing: each connection's frames of one scheduler pass leave in one ``send()``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import trio

from pubquiz_engine.server.transport.config import Counters
from pubquiz_engine.server.transport.websocket import _State

if TYPE_CHECKING:
    from pubquiz_engine.server.transport.websocket import WebSocket

_OPEN: Final = _State.OPEN

__all__ = ["Coalescer"]


class Coalescer:
    """Flushes, once per scheduler pass, every connection written to during the pass.

    The first write of a pass registers the connection and wakes the coalescer's task; trio
    runs that task in its next batch, after the tasks already runnable, so a broadcast and
    the replies of every reader that ran in the same batch leave in one ``send()`` each. Each
    pass is timed from its first write to the end of its flush (``TransportStatistics``).

    The flush is the broadcast's inner loop (one turn per member): a connection holding one
    frame, no backlog and open (a broadcast's common case) is sent here inline, with the
    frame's own bytes object; every other case goes through ``WebSocket._flush``.
    """

    __slots__ = ("_counters", "_dirty", "_first_cpu", "_first_write", "_frames_before",
                 "_wakeup")

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._dirty: list[WebSocket] = []
        self._wakeup = trio.Event()
        self._first_write = 0.0
        self._first_cpu = 0.0
        self._frames_before = 0

    def add(self, ws: WebSocket) -> None:
        if not self._dirty:
            self._wakeup.set()
            self._first_write = time.perf_counter()
            self._first_cpu = time.thread_time()
            self._frames_before = self._counters.frames_out
        self._dirty.append(ws)

    async def run(self) -> None:
        counters = self._counters
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            dirty, self._dirty = self._dirty, []
            self._flush(dirty)
            seconds = time.perf_counter() - self._first_write
            counters.write_pass_cpu_seconds_total += time.thread_time() - self._first_cpu
            counters.write_passes += 1
            counters.write_pass_seconds_total += seconds
            if seconds > counters.write_pass_seconds_max:
                counters.write_pass_seconds_max = seconds
                counters.write_pass_frames_at_max = counters.frames_out - self._frames_before

    def _flush(self, dirty: list[WebSocket]) -> None:
        """Hand every connection of ``dirty`` its pass's frames (one ``send()`` each)."""
        open_ = _OPEN
        sent_total = 0
        for ws in dirty:
            data = ws._pending
            if data is None:
                continue  # flushed by its writer task, or dropped by a close, since
            if ws._pending_ends is not None or ws._backlog is not None or ws._state is not open_:
                ws._flush()
                continue
            ws._pending = None
            # ``ws._send_now(data, None)`` inline, ``bytes_out`` added once per pass: this is
            # the loop over every member of a broadcast.
            try:
                sent = ws._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                ws._lost()
                continue
            sent_total += sent
            if sent != len(data):
                ws._queue_unsent(data, None, sent)
        self._counters.bytes_out += sent_total
