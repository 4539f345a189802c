"""A session's results as the live game told them, rebuilt from the stored rows. Pure: rows in,
``Results`` out (both backends' ``session_results`` read the rows and call ``assemble``).

Rules this module keeps:

1. **The export says what the screens said.** Scores are the game's integer totals. In team
   mode every member's score is the team's total, as the game shows it to each member, also
   for a member who joined after the team last scored (no score row was ever written for
   them: the totals come from the team's ``scores_changed`` events, not per-member rows).
2. **Per answer, the outcome the player was told** (``result`` after ``reveal``, and again
   after a ``mark``): read from the ``outcomes`` the engine stores with the ``revealed`` and
   ``answer_marked`` events, never re-scored here (no second copy of the scoring rules).
   Only the last answer of a player (team) to a question counts; earlier ones are kept and
   marked as not counted.
3. **Ranks as the game ranks** (``game.scoring.rank``): score, then the distance to the
   tie-break answer, then name (case-folded), then id; equal score and distance share a rank.
4. A participant who left the lobby (before the start) is forgotten by the game, and here.
5. **The quiz as it was played**: the stored quiz (as the session was created) plus every
   round a ``round_added`` event appended, in order (``quiz_as_played``). Questions of an
   added round are named in the export like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from pubquiz_engine.store.records import (
    AnswerRow,
    Results,
    SessionRow,
    StandingRow,
    TeamStandingRow,
)

#: The event types ``assemble`` reads (backends fetch only these).
EVENT_TYPES = ("participant_joined", "participant_left", "started", "scores_changed",
               "revealed", "answer_marked", "round_added")


@attrs.frozen
class _Line:
    id: int
    name: str
    score: int
    tiebreak: float


def _rank(lines: Iterable[_Line]) -> list[tuple[int, _Line]]:
    """Competition ranking as ``game.scoring.rank`` (rule 3)."""
    ordered = sorted(lines, key=lambda x: (-x.score, x.tiebreak, x.name.casefold(), x.id))
    out: list[tuple[int, _Line]] = []
    previous: tuple[int, float] | None = None
    rank = 0
    for position, line in enumerate(ordered, start=1):
        if (line.score, line.tiebreak) != previous:
            rank, previous = position, (line.score, line.tiebreak)
        out.append((rank, line))
    return out


def quiz_as_played(quiz: Mapping[str, Any] | None,
                   events: Iterable[tuple[str, Mapping[str, Any]]]) -> Mapping[str, Any] | None:
    """The stored quiz with the rounds ``round_added`` events appended, in order (rule 5)."""
    added = [payload["data"] for kind, payload in events
             if kind == "round_added" and isinstance(payload.get("data"), Mapping)]
    if not added or quiz is None:
        return quiz
    return {**quiz, "rounds": [*(quiz.get("rounds") or ()), *added]}


def _questions(quiz: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The quiz's questions in global order (slides are not questions)."""
    if not quiz:
        return []
    return [item for rnd in quiz.get("rounds") or () for item in rnd.get("items") or ()
            if isinstance(item, Mapping) and item.get("kind") != "slide"]


