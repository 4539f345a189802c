"""Quiz data for the scenarios, and a valid answer for any question a player is shown.

Pure: no I/O. The bench quiz is inline data (``create_session(quiz=...)``) in the format of
``docs/quiz-format.md``: one round of single-choice questions with a long time limit, so that
the clock never closes a question during a measurement (the host or the scenario does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The loader's ceiling for ``time_limit`` (``pubquiz_engine.game.loader.MAX_TIME_LIMIT``).
LONG_TIME_LIMIT = 3600
CHOICES = ("Red", "Green", "Blue", "Yellow")


def bench_quiz(questions: int, *, time_limit: int = LONG_TIME_LIMIT) -> dict[str, Any]:
    """A quiz of ``questions`` single-choice questions (the answer is always choice 0)."""
    if not 1 <= questions <= 500:
        raise ValueError(f"questions must be 1..500, got {questions}")
    items = [
        {"kind": "single", "prompt": f"Bench question {i + 1}: which colour?",
         "choices": list(CHOICES), "answer": CHOICES[0], "time_limit": time_limit, "points": 1}
        for i in range(questions)
    ]
    return {"format": 1, "title": "pubquiz bench", "rounds": [{"title": "Bench", "items": items}]}


def answer_for(kind: str, choices: Sequence[str] | None, salt: int = 0) -> Any:
    """A well-formed answer to a question of ``kind`` (right or wrong: we measure, not play).

    ``salt`` varies the answer between players so that the distribution is not degenerate.
    """
    n = len(choices) if choices else 0
    if kind == "single":
        return salt % n if n else 0
    if kind == "truefalse":
        return salt % 2 == 0
    if kind == "multiple":
        return [salt % n] if n else [0]
    if kind == "ordering":
        order = list(range(n))
        shift = salt % n if n else 0
        return order[shift:] + order[:shift]
    if kind == "numeric":
        return 1900 + salt % 200
    if kind == "text":
        return ("beatles", "the beatles", "no idea")[salt % 3]
    raise ValueError(f"unknown question kind {kind!r}")
