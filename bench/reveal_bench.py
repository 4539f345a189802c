"""Micro-benchmark: the personal lines a reveal sends to N players (engine hot spot).

Run: ``.venv/bin/python bench/reveal_bench.py 1000`` (N players, default 1000).

After ``Revealed`` every player who answered gets their own ``result`` message. This times,
in one process and without I/O, the old way (per player: ``rank_of`` for the score, encode,
frame) against the engine's ways since the fan-out profile (``score_of``; players with equal
lines share one encoded frame: ``LiveSession._personal``, keyed first by the ``Result``, since
2026-12-06 by a tuple of its fields), and checks all give the same bytes.
The ranking cache is emptied before each run: a reveal invalidates it in the engine too.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from game_bench import T0, session_with  # type: ignore[import-not-found]

from pubquiz_engine.game import CloseQuestion, Reveal, Start, SubmitAnswer
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server import views
from pubquiz_engine.server.transport import frame_binary


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    game = session_with(n)
    game.apply(Start(), T0 + 1)
    for pid in list(game.participants):
        game.apply(SubmitAnswer(participant=pid, question=0, value=pid % 4, request_id=2),
                   T0 + 2 + pid * 1e-4)
    game.apply(CloseQuestion(), T0 + 10)
    game.apply(Reveal(), T0 + 11)
    pids = list(game.participants)

    def old() -> list[bytes]:
        out = []
        for pid in pids:
            outcome = game.outcome_of(pid, 0)
            assert outcome is not None
            line = game.rank_of(pid, teams=False)
            result = m.Result(q=0, correct=outcome[0], points=int(outcome[1]),
                              score=int(line.score) if line is not None else 0,
                              answered=True)
            out.append(frame_binary(codec.encode(result)))
        return out

    def new() -> list[bytes]:
        frames: dict[m.Message, bytes] = {}
        out = []
        for pid in pids:
            result = views.result(game, pid, 0)
            assert result is not None
            frame = frames.get(result)
            if frame is None:
                frame = frames[result] = frame_binary(codec.encode(result))
            out.append(frame)
        return out

    def keyed() -> list[bytes]:
        # The engine's way since 2026-12-06: lines compared as plain tuples, a Result built
        # once per distinct line (``views.result_fields``).
        frames: dict[tuple[bool, int, int, bool], bytes] = {}
        out = []
        for pid in pids:
            fields = views.result_fields(game, pid, 0)
            assert fields is not None
            frame = frames.get(fields)
            if frame is None:
                frame = frames[fields] = frame_binary(
                    codec.encode(views.result_message(0, fields)))
            out.append(frame)
        return out

    assert old() == new() == keyed(), "every way must send the same bytes"
    for name, fn in (("before (rank_of, encode per player)", old),
                     ("score_of, one frame per Result", new),
                     ("score_of, one frame per line as a tuple", keyed)):
        times = []
        for _ in range(15):
            game._cache.clear()  # a reveal empties it in the engine too
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"N={n} {name}: median {med * 1e3:.2f} ms per reveal "
              f"({med / n * 1e6:.2f} us per player), min {min(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
