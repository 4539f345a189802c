"""The values a game session is made of: phases, options, participants, teams, answers, and
the views of a question the server shows. Frozen attrs classes and enums, plain data.

Pure: imports attrs and the quiz model only. ``game.session`` (the state machine) keeps these in
its state; ``game.snapshot`` writes them as plain data and reads them back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from pubquiz_engine.game.quiz import QuestionKind


class Mode(enum.StrEnum):
    SOLO = "solo"
    TEAM = "team"


class Phase(enum.StrEnum):
    LOBBY = "lobby"
    SLIDE = "slide"
    QUESTION_OPEN = "question_open"
    QUESTION_CLOSED = "question_closed"
    REVEALED = "revealed"
    LEADERBOARD = "leaderboard"
    ROUND_SUMMARY = "round_summary"
    PAUSED = "paused"
    FINISHED = "finished"


class QState(enum.StrEnum):
    """Where one question is in its life."""

    PENDING = "pending"
    OPEN = "open"
    CLOSED = "closed"
    REVEALED = "revealed"
    SKIPPED = "skipped"


def _positive(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1")


@attrs.frozen
class SessionOptions:
    """How a session plays.

    - ``mode``: solo (each player scores) or team (one answer and one score per team).
    - ``close_when_all_answered``: close the question as soon as every active player (solo) or
      every team with an active member (team mode) has answered.
    - ``max_participants``: active (not left, not kicked) participants at once.
    - ``max_team_size``: active members per team.
    - ``speed_bonus``: award the per-question speed bonuses the quiz defines (False: ignore them;
      the bonus amount itself is per question, in the quiz file).
    """

    mode: Mode = attrs.field(default=Mode.SOLO, converter=Mode)
    close_when_all_answered: bool = False
    max_participants: int = attrs.field(default=1000, validator=_positive)
    max_team_size: int = attrs.field(default=10, validator=_positive)
    speed_bonus: bool = True

    def to_data(self) -> dict[str, Any]:
        return {"mode": self.mode.value, "close_when_all_answered": self.close_when_all_answered,
                "max_participants": self.max_participants, "max_team_size": self.max_team_size,
                "speed_bonus": self.speed_bonus}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SessionOptions:
        return cls(**data)


@attrs.frozen
class Participant:
    id: int
    name: str
    team: str | None  # team display name
    team_id: int | None
    joined_at: float
    kicked: bool = False
    left: bool = False

    @property
    def active(self) -> bool:
        return not (self.kicked or self.left)


@attrs.frozen
class Team:
    id: int
    name: str


@attrs.frozen
class Answer:
    """The answer that currently counts for one scorer on one question."""

    participant: int  # who submitted it (in team mode: the last member to answer)
    value: Any
    at: float
    elapsed: float
    revision: int
    request_id: int


@attrs.frozen
class Adjustment:
    scorer: int
    participant: int
    delta: int
    reason: str
    at: float


@attrs.frozen
class Step:
    """One stop in the quiz's program: a slide, a question or a round's summary."""

    kind: str  # "slide" | "question" | "summary"
    round: int
    ref: int  # the slide's index in the round's items, or the global question index


@attrs.frozen
class QuestionView:
    """What players and displays may see of a question (no answer)."""

    index: int
    round: int
    round_title: str
    number: int  # 1-based within the round
    round_size: int
    total: int  # questions in the quiz
    kind: QuestionKind
    prompt: str
    choices: tuple[str, ...]
    media: str | None
    media_type: str | None
    points: int
    time_limit: float
    speed_bonus: int
    multiplier: float
    unit: str
    tiebreak: bool


@attrs.frozen
class CorrectView:
    """The answer, for the reveal. ``answer`` is plain data: a choice index (single), a list of
    indices (multiple, ordering), a bool, a list of accepted texts, or a number."""

    index: int
    kind: QuestionKind
    answer: Any
    choices: tuple[str, ...]
    explanation: str
