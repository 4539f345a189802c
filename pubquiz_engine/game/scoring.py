"""Points and rankings: pure functions the session calls, and the tests call to check it.

Rules this module keeps:

1. One formula for one answer (``award``), documented in ``docs/quiz-format.md``::

       bonus = speed_bonus * max(0, 1 - elapsed / time_limit)   (only for a fully right answer)
       award = round_half_up((points * fraction + bonus) * multiplier * (2 if joker else 1))

   ``elapsed`` is the seconds the question had been *running* (pauses excluded) when the
   counted answer arrived; ``time_limit`` is the question's original limit, so extending the
   time never raises the bonus. Awards are integers, so totals never drift.
2. Ranking (``rank``): higher score first; equal scores share a rank ("1, 2, 2, 4"). In the
   overall standings a revealed tie-break question breaks equal scores: a smaller distance to
   its answer ranks higher (no answer counts as infinitely far), and only equal score *and*
   equal distance share a rank. Within a shared rank the order is by name (casefolded), then
   by id, so the listing is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def speed_bonus(max_bonus: int, elapsed: float, time_limit: float) -> float:
    if max_bonus <= 0 or time_limit <= 0:
        return 0.0
    return max_bonus * max(0.0, 1.0 - max(0.0, elapsed) / time_limit)


def award(
    *,
    points: int,
    fraction: float,
    max_bonus: int,
    elapsed: float,
    time_limit: float,
    multiplier: float,
    joker: bool,
) -> int:
    """Points for one counted answer (rule 1)."""
    if fraction <= 0:
        return 0
    bonus = speed_bonus(max_bonus, elapsed, time_limit) if fraction >= 1 else 0.0
    return round_half_up((points * fraction + bonus) * multiplier * (2 if joker else 1))


@attrs.frozen
class Standing:
    """One line of a leaderboard. ``id`` is a participant id, or a team id for team standings."""

    rank: int
    id: int
    name: str
    score: int


@attrs.frozen
class Entry:
    """What ``rank`` sorts: the inputs of one line."""

    id: int
    name: str
    score: int
    tiebreak: float = math.inf  # distance to the tie-break answer (overall standings only)


def rank(entries: Iterable[Entry]) -> list[Standing]:
    """Rank ``entries`` (rule 2). O(n log n)."""
    ordered = sorted(entries, key=lambda e: (-e.score, e.tiebreak, e.name.casefold(), e.id))
    out: list[Standing] = []
    previous: tuple[int, float] | None = None
    current_rank = 0
    for position, e in enumerate(ordered, start=1):
        key = (e.score, e.tiebreak)
        if key != previous:
            current_rank = position  # competition ranking: 1, 2, 2, 4
            previous = key
        out.append(Standing(rank=current_rank, id=e.id, name=e.name, score=e.score))
    return out
