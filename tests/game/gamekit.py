"""A small quiz and helpers shared by the game tests (imported as ``gamekit``; pytest puts this
directory on sys.path)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pubquiz_engine.errors import ErrorCode, Rejected
from pubquiz_engine.game import GameSession, Quiz, SessionOptions, load_quiz_data
from pubquiz_engine.game.commands import Command
from pubquiz_engine.game.events import Event

# Questions (global index): 0 single, 1 text, 2 truefalse | 3 multiple, 4 numeric closest
# | 5 ordering, 6 numeric exact (wager round) | 7 tie-break.
QUIZ_DATA: dict[str, Any] = {
    "title": "Test Quiz",
    "rounds": [
        {"title": "Warm-up", "items": [
            {"kind": "slide", "title": "Welcome", "text": "Rules"},
            {"kind": "single", "prompt": "Capital of Australia?", "answer": "Canberra",
             "choices": ["Sydney", "Canberra", "Perth"], "speed_bonus": 2, "points": 2},
            {"kind": "text", "prompt": "Abbey Road band?", "answer": "The Beatles",
             "ignore_articles": True, "typos": 1},
            {"kind": "truefalse", "prompt": "Crows: murder?", "answer": True, "time_limit": 10},
        ]},
        {"title": "Double", "multiplier": 2, "items": [
            {"kind": "multiple", "prompt": "Noble gases?", "choices": ["Ne", "N", "Ar", "Cl"],
             "answer": ["Ne", "Ar"], "partial": True},
            {"kind": "numeric", "prompt": "Bones?", "answer": 206, "mode": "closest"},
        ]},
        {"title": "Wager", "wager": True, "joker": False, "items": [
            {"kind": "ordering", "prompt": "Order", "choices": ["b", "a", "c"],
             "answer": ["a", "b", "c"]},
            {"kind": "numeric", "prompt": "Light?", "answer": 300, "tolerance": 5},
        ]},
        {"title": "Tie-break", "items": [
            {"kind": "numeric", "prompt": "Eiffel?", "answer": 330, "tiebreak": True},
        ]},
    ],
}

#: A right answer for each question of QUIZ_DATA, and a wrong one.
RIGHT: list[Any] = [1, "beatles", True, [0, 2], 206, [1, 0, 2], 301, 330]
WRONG: list[Any] = [0, "stones", False, [1], 1, [0, 1, 2], 100, 1]


def make_quiz() -> Quiz:
    return load_quiz_data(QUIZ_DATA, source="test-quiz")


T0 = 1_700_000_000.0


class Game:
    """A session with a clock: ``do`` applies a command at the current time."""

    def __init__(self, options: SessionOptions | None = None, quiz: Quiz | None = None) -> None:
        self.session = GameSession(quiz or make_quiz(), options or SessionOptions())
        self.now = T0
        self.rid = 0

    def do(self, command: Command) -> list[Event]:
        return self.session.apply(command, self.now)

    def refuse(self, command: Command, code: ErrorCode) -> Rejected:
        """Assert that ``command`` is refused with ``code`` and changes no state at all."""
        before = self.session.to_snapshot()
        with pytest.raises(Rejected) as info:
            self.session.apply(command, self.now)
        assert info.value.code is code, info.value
        assert self.session.to_snapshot() == before
        return info.value

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid


def round_trip(session: GameSession) -> GameSession:
    """Snapshot -> JSON -> restore (JSON proves the snapshot is plain data)."""
    data = json.loads(json.dumps(session.to_snapshot(), allow_nan=False))
    return GameSession.from_snapshot(data)
