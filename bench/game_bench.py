"""Benchmark of the pure game core: the answer hot path and leaderboard cost.

Run: ``.venv/bin/python bench/game_bench.py`` (add ``--json`` for machine-readable output).

What it measures, in one process, no I/O:
1. ``SubmitAnswer`` throughput: 100,000 answer commands applied to one session (1,000 players
   on a single-choice question, then 1,000 players on a free-text question; each player answers
   100 times, so most commands are changes of answer, as under a real rush).
2. ``Reveal`` of a question with 10,000 answers (the moment every score changes).
3. Standings for 1,000 and 10,000 players: computing them from scratch (the cache is emptied
   before each run), and the cached ``rank_of`` lookup each player's phone asks for.

Every figure is the median of several runs; the machine's noise shows in min..max.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from pubquiz_engine.game import (
    AdjustScore,
    CloseQuestion,
    GameSession,
    Join,
    Next,
    Reveal,
    SessionOptions,
    Start,
    SubmitAnswer,
    load_quiz_data,
)

T0 = 1_700_000_000.0


def bench_quiz() -> dict[str, Any]:
    return {
        "title": "Bench",
        "rounds": [{"title": "R", "items": [
            {"kind": "single", "prompt": "Pick", "choices": ["a", "b", "c", "d"], "answer": 2,
             "time_limit": 3600, "speed_bonus": 5},
            {"kind": "text", "prompt": "Band?", "answer": ["The Beatles"], "time_limit": 3600,
             "ignore_articles": True, "typos": 1},
        ]}],
    }


def session_with(players: int) -> GameSession:
    quiz = load_quiz_data(bench_quiz(), source="bench")
    session = GameSession(quiz, SessionOptions(max_participants=players))
    for i in range(players):
        session.apply(Join(f"Player {i}", None), T0)
    return session


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_answers(players: int, per_player: int, repeat: int) -> dict[str, Any]:
    rng = random.Random(1)
    texts = ["The Beatles", "beatles", "Beetles", "The Stones", "ABBA"]
    results: dict[str, Any] = {}
    for question, label in ((0, "single"), (1, "text")):
        runs = []
        for _ in range(repeat):
            session = session_with(players)
            session.apply(Start(), T0)
            if question == 1:
                session.apply(CloseQuestion(), T0)
                session.apply(Reveal(), T0)
                session.apply(Next(), T0)
            commands = [
                SubmitAnswer(p, question, rng.randrange(4) if question == 0 else rng.choice(texts),
                             r)
                for r in range(per_player) for p in range(1, players + 1)
            ]
            now = T0 + 1.0
            start = time.perf_counter()
            for cmd in commands:
                session.apply(cmd, now)
            runs.append(time.perf_counter() - start)
            assert len(session.answers(question)) == players
        n = players * per_player
        results[label] = {
            "commands": n,
            "commands_per_s_median": round(n / statistics.median(runs)),
            "commands_per_s_min": round(n / max(runs)),
            "commands_per_s_max": round(n / min(runs)),
            "us_per_command": round(statistics.median(runs) / n * 1e6, 2),
        }
    return results


def bench_reveal(players: int, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        session = session_with(players)
        session.apply(Start(), T0)
        rng = random.Random(2)
        for p in range(1, players + 1):
            session.apply(SubmitAnswer(p, 0, rng.randrange(4), 1), T0 + rng.random() * 30)
        session.apply(CloseQuestion(), T0 + 31)
        start = time.perf_counter()
        session.apply(Reveal(), T0 + 32)
        runs.append(time.perf_counter() - start)
    return {"answers": players, "ms_median": round(statistics.median(runs) * 1e3, 2)}


def bench_standings(players: int, repeat: int) -> dict[str, Any]:
    session = session_with(players)
    rng = random.Random(3)
    for p in range(1, players + 1):
        delta = rng.randrange(1, 60)  # many equal scores: ties are the expensive case
        session.apply(AdjustScore(p, delta, "bench"), T0)

    def from_scratch() -> None:
        session._cache.clear()  # the cost a command that moved scores leaves for the next call
        session.standings()

    cold = timed(from_scratch, repeat)
    session.standings()
    ids = list(range(1, players + 1))
    start = time.perf_counter()
    for pid in ids:
        session.rank_of(pid)
    per_lookup = (time.perf_counter() - start) / players
    top = timed(lambda: session.standings()[:10], repeat)
    return {
        "players": players,
        "standings_ms_median": round(statistics.median(cold) * 1e3, 2),
        "standings_ms_min": round(min(cold) * 1e3, 2),
        "standings_ms_max": round(max(cold) * 1e3, 2),
        "cached_top10_us": round(statistics.median(top) * 1e6, 2),
        "rank_of_cached_us": round(per_lookup * 1e6, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "answers": bench_answers(players=1000, per_player=100, repeat=min(args.repeat, 3)),
        "reveal": bench_reveal(players=10_000, repeat=min(args.repeat, 3)),
        "standings": [bench_standings(n, args.repeat) for n in (1_000, 10_000)],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"pubquiz-engine game core bench (python {report['python']})")
    for label, r in report["answers"].items():
        print(f"  SubmitAnswer ({label:6}): {r['commands']:,} commands, "
              f"{r['commands_per_s_median']:,}/s median ({r['commands_per_s_min']:,}.."
              f"{r['commands_per_s_max']:,}), {r['us_per_command']} us each")
    rv = report["reveal"]
    print(f"  Reveal with {rv['answers']:,} answers: {rv['ms_median']} ms")
    for s in report["standings"]:
        print(f"  standings, {s['players']:,} players: {s['standings_ms_median']} ms from scratch "
              f"({s['standings_ms_min']}..{s['standings_ms_max']}); cached top-10 "
              f"{s['cached_top10_us']} us; rank_of {s['rank_of_cached_us']} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
