"""The quiz model: what a quiz *is*, independent of any file format or session.

Rules this module keeps:

1. Every class is a frozen attrs class. A ``Quiz`` is built once (by ``loader``) and shared,
   read-only, by every session that plays it.
2. The model is already validated: nothing here raises on bad data, because the loader refuses
   a quiz before these objects exist. The invariants the loader guarantees are written next to
   each field (``answer`` is in range, choices are unique, and so on).
3. Questions are numbered globally across rounds (``Quiz.questions``), because the session, the
   wire protocol and the database all name a question by one integer.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class QuestionKind(enum.StrEnum):
    """The kinds of question; the value is what quiz files and the wire protocol use."""

    SINGLE = "single"  # one of ``choices``; the answer is a choice index
    MULTIPLE = "multiple"  # a set of ``choices``; the answer is a sorted tuple of indices
    TRUEFALSE = "truefalse"  # the answer is a bool
    TEXT = "text"  # free text, matched against ``accepted`` after normalisation
    NUMERIC = "numeric"  # a number: exact within ``tolerance``, or closest wins
    ORDERING = "ordering"  # ``choices`` shown in file order; the answer is the right order


class NumericMode(enum.StrEnum):
    """How a numeric answer is judged."""

    EXACT = "exact"  # right when |value - answer| <= tolerance
    CLOSEST = "closest"  # right when no other answer is closer (ties all win)


@attrs.frozen
class Slide:
    """A host-paced text slide (round intro, rules, an interval notice). Scores nothing."""

    title: str
    text: str = ""
    media: str | None = None


@attrs.frozen
class Question:
    """One question. Which optional fields matter depends on ``kind``:

    - single / multiple / ordering: ``choices`` (2-12 unique, non-empty strings).
    - single: ``answer`` is an ``int`` index into ``choices``.
    - multiple: ``answer`` is a sorted ``tuple[int, ...]`` (at least one index); ``partial``
      gives partial credit (see ``matching.evaluate``).
    - truefalse: ``answer`` is a ``bool``.
    - text: ``answer`` is a ``tuple[str, ...]`` of accepted answers (at least one);
      ``ignore_articles`` is the tuple of leading articles to drop when matching (empty: none);
      ``typos`` the edit distance tolerated on answers of 4+ characters.
    - numeric: ``answer`` is an ``int`` or ``float``; ``numeric_mode``, ``tolerance``;
      ``tiebreak`` marks the tie-break question (closest wins, scores no points, orders ties).
    - ordering: ``answer`` is a ``tuple[int, ...]`` permutation of ``range(len(choices))``: the
      indices of ``choices`` in the right order; ``partial`` credits each item in place.
    """

    kind: QuestionKind
    prompt: str
    answer: Any
    choices: tuple[str, ...] = ()
    time_limit: float = 30.0  # seconds the question stays open (host may extend)
    points: int = 1  # base points for a fully correct answer (0 only for the tie-break)
    speed_bonus: int = 0  # extra points at most, for an instant correct answer (see scoring)
    media: str | None = None  # image/audio/video URL or quiz-relative path
    media_type: str | None = None  # "image" | "audio" | "video" (None: no media)
    explanation: str = ""  # shown at the reveal
    partial: bool = False
    ignore_articles: tuple[str, ...] = ()
    typos: int = 0
    numeric_mode: NumericMode = NumericMode.EXACT
    tolerance: float = 0.0
    tiebreak: bool = False
    unit: str = ""  # numeric: a unit shown next to the input, e.g. "km"


Item = Question | Slide


@attrs.frozen
class Round:
    """A round: an ordered run of slides and questions, with its own scoring rules."""

    title: str
    items: tuple[Item, ...]
    multiplier: float = 1.0  # every award in the round is multiplied by this (double round: 2)
    wager: bool = False  # players may stake part of their score on this round
    joker: bool = True  # a joker may be played on this round
    # Derived (excluded from equality): the questions among ``items``, in order. Read for every
    # newcomer's ``state`` (each round's size), so built once, not per read.
    questions: tuple[Question, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "questions",
                           tuple(item for item in self.items if isinstance(item, Question)))


@attrs.frozen
class Quiz:
    """A whole quiz. ``questions`` / ``question_round`` / ``round_questions`` are derived."""

    title: str
    rounds: tuple[Round, ...]
    description: str = ""
    author: str = ""
    # Derived lookups (excluded from equality: they follow from ``rounds``).
    questions: tuple[Question, ...] = attrs.field(init=False, eq=False, repr=False)
    question_round: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)
    round_questions: tuple[tuple[int, ...], ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        questions: list[Question] = []
        owners: list[int] = []
        per_round: list[tuple[int, ...]] = []
        for r, rnd in enumerate(self.rounds):
            start = len(questions)
            for q in rnd.questions:
                questions.append(q)
                owners.append(r)
            per_round.append(tuple(range(start, len(questions))))
        # Frozen class: derived fields are set once, here, and never again.
        object.__setattr__(self, "questions", tuple(questions))
        object.__setattr__(self, "question_round", tuple(owners))
        object.__setattr__(self, "round_questions", tuple(per_round))

    def number_in_round(self, question: int) -> int:
        """1-based position of global question ``question`` within its round."""
        return question - self.round_questions[self.question_round[question]][0] + 1
