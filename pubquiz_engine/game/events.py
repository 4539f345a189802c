"""Events: what happened in a session, in the order it happened.

Rules this module keeps:

1. ``GameSession.apply`` and ``tick`` return a list of these; nothing else reports what the
   session did. The server numbers them (one sequence per session), turns them into wire
   messages and hands ``AnswerAccepted`` and ``ScoresChanged`` to the persister.
2. Each event is a frozen attrs class of plain data and says everything about what happened,
   so a listener needs no access to the session to act on it. ``event_to_data`` gives the
   plain-dict form (``{"type": "answer_accepted", ...}``) for logs and the event table.
3. Ids: ``participant`` is the id ``Join`` assigned (1, 2, ...; never reused); ``team`` is
   the team id (1, 2, ... in order of creation) or None; ``question`` is the global question
   index (0-based, across rounds); ``round`` is the 0-based round index.
"""

from __future__ import annotations

import re
from typing import Any

import attrs


@attrs.frozen
class ParticipantJoined:
    participant: int
    name: str
    team: str | None
    team_id: int | None
    at: float


@attrs.frozen
class ParticipantLeft:
    participant: int


@attrs.frozen
class ParticipantKicked:
    participant: int


@attrs.frozen
class Started:
    at: float


@attrs.frozen
class RoundStarted:
    round: int
    title: str
    multiplier: float
    wager: bool
    questions: int


@attrs.frozen
class SlideShown:
    round: int
    title: str
    text: str
    media: str | None


@attrs.frozen
class QuestionOpened:
    question: int
    deadline: float
    time_limit: float
    round: int


@attrs.frozen
class AnswerAccepted:
    """An answer was recorded. ``revision`` counts the answers of this participant (team mode:
    team) to this question: the highest revision is the one that counts. ``at`` is the server
    time of acceptance; ``elapsed`` the running seconds since the question opened."""

    participant: int
    team: int | None
    question: int
    value: Any
    request_id: int
    at: float
    elapsed: float
    revision: int
    duplicate: bool = False


@attrs.frozen
class AnswerCountChanged:
    """For displays: how many of the ``total`` active answerers (players, or teams) answered."""

    question: int
    answered: int
    total: int


@attrs.frozen
class QuestionClosed:
    question: int
    reason: str  # "deadline" | "host" | "all_answered" | "ended"


@attrs.frozen
class QuestionSkipped:
    question: int


@attrs.frozen
class Paused:
    remaining: float | None  # seconds left on the open question; None outside a question


@attrs.frozen
class Resumed:
    deadline: float | None  # the open question's new deadline; None outside a question


@attrs.frozen
class TimeExtended:
    question: int
    deadline: float | None  # None while paused (then ``remaining`` says it)
    remaining: float


@attrs.frozen
class Revealed:
    question: int
    answer: Any  # plain data, as in ``CorrectView.answer``
    explanation: str
    distribution: list[int] | None


@attrs.frozen
class AnswerMarked:
    question: int
    participant: int
    team: int | None
    correct: bool


@attrs.frozen
class ScoresChanged:
    """New totals after a reveal, a mark, a wager settling or an adjustment.

    ``scores`` holds ``(participant_id, total)`` for every participant whose total changed (in
    team mode: every member of each changed team, carrying the team's total); ``team_scores``
    holds ``(team_id, total)`` in team mode and is empty in solo mode.
    """

    scores: list[tuple[int, int]]
    team_scores: list[tuple[int, int]]
    reason: str  # "reveal" | "mark" | "wager" | "adjust"
    question: int | None = None


@attrs.frozen
class ScoreAdjusted:
    participant: int
    team: int | None
    delta: int
    reason: str


@attrs.frozen
class LeaderboardShown:
    round: int | None


@attrs.frozen
class RoundSummary:
    round: int


@attrs.frozen
class JokerPlayed:
    participant: int
    team: int | None
    round: int


@attrs.frozen
class WagerPlaced:
    participant: int
    team: int | None
    round: int
    amount: int


@attrs.frozen
class RoundAdded:
    """A round was appended to the quiz (lobby only): ``data`` is the round as the quiz format
    writes it, validated, so that whoever stores the event keeps the quiz as it is played."""

    round: int
    title: str
    questions: int
    data: dict[str, Any]


@attrs.frozen
class Finished:
    reason: str  # "completed" or the host's reason


Event = (
    ParticipantJoined | ParticipantLeft | ParticipantKicked | Started | RoundStarted | SlideShown
    | QuestionOpened | AnswerAccepted | AnswerCountChanged | QuestionClosed | QuestionSkipped
    | Paused | Resumed | TimeExtended | Revealed | AnswerMarked | ScoresChanged | ScoreAdjusted
    | LeaderboardShown | RoundSummary | JokerPlayed | WagerPlaced | RoundAdded | Finished
)

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


# Per event class, worked out on first use: its type name and its field names. Every event a
# session publishes is stored with both (twice per join), and the regex and ``attrs.fields``
# cost more than the rest of the conversion.
_TYPE_NAMES: dict[type, str] = {}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


#: ``isinstance`` with a tuple: ``list | tuple`` builds a union at every call (every field).
_SEQUENCES = (list, tuple)


def event_type(event: Event) -> str:
    """The snake-case name of an event's class: ``AnswerAccepted`` -> ``"answer_accepted"``."""
    cls = type(event)
    name = _TYPE_NAMES.get(cls)
    if name is None:
        name = _TYPE_NAMES[cls] = _SNAKE.sub("_", cls.__name__).lower()
    return name


def event_to_data(event: Event) -> dict[str, Any]:
    """Plain-data form of an event (tuples become lists), tagged with its ``type``."""
    cls = type(event)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in attrs.fields(cls))
    data: dict[str, Any] = {"type": event_type(event)}
    for name in names:
        data[name] = _plain(getattr(event, name))
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, _SEQUENCES):
        return [_plain(v) for v in value]
    return value
