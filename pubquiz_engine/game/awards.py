"""Scoring a revealed question and settling wagers: what a reveal or a mark awards.

Rules this module keeps:

1. Pure functions of plain state: the quiz, the answers that count, the host's marks, the
   jokers and the stakes in; fractions, points and stake outcomes out. The state machine
   (``game.session``) decides *when* (a reveal, a mark) and keeps the totals; this module
   says *how much*, and nothing else holds a copy of these rules (the export reads the
   outcomes the game told, it never re-scores).
2. Totals move by differences (``move_totals``): re-scoring a question or re-settling a round
   replaces its old awards, so ``totals == recompute`` holds whatever the order of reveals and
   marks (property-tested in tests/game).
3. A wager is won when every revealed question of its round was answered fully right (host
   marks included) and lost otherwise; a round whose questions were all skipped returns every
   stake (no result). Outcomes exist only once the round is over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pubquiz_engine.game.matching import closest_winners, evaluate, is_closest
from pubquiz_engine.game.quiz import Quiz
from pubquiz_engine.game.scoring import award
from pubquiz_engine.game.values import Answer, QState

#: (fraction right 0..1, points) of one scorer's answer to one question.
Award = tuple[float, int]


def score_question(quiz: Quiz, q: int, answers: Mapping[int, Answer],
                   marks: Mapping[int, bool], jokers: Mapping[int, int], *,
                   speed_bonus: bool) -> dict[int, Award]:
    """Fraction and points for every answer to question ``q``, from scratch.

    ``answers``: scorer -> the answer that counts; ``marks``: scorer -> the host's verdict
    (overrides matching); ``jokers``: scorer -> the round their joker doubles."""
    question = quiz.questions[q]
    if question.tiebreak:
        return {}  # the tie-break orders ties; it scores nothing
    r = quiz.question_round[q]
    multiplier = quiz.rounds[r].multiplier
    max_bonus = question.speed_bonus if speed_bonus else 0
    winners: set[int] = set()
    if is_closest(question):
        winners = closest_winners(question, {s: a.value for s, a in answers.items()})
    out: dict[int, Award] = {}
    for s, a in answers.items():
        if s in marks:
            fraction = 1.0 if marks[s] else 0.0
        elif is_closest(question):
            fraction = 1.0 if s in winners else 0.0
        else:
            fraction = evaluate(question, a.value)
        points = award(points=question.points, fraction=fraction, max_bonus=max_bonus,
                       elapsed=a.elapsed, time_limit=question.time_limit,
                       multiplier=multiplier, joker=jokers.get(s) == r)
        out[s] = (fraction, points)
    return out


def move_totals(totals: dict[int, int], old: Mapping[int, int],
                new: Mapping[int, int]) -> set[int]:
    """Replace ``old`` points by ``new`` in ``totals`` (rule 2); the scorers whose total moved."""
    changed: set[int] = set()
    for s in old.keys() | new.keys():
        delta = new.get(s, 0) - old.get(s, 0)
        if delta:
            totals[s] = totals.get(s, 0) + delta
            changed.add(s)
    return changed


def points_of(awards: Mapping[int, Award]) -> dict[int, int]:
    """scorer -> points of a question's awards."""
    return {s: pts for s, (_, pts) in awards.items()}


def wager_outcome(quiz: Quiz, r: int, qstate: Sequence[QState],
                  awards: Mapping[int, Mapping[int, Award]],
                  stakes: Mapping[int, int]) -> dict[int, int] | None:
    """Each stake on round ``r`` won (+) or lost (-), or None while the round is still being
    played (rule 3). ``awards``: question -> scorer -> award; ``stakes``: scorer -> stake."""
    qs = quiz.round_questions[r]
    if any(qstate[q] not in (QState.REVEALED, QState.SKIPPED) for q in qs):
        return None
    revealed = [q for q in qs if qstate[q] is QState.REVEALED]
    out: dict[int, int] = {}
    if not revealed:
        return out
    for s, stake in stakes.items():
        won = all(awards.get(q, {}).get(s, (0.0, 0))[0] >= 1.0 for q in revealed)
        out[s] = stake if won else -stake
    return out


__all__ = ["Award", "move_totals", "points_of", "score_question", "wager_outcome"]
