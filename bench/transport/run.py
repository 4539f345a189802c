#!/usr/bin/env python3
"""Reproduce the perf-baselines trio_eager row and measure our transport in the same run.

  .venv/bin/python bench/transport/run.py                 # N=1000, 3 reps
  .venv/bin/python bench/transport/run.py --n 100,1000,5000 --reps 3

Drives the shared, read-only harness (``/work/shared/perf-baselines/run_bench.py`` and its
``loadgen.js``) unchanged: it is imported as a module and two server entries are added to its
``SERVERS`` table: ``pubquiz`` = ``quizproto_server.py`` on ``pubquiz_engine.server.transport``
with its defaults (writes coalesced per scheduler pass), and ``pubquiz_eager`` = the same with
``coalesce_writes=False`` (every frame sent at once, like the baseline prototype).
All servers run on this repository's virtualenv Python (the baseline server only needs trio,
wsproto and msgpack). Reps rotate the servers (A B C, B C A, ...) so that drift on a noisy
machine hits both rows alike. Node modules come from ``npm install`` in this folder.

Prints the medians side by side; raw lines go to ``bench/transport/results/raw.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("PERF_BASELINES", "/work/shared/perf-baselines")
os.environ.setdefault("PERF_PY", sys.executable)
os.environ.setdefault("PERF_NODE_MODULES", os.path.join(HERE, "node_modules"))
# quizproto_server.py imports pubquiz_engine from this checkout.
os.environ["PYTHONPATH"] = (
    os.path.dirname(os.path.dirname(HERE)) + os.pathsep + os.environ.get("PYTHONPATH", "")
)
sys.path.insert(0, SHARED)
import run_bench  # noqa: E402  (the shared harness; needs the environment set above)

run_bench.SERVERS["pubquiz"] = (
    "pubquiz transport (wsproto; eager sends coalesced per scheduler pass)",
    [os.environ["PERF_PY"], os.path.join(HERE, "quizproto_server.py"), "{port}"],
    "ws",
)
run_bench.SERVERS["pubquiz_eager"] = (
    "pubquiz transport, coalesce_writes=False",
    [os.environ["PERF_PY"], os.path.join(HERE, "quizproto_server.py"), "{port}", "--eager"],
    "ws",
)
SERVERS = ["trio_eager", "pubquiz", "pubquiz_eager"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--tag", default=time.strftime("transport-%Y%m%dT%H%M%S"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "raw.jsonl"))
    a = ap.parse_args()
    if not os.path.isdir(os.environ["PERF_NODE_MODULES"]):
        sys.exit(f"no node modules: run `npm install` in {HERE}")
    for rep in range(a.reps):
        order = SERVERS[rep % len(SERVERS) :] + SERVERS[: rep % len(SERVERS)]
        for name in order:
            sys.argv = [
                "run_bench.py",
                "--server",
                name,
                "--n",
                a.n,
                "--reps",
                "1",
                "--out",
                a.out,
                "--tag",
                a.tag,
            ] + (["--k", str(a.k)] if a.k else [])
            run_bench.main()
    summarize(a.out, a.tag)


def summarize(path: str, tag: str) -> None:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r.get("tag") == tag]
    ns = sorted({r.get("n") for r in rows if r.get("n")})

    def med(xs: list[float | None]) -> float | None:
        xs2 = [x for x in xs if x is not None]
        return statistics.median(xs2) if xs2 else None

    print(f"\ntag={tag}: medians over reps")
    print(
        f"{'N':>6} | {'server':16} | {'msgs/s':>9} | {'RSS/conn KiB':>12} | {'srv CPU%':>8} | "
        f"{'lg CPU%':>7} | each rep (msgs/s)"
    )
    for n in ns:
        base = None
        for name in SERVERS:
            rs = [r for r in rows if r.get("n") == n and r["server"] == name]
            runs = [r.get("run", {}) for r in rs]
            rate = med([x.get("bcast_msgs_per_s") for x in runs])
            rss = med([r.get("rss_per_conn_kib") for r in rs])
            cpu = med([x.get("server_cpu_pct") for x in runs])
            lg = med([x.get("loadgen_cpu_pct") for x in runs])
            each = ", ".join(f"{x.get('bcast_msgs_per_s', 0):.0f}" for x in runs)
            ratio = f"  ({rate / base:.2f}x trio_eager)" if base and rate else ""
            base = base or rate
            print(
                f"{n:>6} | {name:16} | {rate or 0:9.0f} | {rss or 0:12.1f} | {cpu or 0:8.0f} | "
                f"{lg or 0:7.0f} | {each}{ratio}"
            )


if __name__ == "__main__":
    main()
