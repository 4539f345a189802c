"""The long run of the fault checker (``tests/checker``): many seeds, every fault family.

Run from the repository root with the project's virtualenv, PostgreSQL and Redis up::

    .venv/bin/python -m bench.checker --seeds 50
    .venv/bin/python -m bench.checker --seed 7 --families kill9 --faults 2   # one seed again
    .venv/bin/python -m bench.checker --seeds 10 --rid-restart               # today's clients

Each seed is one run (``tests/checker/runner.py``): two engine processes on PostgreSQL and
Redis, ``--players`` players and a host, ``--faults`` faults drawn from ``--families``.
It prints one line per seed, every anomaly with its history and the command that repeats
its seed, and the totals; the figures go to ``bench/results/checker-<time>.json``. It uses
its own PostgreSQL database (created, then dropped) and its own Redis key prefix (deleted).
The exit status is 1 when any anomaly was found.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the checker lives with the tests (it is one)

from checker.cluster import FAMILIES  # noqa: E402
from checker.properties import PROPERTIES  # noqa: E402
from checker.runner import RunConfig, RunReport, run  # noqa: E402

PG_ADMIN_URL = os.environ.get("PUBQUIZ_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PUBQUIZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(x for x in text.split(",") if x)
    unknown = [x for x in names if x not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {unknown} (known: {', '.join(allowed)})")
    return names


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.checker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="how many seeds (1..1000)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--seed", type=int, help="run this one seed")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help=f"comma-separated fault families (of {', '.join(FAMILIES)}); "
                        "empty for none")
    p.add_argument("--faults", type=int, default=3, help="faults per seed (0..20)")
    p.add_argument("--players", type=int, default=12, help="players per seed (1..200)")
    p.add_argument("--questions", type=int, default=5, help="questions per quiz (1..50)")
    p.add_argument("--time-limit", type=float, default=3.0, help="seconds per question")
    p.add_argument("--ack-mode", choices=("durable", "fast"), default="durable")
    p.add_argument("--rid-restart", action="store_true",
                   help="players restart their rid counter on a reload")
    p.add_argument("--props", default=",".join(PROPERTIES),
                   help="comma-separated properties to check (default: all)")
    p.add_argument("--lease-ttl-ms", type=int, default=1500)
    p.add_argument("--quiet", action="store_true", help="only the summary lines")
    args = p.parse_args(argv)
    if not 1 <= args.seeds <= 1000 or not 0 <= args.faults <= 20:
        p.error("--seeds 1..1000, --faults 0..20")
    if not 1 <= args.players <= 200 or not 1 <= args.questions <= 50:
        p.error("--players 1..200, --questions 1..50")
    args.families = _names(args.families, FAMILIES, "families")
    args.props = _names(args.props, tuple(PROPERTIES), "properties")
    return args


async def main_async(args: argparse.Namespace) -> int:
    import psycopg

    name = f"pubquiz_checker_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    postgres_url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    prefix = f"pubquiz-checker:{secrets.token_hex(4)}:"
    seeds = [args.seed] if args.seed is not None else list(
        range(args.first_seed, args.first_seed + args.seeds))
    reports: list[RunReport] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="pubquiz-checker-") as tmp:
            for seed in seeds:
                config = RunConfig(seed=seed, families=args.families,
                                   faults=args.faults if args.families else 0,
                                   players=args.players, questions=args.questions,
                                   time_limit=args.time_limit, ack_mode=args.ack_mode,
                                   rid_restart=args.rid_restart, props=args.props,
                                   lease_ttl_ms=args.lease_ttl_ms,
                                   budget=60.0 + 15.0 * args.faults + 3.0 * args.questions)
                report = await run(config, postgres_url=postgres_url, redis_url=REDIS_URL,
                                   prefix=prefix, tmp=Path(tmp))
                reports.append(report)
                print(report.summary() if args.quiet else report.render(), flush=True)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    totals = _totals(reports, time.monotonic() - started)
    print(json.dumps(totals, indent=1))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"checker-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                "totals": totals,
                                "runs": [r.summary() for r in reports]}, indent=1, default=str))
    print(f"written {path}")
    return 1 if totals["anomalies"] else 0


def _totals(reports: list[RunReport], seconds: float) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    props: Counter[str] = Counter()
    seeds_with: Counter[str] = Counter()
    for r in reports:
        answers.update(r.answers())
        faults.update(f.family for f in r.faults)
        props.update(a.prop for a in r.anomalies)
        seeds_with.update({a.prop for a in r.anomalies})
    return {"seeds": len(reports), "seconds": round(seconds, 1),
            "requests": sum(r.operations() for r in reports),
            "answers": dict(answers), "stored": sum(r.stored for r in reports),
            "faults": dict(faults), "faults_total": sum(faults.values()),
            "takeovers": sum(r.takeovers() for r in reports),
            "anomalies": sum(props.values()), "anomalies_by_property": dict(props),
            "seeds_with_anomaly_by_property": dict(seeds_with)}


def main(argv: list[str] | None = None) -> int:
    return trio.run(main_async, parse(argv))


if __name__ == "__main__":
    raise SystemExit(main())
