"""What output commit costs: the latency of a phase change, answer throughput, a broadcast.

Run from the repository root with the project's virtualenv (PostgreSQL and Redis up for those
back ends)::

    .venv/bin/python -m bench.phase_commit --backend sqlite
    .venv/bin/python -m bench.phase_commit --backend postgres
    .venv/bin/python -m bench.phase_commit --backend postgres+redis --players 200

"Before" figures: the same file against another checkout's code, e.g.
``PYTHONPATH=/path/to/main .venv/bin/python bench/phase_commit.py ...`` (the script imports the
``pubquiz_engine`` it finds first).

One engine in this process, ``--players`` players and a host on loopback (trio-websocket
clients, in this process too: figures are for comparing two builds on one machine, not
absolute). Measured, per run:

- **phase change**: ``--changes`` times, the host sends ``close``, ``reveal`` and ``next`` (opens
  a question); the latency is from the host's send to the moment the *last* player has the
  event (and, for ``close``, to the host's ``ok``). Output commit adds one group commit (and
  with Redis one snapshot write after it) to it.
- **answers**: every player sends ``--answers`` answers back to back on an open question
  (changing its choice); answers/s is acked answers over the wall time of the burst.
- **broadcast**: the ``next`` latency above with ``--players`` members is the broadcast.
- **held**: inside the engine, how long each phase change's frames waited in the session's
  outbox for their commit (and snapshot): what output commit adds, without the clients'
  own time (none on a build without the outbox).

``--sessions N`` plays N sessions at once (each with ``--players`` players and a host, each
running its own rounds concurrently), so their phase changes, commits and snapshot writes
overlap: the figures pool every session's. It prints the 1-minute load average at the start
and at the end (the machine may be shared).

It prints one JSON object (and ``--out`` writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio

if __package__ in (None, ""):
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import pubquiz_engine
from pubquiz_engine.client import Client, open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import running_engine

PG_ADMIN_URL = os.environ.get("PUBQUIZ_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PUBQUIZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def quiz(questions: int) -> dict[str, Any]:
    return {"format": 1, "title": "Phase bench", "rounds": [{"title": "R", "items": [
        {"kind": "single", "prompt": f"Q{i}?", "choices": ["a", "b", "c", "d"], "answer": "a",
         "time_limit": 600} for i in range(questions)]}]}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 3),
            "p99_ms": round(pct(values, 99) * 1000, 3),
            "mean_ms": round(statistics.fmean(values) * 1000, 3)}


async def wait_all(players: list[Client], cls: type[m.Message]) -> None:
    async with trio.open_nursery() as nursery:
        for player in players:
            nursery.start_soon(player.next_event, cls)


def watch_holds(held: list[float]) -> None:
    """Record, per released outbox chunk, how long it was held (its commit and snapshot): the
    latency output commit adds to what it holds. A build without an outbox records nothing
    (it adds nothing: it sends at once)."""
    from pubquiz_engine.server import session as live

    if not hasattr(live.LiveSession, "_pump"):
        return
    original = live.LiveSession._pump

    def pump(self: Any) -> None:
        heads = list(self._outbox)
        original(self)
        now = trio.current_time()
        held.extend(now - chunk.since for chunk in heads if chunk not in self._outbox)

    live.LiveSession._pump = pump  # type: ignore[method-assign]


@attrs.define
class Figures:
    """Every session's timings, pooled."""

    opened: list[float] = attrs.Factory(list)
    closed: list[float] = attrs.Factory(list)
    revealed: list[float] = attrs.Factory(list)
    ok_after: list[float] = attrs.Factory(list)
    rates: list[float] = attrs.Factory(list)


