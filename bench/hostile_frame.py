"""What one hostile frame costs the engine before anyone has authenticated (issue 16, point 7).

Run: ``.venv/bin/python bench/hostile_frame.py [REPEATS]`` (default 5 per frame kind).

An engine runs in this process (SQLite in a temporary directory, an operator key set); each
frame is sent on a fresh, unidentified connection and the reply awaited. Per frame kind it
prints the median and worst of:

- ``peak KiB``: the Python heap's peak growth while the engine handled the frame (tracemalloc,
  reset just before the send; the client's own share is the frame it already holds);
- ``longest step ms``: the longest single trio task step during the handling (a trio
  ``Instrument``): how long the event loop was held by one task, so how long every other
  connection waited. Measured in a separate pass without tracemalloc.

Frame kinds:

- ``create_session 1 MiB, wrong key``: an inline "quiz" of about a million empty maps, just
  under ``max_operator_frame_bytes``, with a wrong operator key;
- ``64 KiB junk, unidentified``: a ``ping`` with a field of ~60,000 empty maps, just under
  ``max_frame_bytes`` (refused as ``invalid_message``);
- ``1 MiB frame, throttled``: the first kind again on a connection whose token bucket is empty.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import attrs
import msgpack
import trio
import trio.abc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import running_engine

KEY = "bench-hostile-frame-operator-key"


def _maps_frame(fields: dict[str, object], budget: int) -> bytes:
    """``fields`` plus arrays of empty maps (one byte each on the wire), up to ``budget`` bytes."""
    rows: list[list[dict[str, object]]] = []
    base = len(msgpack.packb(fields)) + 16
    while base + 1003 * (len(rows) + 1) < budget and len(rows) < 1000:
        rows.append([{} for _ in range(1000)])
    return msgpack.packb({**fields, "x": rows})


def operator_frame(limit: int) -> bytes:
    quiz = _maps_frame({}, limit - 200)
    return msgpack.packb({"t": "create_session", "rid": 1, "key": "wrong-key-guess-0000",
                          "quiz_path": None, "quiz": msgpack.unpackb(quiz), "mode": "solo",
                          "options": None})


def junk_frame(limit: int) -> bytes:
    return _maps_frame({"t": "ping", "rid": 1}, limit)


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_task = ""
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._started
        if took > self.longest:
            self.longest, self.longest_task = took, task.name


async def _reply(client: Client) -> str:
    reply = await client.next_event(timeout=30)
    return reply.code if isinstance(reply, m.ErrorReply) else reply.TYPE


async def measure(url: str, frame: bytes, *, throttle: bool, traced: bool,
                  steps: _Steps) -> tuple[float, float, str]:
    async with open_client(url) as client:
        if throttle:  # empty the bucket (message_burst 3) with three pings first
            for rid in range(3):
                await client.send(m.Ping(rid=100 + rid))
            for _ in range(3):
                await _reply(client)
        if traced:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        steps.longest = 0.0
        await client.send_raw(frame)
        code = await _reply(client)
        if not traced and "-v" in sys.argv:
            print(f"  longest step {steps.longest * 1000:.2f} ms in {steps.longest_task}")
        peak = (tracemalloc.get_traced_memory()[1] - before) / 1024 if traced else 0.0
        return peak, steps.longest * 1000, code


async def main(repeats: int) -> None:
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    with tempfile.TemporaryDirectory() as data_dir:
        # Every frame below guesses the key: keep the per-address guess limit out of the way.
        extra = ({"operator_attempt_burst": 1_000_000}
                 if "operator_attempt_burst" in attrs.fields_dict(ServerConfig) else {})
        config = ServerConfig(port=0, data_dir=data_dir, operator_key=KEY,
                              message_rate=0.001, message_burst=3, join_rate=1000.0,
                              join_burst=1000, **extra)
        kinds: list[tuple[str, Callable[[], bytes], bool]] = [
            ("create_session 1 MiB, wrong key",
             lambda: operator_frame(config.max_operator_frame_bytes), False),
            ("64 KiB junk, unidentified", lambda: junk_frame(config.max_frame_bytes), False),
            ("1 MiB frame, throttled",
             lambda: operator_frame(config.max_operator_frame_bytes), True),
        ]
        async with running_engine(config) as (_engine, address):
            print(f"{'frame':34} {'bytes':>9} {'reply':>16} {'peak KiB med/max':>20} "
                  f"{'longest step ms med/max':>24}")
            for name, build, throttle in kinds:
                frame = build()
                peaks, times, codes = [], [], set()
                for _ in range(repeats):
                    tracemalloc.start()
                    peak, _, code = await measure(address.url, frame, throttle=throttle,
                                                  traced=True, steps=steps)
                    tracemalloc.stop()
                    _, took, _ = await measure(address.url, frame, throttle=throttle,
                                               traced=False, steps=steps)
                    peaks.append(peak)
                    times.append(took)
                    codes.add(code)
                print(f"{name:34} {len(frame):>9} {','.join(sorted(codes)):>16} "
                      f"{statistics.median(peaks):>9.0f}/{max(peaks):<10.0f} "
                      f"{statistics.median(times):>11.2f}/{max(times):<12.2f}")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != '-v' else 5)