def answer_text(value: Any, question: Mapping[str, Any] | None) -> str:
    """An answer value in words: choice texts for indices, the text or number itself."""
    choices = list(question.get("choices") or ()) if question is not None else []
    kind = question.get("kind") if question is not None else None

    def choice(i: Any) -> str:
        if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(choices):
            return str(choices[i])
        return str(i)

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return (" > " if kind == "ordering" else "; ").join(choice(v) for v in value)
    if isinstance(value, int) and choices:
        return choice(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def assemble(session: SessionRow, participants: Sequence[tuple[int, str, str | None]],
             score_rows: Sequence[tuple[int, float, int]], answers: Sequence[AnswerRow],
             events: Sequence[tuple[str, Mapping[str, Any]]],
             quiz: Mapping[str, Any] | None) -> Results:
    """``participants``: (id, name, team); ``score_rows``: (participant id, stored total, its
    seq);
    ``events``: (type, payload) of ``EVENT_TYPES`` in seq order; ``quiz``: the stored quiz."""
    team_mode = session.mode == "team"
    questions = _questions(quiz_as_played(quiz, events))

    # What the events say: teams, lobby leavers, team totals, outcomes per question.
    team_of: dict[int, int] = {}  # participant -> team id
    team_names: dict[int, str] = {}
    left_in_lobby: set[int] = set()
    started = False
    team_totals: dict[int, int] = {}
    outcomes: dict[int, dict[int, tuple[bool, int]]] = {}  # question -> participant -> ...
    for kind, payload in events:
        if kind == "participant_joined":
            pid, tid = payload.get("participant"), payload.get("team_id")
            if isinstance(pid, int) and isinstance(tid, int):
                team_of[pid] = tid
                team_names[tid] = str(payload.get("team") or f"team {tid}")
            if isinstance(pid, int):
                left_in_lobby.discard(pid)
        elif kind == "started":
            started = True
        elif kind == "participant_left" and not started:
            if isinstance(payload.get("participant"), int):
                left_in_lobby.add(payload["participant"])
        elif kind == "scores_changed":
            for tid, total in payload.get("team_scores") or ():
                team_totals[int(tid)] = int(total)
        elif kind in ("revealed", "answer_marked") and "outcomes" in payload:
            outcomes[int(payload["question"])] = {
                int(pid): (bool(right), int(points))
                for pid, right, points in payload["outcomes"]}

    people: dict[int, tuple[str | None, str | None]] = {
        pid: (name, team) for pid, name, team in participants if pid not in left_in_lobby}
    stored = {pid: int(score) for pid, score, _seq in score_rows}
    stored_seq = {pid: seq for pid, _score, seq in score_rows}
    for pid in stored:  # a score without its participant row (not yet written): keep it
        if pid not in people and pid not in left_in_lobby:
            people[pid] = (None, None)

    def scorer(pid: int) -> int:
        return team_of.get(pid, pid) if team_mode else pid

    def score_of(pid: int) -> int:
        if team_mode and pid in team_of:
            return team_totals.get(team_of[pid], 0)
        return stored.get(pid, 0)

    # Answers: the counted one per (question, scorer) is the last by seq (rule 2).
    last: dict[tuple[int, int], int] = {}
    for row in answers:
        key = (row.question, scorer(row.participant_id))
        if key not in last or row.seq >= last[key]:
            last[key] = row.seq
    out_answers: list[AnswerRow] = []
    for row in answers:
        question = questions[row.question] if 0 <= row.question < len(questions) else None
        counted = last[(row.question, scorer(row.participant_id))] == row.seq
        told = outcomes.get(row.question, {}).get(row.participant_id) if counted else None
        result = points = None
        if told is not None:
            right, points = told
            result = "right" if right else ("partly right" if points > 0 else "wrong")
        name = people.get(row.participant_id, (None, None))[0]
        out_answers.append(attrs.evolve(
            row, name=name, question_text=question.get("prompt") if question else None,
            answer_text=answer_text(row.value, question), counted=counted, result=result,
            points=points))

    # The tie-break: distance of each scorer's counted answer once it is revealed (rule 3).
    distance: dict[int, float] = {}
    for q, item in enumerate(questions):
        if not item.get("tiebreak") or q not in outcomes:
            continue
        target = item.get("answer")
        for row in answers:
            if (isinstance(target, int | float) and isinstance(row.value, int | float)
                    and last.get((q, scorer(row.participant_id))) == row.seq):
                distance[scorer(row.participant_id)] = float(abs(row.value - target))

    lines = [_Line(pid, name or "", score_of(pid), distance.get(scorer(pid), math.inf))
             for pid, (name, _team) in people.items()]
    standings = tuple(
        StandingRow(rank, line.id, people[line.id][0], people[line.id][1], line.score,
                    stored_seq.get(line.id))
        for rank, line in _rank(lines))

    team_rows: tuple[TeamStandingRow, ...] = ()
    if team_mode:
        members: dict[int, list[str]] = {}
        for pid, (name, _team) in sorted(people.items()):
            if pid in team_of:
                members.setdefault(team_of[pid], []).append(name or f"#{pid}")
        team_lines = [_Line(tid, team_names[tid], team_totals.get(tid, 0),
                            distance.get(tid, math.inf)) for tid in members]
        team_rows = tuple(
            TeamStandingRow(rank, line.id, line.name, line.score, tuple(members[line.id]))
            for rank, line in _rank(team_lines))
    return Results(session, standings, tuple(out_answers), team_rows)
