"""Answer checking: is a submitted value well-formed, and how right is it?

Rules this module keeps:

1. ``validate_answer`` runs on the hot path (every ``SubmitAnswer``): it is O(size of the
   value), never normalises text, and returns the *canonical* value that the session stores
   and echoes (sorted indices for multiple choice, lists instead of tuples, stripped text).
   A malformed value raises ``Rejected(INVALID_ANSWER)``; the caller has changed nothing yet.
2. ``evaluate`` runs at reveal time and returns a fraction in [0, 1] (1 = fully correct).
   Closest-wins numeric questions depend on every answer, so they are judged by
   ``closest_winners`` instead, over the whole set.
3. Text matching is documented in ``docs/quiz-format.md``; ``normalise_text`` is its single
   definition: NFKD + drop accents, casefold, punctuation removed (``- / _`` become spaces),
   whitespace collapsed, then an optional leading article dropped.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from pubquiz_engine.errors import ErrorCode, Rejected
from pubquiz_engine.game.quiz import NumericMode, Question, QuestionKind

MAX_TEXT_ANSWER = 200  # characters; a pub quiz answer is a few words
MAX_NUMERIC_ABS = 1e15  # beyond this a float loses integer precision; nobody means it
MIN_TYPO_LENGTH = 4  # typo tolerance only applies to accepted answers this long or longer

_SPACERS = frozenset("-/_\u2010\u2011\u2012\u2013\u2014")  # dashes and slashes split words


def _invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_ANSWER, message)


def _is_int(value: Any) -> bool:
    # bool is an int subclass; True is not a choice index.
    return isinstance(value, int) and not isinstance(value, bool)


def _index_list(value: Any, n: int, what: str) -> list[int]:
    if not isinstance(value, list | tuple):
        raise _invalid(f"{what} must be a list of choice indices")
    if len(value) > n:
        raise _invalid(f"{what} has more entries than there are choices")
    for v in value:
        if not _is_int(v) or not 0 <= v < n:
            raise _invalid(f"{what} holds {v!r}, not a choice index 0..{n - 1}")
    if len(set(value)) != len(value):
        raise _invalid(f"{what} names a choice twice")
    return list(value)


def validate_answer(question: Question, value: Any) -> Any:
    """Return the canonical form of ``value`` for ``question`` or raise INVALID_ANSWER."""
    kind = question.kind
    if kind is QuestionKind.SINGLE:
        n = len(question.choices)
        if not _is_int(value) or not 0 <= value < n:
            raise _invalid(f"answer must be a choice index 0..{n - 1}")
        return value
    if kind is QuestionKind.MULTIPLE:
        chosen = _index_list(value, len(question.choices), "answer")
        if not chosen:
            raise _invalid("answer must choose at least one choice")
        return sorted(chosen)
    if kind is QuestionKind.TRUEFALSE:
        if not isinstance(value, bool):
            raise _invalid("answer must be true or false")
        return value
    if kind is QuestionKind.TEXT:
        if not isinstance(value, str):
            raise _invalid("answer must be text")
        if len(value) > MAX_TEXT_ANSWER * 4:
            raise _invalid(f"answer is longer than {MAX_TEXT_ANSWER} characters")
        text = value.strip()
        if not text:
            raise _invalid("answer is empty")
        if len(text) > MAX_TEXT_ANSWER:
            raise _invalid(f"answer is longer than {MAX_TEXT_ANSWER} characters")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
            raise _invalid("answer holds control characters")
        return text
    if kind is QuestionKind.NUMERIC:
        if _is_int(value):
            if abs(value) > MAX_NUMERIC_ABS:
                raise _invalid("number is out of range")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid("number must be finite")
            if abs(value) > MAX_NUMERIC_ABS:
                raise _invalid("number is out of range")
            return value
        raise _invalid("answer must be a number")
    # ORDERING: a full permutation of the choices, in the order the player puts them.
    n = len(question.choices)
    order = _index_list(value, n, "order")
    if len(order) != n:
        raise _invalid(f"order must place all {n} items")
    return order


def normalise_text(text: str, articles: Iterable[str] = ()) -> str:
    """The matching form of ``text`` (see the module docstring, rule 3)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    out: list[str] = []
    for c in decomposed:
        if unicodedata.combining(c):
            continue  # accents: "Café" matches "cafe"
        if c in _SPACERS or c.isspace():
            out.append(" ")
        elif c.isalnum():
            out.append(c)
        # anything else (punctuation, symbols) is dropped: "AC/DC!" -> "ac dc"
    words = "".join(out).split()
    if len(words) > 1 and words[0] in articles:
        words = words[1:]  # only a leading article, and never the whole answer
    return " ".join(words)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a swap counts once), capped at ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1  # every path is already too long: stop early
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


def text_matches(question: Question, value: str) -> bool:
    """Whether free text ``value`` matches one of the question's accepted answers."""
    given = normalise_text(value, question.ignore_articles)
    if not given:
        return False
    given_digits = [c for c in given if c.isdigit()]
    for accepted in question.answer:
        want = normalise_text(accepted, question.ignore_articles)
        if given == want:
            return True
        if question.typos and len(want) >= MIN_TYPO_LENGTH:
            # Numbers must be exact: "1966" is not a typo of "1967".
            if given_digits != [c for c in want if c.isdigit()]:
                continue
            if edit_distance(given, want, question.typos) <= question.typos:
                return True
    return False


def evaluate(question: Question, value: Any) -> float:
    """Fraction of full marks for canonical ``value`` (not for closest-wins numerics)."""
    kind = question.kind
    if kind is QuestionKind.SINGLE or kind is QuestionKind.TRUEFALSE:
        return 1.0 if value == question.answer else 0.0
    if kind is QuestionKind.MULTIPLE:
        right = set(question.answer)
        chosen = set(value)
        if chosen == right:
            return 1.0
        if not question.partial:
            return 0.0
        # Each right choice earns a share; each wrong choice cancels one. Never below zero.
        hits = len(chosen & right) - len(chosen - right)
        return max(0.0, hits / len(right))
    if kind is QuestionKind.TEXT:
        return 1.0 if text_matches(question, value) else 0.0
    if kind is QuestionKind.NUMERIC:
        return 1.0 if abs(value - question.answer) <= question.tolerance else 0.0
    # ORDERING
    if list(value) == list(question.answer):
        return 1.0
    if not question.partial:
        return 0.0
    in_place = sum(1 for a, b in zip(value, question.answer, strict=True) if a == b)
    return in_place / len(question.answer)


def closest_winners(question: Question, answers: Mapping[int, Any]) -> set[int]:
    """The keys of ``answers`` whose value is closest to the answer (all ties win)."""
    assert question.kind is QuestionKind.NUMERIC
    if not answers:
        return set()
    target = question.answer
    distances = {key: abs(value - target) for key, value in answers.items()}
    best = min(distances.values())
    return {key for key, d in distances.items() if d == best}


def is_closest(question: Question) -> bool:
    return question.kind is QuestionKind.NUMERIC and (
        question.numeric_mode is NumericMode.CLOSEST or question.tiebreak
    )
