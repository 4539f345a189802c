"""How many pubquiz.v1 frames per second the codec encodes and decodes, per core.

Run ``python bench/codec_bench.py`` (``--repeat``/``--seconds`` to taste). Two typical frames:
a player's ``answer`` (decoded by the server for every answer) and a ``question`` broadcast
(encoded once per event by the server, decoded once per phone). For reference it also times the
bare ``msgpack.packb``/``unpackb`` of the same frame, so the codec's own overhead (building and
validating the message) reads as a ratio that holds on a noisy machine.

Each figure is the median of ``--repeat`` runs; a run calls the operation in a tight loop for
about ``--seconds`` seconds, timed with ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pubquiz_engine.protocol import (
    Answer,
    Direction,
    Question,
    decode,
    encode,
)

ANSWER = Answer(rid=1234, q=7, value=2)
QUESTION = Question(
    seq=4321,
    q=7,
    round=1,
    number=3,
    kind="single",
    prompt="Which planet in our solar system has the most moons?",
    choices=("Jupiter", "Saturn", "Uranus", "Neptune"),
    media=None,
    points=10,
    time_limit_ms=20_000,
    deadline_ms=1_767_225_620_000,
)


def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second over one run of about ``seconds``."""
    # Calibrate a batch size so that the clock is read rarely.
    batch = 1
    while True:
        started = time.perf_counter()
        for _ in range(batch):
            operation()
        elapsed = time.perf_counter() - started
        if elapsed > 0.02:
            break
        batch *= 4
    batches = max(1, int(seconds / elapsed))
    started = time.perf_counter()
    for _ in range(batches):
        for _ in range(batch):
            operation()
    return batches * batch / (time.perf_counter() - started)


def _median_rate(operation: Callable[[], object], repeat: int, seconds: float) -> float:
    return statistics.median(_rate(operation, seconds) for _ in range(repeat))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one run")
    args = parser.parse_args(argv)

    answer_frame = encode(ANSWER)
    question_frame = encode(QUESTION)
    answer_wire = ANSWER.to_wire()
    question_wire = QUESTION.to_wire()
    s2c = Direction.SERVER_TO_CLIENT
    cases: list[tuple[str, int, Callable[[], object], Callable[[], object]]] = [
        (
            "answer: encode",
            len(answer_frame),
            lambda: encode(ANSWER),
            lambda: msgpack.packb(answer_wire),
        ),
        (
            "answer: decode",
            len(answer_frame),
            lambda: decode(answer_frame),
            lambda: msgpack.unpackb(answer_frame),
        ),
        (
            "question: encode",
            len(question_frame),
            lambda: encode(QUESTION),
            lambda: msgpack.packb(question_wire),
        ),
        (
            "question: decode",
            len(question_frame),
            lambda: decode(question_frame, direction=s2c),
            lambda: msgpack.unpackb(question_frame),
        ),
    ]
    print(
        f"pubquiz.v1 codec, Python {platform.python_version()}, msgpack {msgpack.version}, "
        f"median of {args.repeat} x {args.seconds:g} s"
    )
    print(
        f"{'frame / operation':<18} {'bytes':>5} {'frames/s':>12} {'us/frame':>9} "
        f"{'bare msgpack/s':>15} {'ratio':>6}"
    )
    for name, size, operation, bare in cases:
        rate = _median_rate(operation, args.repeat, args.seconds)
        bare_rate = _median_rate(bare, args.repeat, args.seconds)
        print(
            f"{name:<18} {size:>5} {rate:>12,.0f} {1e6 / rate:>9.2f} {bare_rate:>15,.0f} "
            f"{rate / bare_rate:>6.2f}"
        )


if __name__ == "__main__":
    main()