async def bench(args: argparse.Namespace, config: ServerConfig) -> dict[str, Any]:
    changes = args.changes
    held: list[float] = []
    watch_holds(held)
    figures = Figures()
    async with running_engine(config) as (engine, address):
        url = address.url
        async with trio.open_nursery() as keep:
            games: list[tuple[Client, list[Client]]] = []
            for _ in range(args.sessions):
                session, host_token = await engine.open_session(
                    load_quiz_data(quiz(changes + 1)), mode="solo")
                host = await keep.start(_player, url)
                await host.host(session.code, host_token)
                players: list[Client] = []
                for i in range(args.players):
                    client = await keep.start(_player, url)
                    await client.join(session.code, f"P{i}")
                    players.append(client)
                games.append((host, players))
            async with trio.open_nursery() as starting:
                for host, players in games:
                    starting.start_soon(_start, host, players)
            # Only the chunks of host commands (close, reveal, next), not the joins and starts.
            baseline = len(held)
            async with trio.open_nursery() as play:
                for host, players in games:
                    play.start_soon(_play, host, players, args, figures)
            keep.cancel_scope.cancel()
    holds = held[baseline:]
    return {"held_by_output_commit": ms(holds) if holds else None,
            "close_to_all": ms(figures.closed), "reveal_to_all": ms(figures.revealed),
            "next_to_all": ms(figures.opened), "close_ok": ms(figures.ok_after),
            "answers_per_s": (round(statistics.median(figures.rates), 1)
                              if figures.rates else None)}


async def _start(host: Client, players: list[Client]) -> None:
    await host.request(m.Start)
    await wait_all(players, m.Question)


async def _play(host: Client, players: list[Client], args: argparse.Namespace,
                figures: Figures) -> None:
    """One session's rounds; with ``--sessions`` above 1 the sessions play theirs at once."""
    for n in range(args.changes):
        # Answers on the open question (the first `answer_rounds` questions).
        if n < args.answer_rounds:
            started = trio.current_time()
            async with trio.open_nursery() as burst:
                for player in players:
                    burst.start_soon(_answers, player, n, args.answers)
            figures.rates.append(args.answers * len(players)
                                 / (trio.current_time() - started))
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_all, players, m.Closed)
            await host.request(m.Close)
            figures.ok_after.append(trio.current_time() - started)
        figures.closed.append(trio.current_time() - started)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_all, players, m.Revealed)
            await host.request(m.Reveal)
        figures.revealed.append(trio.current_time() - started)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_all, players, m.Question)
            await host.request(m.Next)
        figures.opened.append(trio.current_time() - started)


async def _player(url: str, *, task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED
                  ) -> None:
    async with open_client(url) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def _answers(player: Client, q: int, count: int) -> None:
    for i in range(count):
        await player.answer(q, i % 4)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    database_url: str
    cleanup: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="pubquiz-phase-") as tmp:
        if args.backend == "sqlite":
            database_url = f"sqlite:///{tmp}/bench.db"
        else:
            import psycopg

            name = f"pubquiz_phase_{secrets.token_hex(4)}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            database_url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
            cleanup.append(name)
        prefix = f"pubquiz-phase:{secrets.token_hex(4)}:"
        config = ServerConfig(
            port=0, data_dir=tmp, database_url=database_url, ack_mode=args.ack_mode,
            redis_url=REDIS_URL if args.backend.endswith("+redis") else None,
            redis_prefix=prefix, join_rate=100000.0, join_burst=100000,
            message_rate=100000.0, message_burst=100000,
            max_connections_per_address=100000)
        try:
            figures = await bench(args, config)
        finally:
            for name in cleanup:
                import psycopg

                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if args.backend.endswith("+redis"):
                import redis

                client = redis.Redis.from_url(REDIS_URL)
                keys = list(client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
    return {"engine": os.path.dirname(os.path.dirname(pubquiz_engine.__file__)),
            "backend": args.backend, "ack_mode": args.ack_mode, "sessions": args.sessions,
            "players": args.players,
            "changes": args.changes, "answers_each": args.answers, **figures,
            "load_1min_at_start": args.load_at_start, "load_1min": os.getloadavg()[0],
            "started": args.started, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                  time.gmtime())}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.phase_commit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("sqlite", "postgres", "postgres+redis"),
                   default="sqlite")
    p.add_argument("--ack-mode", choices=("durable", "fast"), default="durable")
    p.add_argument("--players", type=int, default=50, help="players per session")
    p.add_argument("--sessions", type=int, default=1,
                   help="sessions played at once, their phase changes concurrent")
    p.add_argument("--changes", type=int, default=40, help="close + reveal + next rounds")
    p.add_argument("--answers", type=int, default=10, help="answers per player per burst")
    p.add_argument("--answer-rounds", type=int, default=5, help="questions with a burst")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    args.load_at_start = os.getloadavg()[0]
    args.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = trio.run(main_async, args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
