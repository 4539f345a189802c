"""The engine's own broadcast path against the bare ``send()`` floor, in one process run.

Run: ``.venv/bin/python bench/broadcast_path.py [N] [--rounds R] [--only engine|floor]
[--no-drain]`` (default N = 9,000: two sockets per connection must fit 20,000 open files).

Opens N loopback TCP connections (``bench/broadcast_floor.py``'s ``open_pairs``) and wraps
each server side in a real ``server.transport`` ``WebSocket`` with the server's ``Coalescer``
running in a trio nursery, as ``serve`` builds them. Then, R rounds, interleaved:

- **engine**: one 80-byte frame to all N through the calls a session makes for a broadcast
  (``server.session._send_entries`` of one ``(targets, frame)`` outbox entry), then the
  coalescer's flush of the pass (``send()`` per connection). Timed from the call to the end
  of the flush (wall and process CPU), and as the engine times itself (the write pass's
  ``Counters.write_pass_seconds_total``: first write to last ``send()``).
- **floor**: the bare loop of ``send()`` of the same frame over the same sockets
  (``broadcast_floor.send_loop``).

After each round the client sides are read empty (untimed). Prints per round and the best /
median per member of each, and the ratio engine / floor (what issue 18's target bounds at
1.3x). ``--only`` runs one side (for ``valgrind --tool=callgrind``: the difference between two
round counts is the user-space instructions of those rounds), ``--no-drain`` skips the reads
(the 80-byte frames of a few rounds fit in the socket buffers).

The engine side imports ``pubquiz_engine`` from wherever Python finds it: run it with
``PYTHONPATH=<a git archive of another commit>`` to measure that build against this script.
Only 127.0.0.1; every loop is bounded by N and R.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import trio
from broadcast_floor import FRAME, close_all, drain, open_pairs, send_loop

import pubquiz_engine
from pubquiz_engine.server.session import _send_entries
from pubquiz_engine.server.transport import TransportConfig, WebSocket
from pubquiz_engine.server.transport.coalescer import Coalescer
from pubquiz_engine.server.transport.config import Counters


async def run(n: int, rounds: int, only: str | None, do_drain: bool) -> dict[str, Any]:
    listener, clients, servers = open_pairs(n)
    counters = Counters()
    coalescer = Coalescer(counters)
    config = TransportConfig()
    engine: list[dict[str, float]] = []
    floor: list[dict[str, float]] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coalescer.run)
            await trio.lowlevel.checkpoint()
            members = [
                WebSocket(s, config=config, counters=counters,
                          nursery=nursery, coalescer=coalescer,
                          remote_address=("127.0.0.1", 0), request_path="/play",
                          request_headers=(), subprotocol="pubquiz.v1")
                for s in servers
            ]
            counters.connections_open = counters.connections_total = n
            for _ in range(rounds):
                if only != "floor":
                    passes, engine_total = counters.write_passes, counters.write_pass_seconds_total
                    out_before = counters.bytes_out
                    c0, t0 = time.process_time(), time.perf_counter()
                    _send_entries([(members, FRAME)])
                    while counters.write_passes == passes:
                        await trio.lowlevel.checkpoint()
                    t1, c1 = time.perf_counter(), time.process_time()
                    assert counters.bytes_out - out_before == n * len(FRAME), "a frame was not sent"
                    engine.append({"wall": t1 - t0, "cpu": c1 - c0,
                                   "own": counters.write_pass_seconds_total - engine_total,
                                   "passes": counters.write_passes - passes})
                    if do_drain:
                        drain(clients)
                if only != "engine":
                    c0 = time.process_time()
                    wall = send_loop(servers, FRAME)
                    floor.append({"wall": wall, "cpu": time.process_time() - c0})
                    if do_drain:
                        drain(clients)
            nursery.cancel_scope.cancel()
    finally:
        close_all(listener, clients, servers)
    return {"sockets": n, "rounds": rounds, "frame_bytes": len(FRAME),
            "package": pubquiz_engine.__file__, "engine": engine, "floor": floor}


def _us(seconds: float, n: int) -> float:
    return round(seconds / n * 1e6, 3)


def summary(r: dict[str, Any]) -> dict[str, Any]:
    n = r["sockets"]
    out: dict[str, Any] = {}
    for side in ("engine", "floor"):
        runs = r[side]
        if not runs:
            continue
        for key in runs[0]:
            if key == "passes":
                continue
            xs = [x[key] for x in runs]
            out[f"{side}_{key}_us_best"] = _us(min(xs), n)
            out[f"{side}_{key}_us_median"] = _us(statistics.median(xs), n)
    if r["engine"] and r["floor"]:
        for key in ("wall", "cpu"):
            out[f"ratio_{key}_median"] = round(
                out[f"engine_{key}_us_median"] / out[f"floor_{key}_us_median"], 3)
            out[f"ratio_{key}_best"] = round(
                out[f"engine_{key}_us_best"] / out[f"floor_{key}_us_best"], 3)
        out["ratio_own_median"] = round(
            out["engine_own_us_median"] / out["floor_wall_us_median"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=9000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("engine", "floor"))
    parser.add_argument("--no-drain", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not 1 <= args.n <= 9900 or not 1 <= args.rounds <= 100:
        parser.error("N must be in 1..9900 and R in 1..100")
    r = trio.run(run, args.n, args.rounds, args.only, not args.no_drain)
    r["summary"] = s = summary(r)
    if args.json:
        print(json.dumps(r))
        return
    n = r["sockets"]
    print(f"{n} sockets, {r['rounds']} rounds, {r['frame_bytes']}-byte frame; "
          f"pubquiz_engine from {r['package']}")
    for i in range(r["rounds"]):
        parts = []
        if r["engine"]:
            e = r["engine"][i]
            parts.append(f"engine {_us(e['wall'], n):.2f} us/member (own timing "
                         f"{_us(e['own'], n):.2f}, cpu {_us(e['cpu'], n):.2f}, "
                         f"{e['passes']:.0f} pass)")
        if r["floor"]:
            f = r["floor"][i]
            parts.append(f"floor {_us(f['wall'], n):.2f} us/send (cpu {_us(f['cpu'], n):.2f})")
        print(f"  round {i + 1}: " + "; ".join(parts))
    for side in ("engine", "floor"):
        if f"{side}_wall_us_median" in s:
            print(f"{side}: wall best {s[f'{side}_wall_us_best']:.2f} / median "
                  f"{s[f'{side}_wall_us_median']:.2f} us per member; cpu best "
                  f"{s[f'{side}_cpu_us_best']:.2f} / median {s[f'{side}_cpu_us_median']:.2f}")
    if "ratio_wall_median" in s:
        print(f"ratio engine / floor: wall median {s['ratio_wall_median']:.2f} (best "
              f"{s['ratio_wall_best']:.2f}); cpu median {s['ratio_cpu_median']:.2f} (best "
              f"{s['ratio_cpu_best']:.2f}); engine's own timing / floor wall, medians "
              f"{s['ratio_own_median']:.2f}")


if __name__ == "__main__":
    main()
