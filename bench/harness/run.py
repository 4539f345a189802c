"""The harness's command line: ``python -m bench.harness <scenario> [options]``.

```
python -m bench.harness connections [--n 5000] [--per-session 1000] [--workers 4]
python -m bench.harness fanout      [--sessions 10] [--players 100] [--rounds 20]
                                    [--pace lockstep|flood]
python -m bench.harness answers     [--players 1000] [--rate 1000] [--duration 5]
                                    [--ack-modes fast,durable] [--stores sqlite,postgres]
python -m bench.harness quiz-night  [--sessions 5] [--players 20] [--teams 5]
                                    [--store sqlite|postgres] [--ack-mode durable|fast]
common: [--workers W] [--addresses A] [--no-pin] [--keep] [--results DIR]
```

Each run starts its own engine (``pubquiz-engine serve`` on 127.0.0.1, a free port, a private
data directory or a private PostgreSQL database), pins it to the first allowed core and the load
generator (this process and its workers) to the others, writes ``bench/results/<scenario>-<UTC>
.json`` and prints a table. The exit code is 0 when the run saw no problem, 1 when it did (the
figures are still written), 2 for bad options.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from bench.harness import scenarios
from bench.harness.baselines import BASELINES, DEFAULT_BASELINES
from bench.harness.report import RESULTS_DIR, table, write_result
from bench.harness.system import CorePlan, core_plan, machine, raise_nofile_limit

MAX_CONNECTIONS = 19_000  # DESIGN 9: these machines cap a process at 20,000 open files

Scenario = Callable[[scenarios.Context, dict[str, Any]], Awaitable[scenarios.Outcome]]
SCENARIOS: dict[str, Scenario] = {
    "connections": scenarios.connections,
    "fanout": scenarios.fanout,
    "answers": scenarios.answers,
    "quiz-night": scenarios.quiz_night,
    "rapid": scenarios.rapid,
    "sustained": scenarios.sustained,
}


def _bounded(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, got {value}")
        return value
    return parse


def _positive_float(hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not 0 < value <= hi:
            raise argparse.ArgumentTypeError(f"must be > 0 and <= {hi}, got {value}")
        return value
    return parse


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return values
    return parse


def _choices_or_none(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    inner = _choices(allowed)

    def parse(text: str) -> list[str]:
        return [] if text.strip() == "none" else inner(text)
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.harness",
                                     description="Benchmark scenarios against the real engine.")
    sub = parser.add_subparsers(dest="scenario", required=True)

    def common(p: argparse.ArgumentParser, workers: int) -> None:
        p.add_argument("--workers", type=_bounded(1, 32), default=workers,
                       help=f"load generator processes (default {workers})")
        p.add_argument("--addresses", type=_bounded(1, 250), default=None,
                       help="loopback source addresses 127.0.0.1..N (default: 1 per 1,000 "
                       "connections)")
        p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
        p.add_argument("--keep", action="store_true", help="keep the work directory (logs, db)")
        p.add_argument("--results", type=Path, default=RESULTS_DIR,
                       help="directory for the JSON result (default bench/results)")
        p.add_argument("--ws-client", choices=("lean", "ws"), default="lean",
                       help="WebSocket client of the Node load generators (worker.js and the "
                       "baselines' loadgen.js): lean (bench/baselines/leanws.js, plain net "
                       "sockets) or ws (the ws package's client, as before 2026-12-06) "
                       "(default lean)")

    def client_option(p: argparse.ArgumentParser, default: str) -> None:
        p.add_argument("--client", choices=("node", "python"), default=default,
                       help="load generator players: node (bench/harness/worker.js, ws) or "
                       f"python (worker.py, trio-websocket) (default {default})")

    def baselines_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--baselines", type=_choices_or_none(tuple(BASELINES)),
                       default=list(DEFAULT_BASELINES),
                       help="same-run baselines, comma-separated, or 'none' (default "
                       f"{','.join(DEFAULT_BASELINES)}; also: pubquiz_transport)")

    c = sub.add_parser("connections", help="N players connect and join; RSS per connection")
    c.add_argument("--n", type=_bounded(1, MAX_CONNECTIONS), default=5000)
    c.add_argument("--per-session", type=_bounded(1, 5000), default=1000,
                   help="players per session (default 1000)")
    c.add_argument("--concurrency", type=_bounded(1, 2000), default=100,
                   help="handshakes in flight per worker (default 100)")
    c.add_argument("--settle", type=_positive_float(30), default=1.0,
                   help="seconds between the last join and the RSS reading (default 1)")
    c.add_argument("--broadcasts", type=_bounded(1, 9), default=5,
                   help="questions broadcast to all after the joins, each timed on its own; "
                   "the ratio to the send() floor is their median's (default 5)")
    c.add_argument("--ping-only", action="store_true",
                   help="each player sends a ping instead of its join and stays connected, in "
                   "no session (no broadcast): the connection alone, with one request each "
                   "way, as a baseline's join (an echo) is; needs --client node")
    baselines_option(c)
    client_option(c, "node")
    common(c, 4)

    f = sub.add_parser("fanout", help="S sessions x P players; hosts push questions")
    f.add_argument("--sessions", type=_bounded(1, 2000), default=10)
    f.add_argument("--players", type=_bounded(1, 5000), default=100,
                   help="players per session (default 100)")
    f.add_argument("--rounds", type=_bounded(1, 200), default=20,
                   help="questions per session (default 20)")
    f.add_argument("--pace", choices=("lockstep", "flood"), default="lockstep",
                   help="lockstep: a host closes a question once all its players have it; "
                   "flood: hosts never wait (default lockstep)")
    f.add_argument("--answer", action=argparse.BooleanOptionalAction, default=True,
                   help="every player answers every question at once, as the baselines' "
                   "clients do (default on; needs --client node)")
    f.add_argument("--ack-mode", choices=("fast", "durable"), default="durable",
                   help="the engine's ack mode (default durable: every answer committed)")
    baselines_option(f)
    client_option(f, "node")
    common(f, 2)

    a = sub.add_parser("answers", help="answer ack latency at an offered rate")
    a.add_argument("--players", type=_bounded(1, 5000), default=1000)
    a.add_argument("--rate", type=_positive_float(50_000), default=1000.0,
                   help="answers per second offered, all workers together (default 1000)")
    a.add_argument("--duration", type=_positive_float(120), default=5.0,
                   help="seconds of load per configuration (default 5)")
    a.add_argument("--ack-modes", type=_choices(("fast", "durable")),
                   default=["fast", "durable"])
    a.add_argument("--stores", type=_choices(("sqlite", "postgres")),
                   default=["sqlite", "postgres"])
    client_option(a, "node")
    common(a, 2)

    q = sub.add_parser("quiz-night", help="the sample quiz end to end, checked in the store")
    q.add_argument("--sessions", type=_bounded(1, 2000), default=5)
    q.add_argument("--players", type=_bounded(1, 200), default=20,
                   help="players per session (default 20)")
    q.add_argument("--teams", type=_bounded(1, 50), default=5, help="teams per session")
    q.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    q.add_argument("--ack-mode", choices=("fast", "durable"), default="durable")
    q.add_argument("--answer-delay", type=_positive_float(10), default=0.3,
                   help="players answer after a random 0..D seconds (default 0.3)")
    q.add_argument("--timeout", type=_positive_float(3600), default=300.0,
                   help="bound on the whole quiz in seconds (default 300)")
    client_option(q, "python")  # python validates every frame with codec.decode; node does not
    common(q, 2)

    r = sub.add_parser("rapid", help="connect-join-leave churn: cycles per second")
    r.add_argument("--duration", type=_positive_float(3600), default=10.0,
                   help="seconds of churn (default 10)")
    r.add_argument("--concurrency", type=_bounded(1, 2000), default=50,
                   help="cycles in flight per worker (default 50)")
    r.add_argument("--sessions", type=_bounded(1, 2000), default=10,
                   help="sessions the players join, round-robin (default 10)")
    r.add_argument("--baseline-n", type=_bounded(1, 19_000), default=1000,
                   help="clients of the baselines' connect+join figure (default 1000)")
    baselines_option(r)
    common(r, 2)

    u = sub.add_parser("sustained", help="a long steady run: RSS, fds, ack latency over time")
    u.add_argument("--duration", type=_positive_float(24 * 3600), default=60.0,
                   help="seconds of load (default 60)")
    u.add_argument("--interval", type=_positive_float(600), default=5.0,
                   help="seconds per question and per sample (default 5)")
    u.add_argument("--rate", type=_positive_float(50_000), default=200.0,
                   help="answers per second offered (default 200)")
    u.add_argument("--players", type=_bounded(1, 5000), default=500)
    u.add_argument("--churn", type=_bounded(0, 500), default=5,
                   help="connect-join-leave lanes beside the answers, 0 for none (default 5)")
    u.add_argument("--quiz-questions", type=_bounded(0, 500), default=10,
                   help="questions per quiz: quizzes run back to back, each a new session "
                   "the players join, the last one ended (0: one quiz for the whole run)")
    u.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    u.add_argument("--ack-mode", choices=("fast", "durable"), default="durable")
    common(u, 1)
    return parser


def setup() -> int:
    """Install what the bench needs beyond the project's virtualenv: the Node modules of
    ``bench/baselines`` (npm). matplotlib is only needed by ``chart``: its absence is a note,
    not a failure (the scenarios run without it)."""
    here = Path(__file__).resolve().parents[1] / "baselines"
    npm = shutil.which("npm")
    if npm is None:
        print("npm is not installed: install Node.js 18+ and npm first", file=sys.stderr)
        return 1
    verb = "ci" if (here / "package-lock.json").exists() else "install"
    done = subprocess.run([npm, verb, "--no-audit", "--no-fund"], cwd=here, check=False)
    if done.returncode != 0:
        return done.returncode
    print(f"ready: Node modules in {here / 'node_modules'}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("note: `chart` also needs matplotlib: .venv/bin/pip install matplotlib "
              "(or the bench extra)", file=sys.stderr)
    return 0


def chart(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness chart")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "chart.png")
    args = parser.parse_args(argv)
    from bench.harness.chart import draw

    print(f"chart: {draw(args.results, args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["setup"]:
        return setup()
    if argv[:1] == ["chart"]:
        return chart(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "ping_only", False) and args.client != "node":
        parser.error("--ping-only needs the Node players (--client node)")
    params = {k: v for k, v in vars(args).items()
              if k not in ("scenario", "no_pin", "keep", "results")}
    # Both Node load generators (worker.js, loadgen.js) read it; children inherit it.
    os.environ["PUBQUIZ_BENCH_WS_CLIENT"] = args.ws_client
    raise_nofile_limit()
    machine_info = machine()  # before pinning this process (nproc counts allowed cores)
    plan = CorePlan(engine=(), loadgen=()) if args.no_pin else core_plan()
    if plan.loadgen:
        # This process (hosts, operator) counts as load generator too.
        os.sched_setaffinity(0, set(plan.loadgen))
    work_dir = Path(tempfile.mkdtemp(prefix=f"pubquiz-bench-{args.scenario}-"))
    ctx = scenarios.Context(plan=plan, work_dir=work_dir)
    started = time.time()
    load_before = os.getloadavg()
    failure: str | None = None
    outcome = scenarios.Outcome()
    try:
        outcome = trio.run(SCENARIOS[args.scenario], ctx, params)
    except Exception as exc:  # report it with whatever was measured; the traceback follows
        failure = f"{type(exc).__name__}: {exc}"
        import traceback

        traceback.print_exc()
        log = work_dir.rglob("engine.log")
        for path in log:
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            outcome.problems.append(f"engine log {path.name} tail: " + " | ".join(tail))
    document = {
        "scenario": args.scenario,
        "command": "python -m bench.harness " + shlex.join(argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info,
        # Other work on the machine (other people's tests and benchmarks) moves the figures.
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cores": plan.describe(),
        "params": params,
        "figures": outcome.figures,
        "problems": outcome.problems + ([f"run failed: {failure}"] if failure else []),
    }
    path = write_result(args.scenario, document, args.results)
    info = document["machine"]
    title = (f"{args.scenario}: {info['nproc']} CPUs ({info['cpu_model']}), "
             f"{info['ram_gib']} GiB; engine on cores {plan.describe()['engine']}, load "
             f"generator on {plan.describe()['loadgen']}")
    print(table(title, outcome.rows))
    for problem in document["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"result: {path}")
    if args.keep or failure:
        print(f"work directory kept: {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if document["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
