"""Store benchmark: answers persisted per second through WriteBehind, and ack latency.

For each ``--url`` it measures, on a fresh database:

1. **throughput**: answers pushed through ``WriteBehind`` as fast as the producer can (it waits
   on the oldest ticket whenever the queue is full), timed from the first submit to ``drain``;
2. **latency at an offered rate**: answers submitted at a steady pace (``--rate``, default
   1,000/s) for ``--seconds``; the time from ``submit`` to the ticket's completion (the
   ``durable`` ack) as p50 / p99 / max;
3. **the highest sustained rate**: the offered rate doubles from ``--rate`` until the store no
   longer keeps up (a submit refused as busy, fewer than 95 % of the offered answers submitted,
   or records still queued a second after the producer stopped); the last rate that kept up is
   reported with its latencies, and the first that did not; so is the highest rate whose
   p99 stayed under ``--p99-target`` (DESIGN.md's durable-ack target, 25 ms).

Each rate runs ``--repeat`` times (default 3) and the run with the median p99 is reported (with
every run's p99): the bench machine is shared, and one run's tail is mostly its neighbours.
Producer, ticket collector and write-behind share one trio thread, as in the server; the
database work runs on the store's own threads. Answers go to 20 sessions of 200 players.

Usage::

    .venv/bin/python bench/store_bench.py                       # both backends, defaults
    .venv/bin/python bench/store_bench.py --url sqlite:////tmp/b.sqlite3
    .venv/bin/python bench/store_bench.py --url postgresql://postgres@127.0.0.1:5432/postgres

A ``postgresql://`` URL names the *server*: the bench creates a private database
``pubquiz_bench_<random>`` there and drops it at the end (``--in-place`` uses the URL's own
database instead). A SQLite URL's file is created fresh (an existing file is refused).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from pubquiz_engine.errors import QueueFull
from pubquiz_engine.store import AnswerRecord, SessionRecord, Store, Ticket, WriteBehind, open_store

SESSIONS = 20
PLAYERS = 200  # per session
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Load:
    """Answers spread over SESSIONS sessions; unique (code, participant, request id) each."""

    def __init__(self, tag: str) -> None:
        self.codes = [f"B{tag}{i:02d}" for i in range(SESSIONS)]
        self.n = 0

    def sessions(self) -> list[SessionRecord]:
        return [
            SessionRecord(c, "Bench", {"n": 1}, "solo", time.time(), 1, "h") for c in self.codes
        ]

    def next(self) -> AnswerRecord:
        n = self.n = self.n + 1
        code = self.codes[n % SESSIONS]
        pid = (n // SESSIONS) % PLAYERS
        return AnswerRecord(code, pid, None, n % 30, {"choice": n % 4}, n, time.time(), n, 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def throughput(store: Store, count: int) -> dict[str, Any]:
    load = Load(secrets.token_hex(2))
    async with trio.open_nursery() as nursery:
        wb = WriteBehind(store)
        await nursery.start(wb.run)
        await wb.submit_many(load.sessions()).wait()
        started = time.perf_counter()
        marks: deque[Ticket] = deque()  # a ticket every 500 answers, oldest first
        for i in range(count):
            while True:
                try:
                    ticket = wb.submit(load.next())
                    break
                except QueueFull:
                    await marks.popleft().wait()  # backpressure: wait for old batches
            if i % 500 == 0:
                marks.append(ticket)
            if i % 100 == 0:
                # A server submits from many tasks that all yield; so does this producer.
                await trio.lowlevel.checkpoint()
        if not await wb.drain(timeout=120):
            raise RuntimeError("drain timed out")
        elapsed = time.perf_counter() - started
        stats = wb.stats()
        nursery.cancel_scope.cancel()
    return {
        "answers": count,
        "seconds": round(elapsed, 3),
        "answers_per_s": round(count / elapsed),
        "batches": stats.batches - 1,
        "mean_batch": round((stats.records - SESSIONS) / max(1, stats.batches - 1), 1),
    }


async def paced(store: Store, rate: int, seconds: float) -> dict[str, Any]:
    """Offer ``rate`` answers/s for ``seconds``; latency from submit to ticket completion."""
    load = Load(secrets.token_hex(2))
    latencies: list[float] = []
    tick = 0.002 if rate >= 1000 else 0.01
    send, receive = trio.open_memory_channel[tuple[float, Ticket]](float("inf"))
    offered = 0
    rejected = 0

    async def collect() -> None:
        async with receive:
            async for submitted, ticket in receive:
                await ticket.wait()
                latencies.append(time.perf_counter() - submitted)

    async with trio.open_nursery() as nursery:
        wb = WriteBehind(store)
        await nursery.start(wb.run)
        await wb.submit_many(load.sessions()).wait()
        nursery.start_soon(collect)
        start = trio.current_time()
        for i in range(1, int(seconds / tick) + 1):
            await trio.sleep_until(start + i * tick)
            # Everything due by now goes out, so a late wake-up does not lower the offered rate.
            due = int((trio.current_time() - start) * rate) - offered - rejected
            for _ in range(due):
                try:
                    ticket = wb.submit(load.next())
                except QueueFull:
                    rejected += 1
                    continue
                offered += 1
                send.send_nowait((time.perf_counter(), ticket))
        producer_done = trio.current_time()
        send.close()
        kept_up = await wb.drain(timeout=1.0)
        await wb.drain(timeout=120)
        elapsed = producer_done - start
        nursery.cancel_scope.cancel()
    return {
        "offered_per_s": rate,
        "submitted": offered,
        "rejected_busy": rejected,
        "achieved_per_s": round(offered / elapsed),
        "kept_up": kept_up and rejected == 0 and offered >= 0.95 * rate * seconds,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


async def measure(store: Store, rate: int, args: argparse.Namespace) -> dict[str, Any]:
    """``paced`` repeated ``--repeat`` times (the machine is shared and noisy): the run with the
    median p99 is reported, with every run's p99 beside it; it kept up only if all runs did."""
    runs = [await paced(store, rate, args.seconds) for _ in range(args.repeat)]
    runs.sort(key=lambda r: r["p99_ms"])
    chosen = dict(runs[len(runs) // 2])
    chosen["p99_ms_each_run"] = [r["p99_ms"] for r in runs]
    chosen["kept_up"] = all(r["kept_up"] for r in runs)
    return chosen


async def bench_one(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = await open_store(url)
    try:
        result: dict[str, Any] = {"url": url.split("?")[0]}
        result["throughput"] = await throughput(store, args.count)
        await paced(store, args.rate, 1.0)  # warm-up after the bulk load (checkpoints, stats)
        result["at_rate"] = await measure(store, args.rate, args)
        first = result["at_rate"]
        best = first if first["kept_up"] else None
        within = first if first["kept_up"] and first["p99_ms"] <= args.p99_target else None
        rate = args.rate * 2
        while rate <= args.max_rate:
            step = await measure(store, rate, args)
            print(f"  {url.split(':')[0]}: {json.dumps(step)}", file=sys.stderr)
            if not step["kept_up"]:
                result["first_not_sustained"] = step
                break
            best = step
            if step["p99_ms"] <= args.p99_target:
                within = step
            rate *= 2
        result["highest_sustained"] = best
        result[f"highest_with_p99_under_{args.p99_target:g}ms"] = within
        return result
    finally:
        await store.aclose()


@contextmanager
def private_database(server_url: str) -> Iterator[str]:
    import psycopg

    name = f"pubquiz_bench_{secrets.token_hex(4)}"
    base = server_url.rsplit("/", 1)[0]
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="store URL (repeatable); default: both")
    parser.add_argument("--in-place", action="store_true", help="use a postgresql URL's own db")
    parser.add_argument("--count", type=int, default=100_000, help="answers for throughput")
    parser.add_argument("--rate", type=int, default=1_000, help="first offered rate, answers/s")
    parser.add_argument("--max-rate", type=int, default=64_000, help="stop doubling here")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each rate step")
    parser.add_argument("--p99-target", type=float, default=25.0, help="ack p99 target, ms")
    parser.add_argument("--repeat", type=int, default=3, help="runs per rate (median p99 kept)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pubquiz-bench-") as tmp:
        urls = args.url or [f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", DEFAULT_PG]
        for url in urls:
            if (
                url.startswith("sqlite:///")
                and Path(url.removeprefix("sqlite:///").split("?")[0]).exists()
            ):
                raise SystemExit(f"{url}: file exists; the bench wants a fresh database")
            if url.startswith(("postgresql://", "postgres://")) and not args.in_place:
                with private_database(url) as private:
                    result = trio.run(bench_one, private, args)
            else:
                result = trio.run(bench_one, url, args)
            print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
