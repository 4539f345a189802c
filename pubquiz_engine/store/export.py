"""Results export: CSV and JSON text from a ``Results``. Pure formatting, no I/O.

CSV layout (``results_to_csv``): ONE text with titled sections separated by one empty line:
the players' standings, in team mode the teams' standings, then every answer. Each section
starts with a title line (``standings`` / ``teams`` / ``answers``) and its own header row::

    standings
    rank,participant_id,name,team,score
    1,3,Ada,Owls,12
    ...

    teams
    rank,team_id,team,score,members
    1,1,Owls,12,Ada; Ben
    ...

    answers
    seq,participant_id,name,team,question,question_text,value,answer_text,counted,result,...
    ...

A spreadsheet opens it as one sheet; a program can split on the empty lines, or call
``standings_to_csv`` / ``teams_to_csv`` / ``answers_to_csv`` to write separate files. Scores
and points are integers, as the game awards them (in team mode a player's score is the team's).

An answer's ``value`` is the value as given: a text as is (not JSON-quoted), a number, ``true``
/ ``false``, a list of choice indices as JSON (``[0,2]``); ``answer_text`` says it in words
(the choices' texts). ``question`` is the 0-based question index (as in the protocol),
``question_text`` its prompt. ``counted``: whether this is the answer that scores (the last
one of its player, or team, to the question); ``result`` (right / partly right / wrong) and
``points`` are what the player was told at the reveal (and after a host's mark), empty for
answers that do not count or questions not revealed.

Text cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a tab/CR) are
prefixed with ``'``: player names and answers are untrusted input (CSV injection).

JSON layout (``results_to_json``): ``{"session": {...}, "standings": [...], "teams": [...],
"answers": [...]}`` with the field names of ``SessionRow`` / ``StandingRow`` /
``TeamStandingRow`` / ``AnswerRow`` (values as stored: an answer's ``value`` keeps its type).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import attrs

from pubquiz_engine.store.records import Results

STANDINGS_HEADER = ("rank", "participant_id", "name", "team", "score")
TEAMS_HEADER = ("rank", "team_id", "team", "score", "members")
ANSWERS_HEADER = (
    "seq",
    "participant_id",
    "name",
    "team",
    "question",
    "question_text",
    "value",
    "answer_text",
    "counted",
    "result",
    "points",
    "request_id",
    "submitted_at",
    "epoch",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _value_cell(value: Any) -> Any:
    """An answer value for one CSV cell: texts and numbers as they are, lists as JSON."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _csv(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if title:
        writer.writerow([title])
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def standings_to_csv(results: Results, *, title: bool = False) -> str:
    rows = [(s.rank, s.participant_id, s.name, s.team, s.score) for s in results.standings]
    return _csv("standings" if title else "", STANDINGS_HEADER, rows)


def teams_to_csv(results: Results, *, title: bool = False) -> str:
    rows = [(t.rank, t.team_id, t.team, t.score, "; ".join(t.members))
            for t in results.team_standings]
    return _csv("teams" if title else "", TEAMS_HEADER, rows)


def answers_to_csv(results: Results, *, title: bool = False) -> str:
    rows = [
        (
            a.seq,
            a.participant_id,
            a.name,
            a.team,
            a.question,
            a.question_text,
            _value_cell(a.value),
            a.answer_text,
            a.counted,
            a.result,
            a.points,
            a.request_id,
            a.submitted_at,
            a.epoch,
        )
        for a in results.answers
    ]
    return _csv("answers" if title else "", ANSWERS_HEADER, rows)


def results_to_csv(results: Results) -> str:
    """Every section in one text (see the module docstring)."""
    sections = [standings_to_csv(results, title=True)]
    if results.session.mode == "team":
        sections.append(teams_to_csv(results, title=True))
    sections.append(answers_to_csv(results, title=True))
    return "\n".join(sections)


def results_to_json(results: Results) -> str:
    """The whole result as one JSON document (token hashes left out: not for sharing)."""
    session = attrs.asdict(results.session)
    session.pop("host_token_hash", None)
    document = {
        "session": session,
        "standings": [attrs.asdict(s) for s in results.standings],
        "teams": [attrs.asdict(t) for t in results.team_standings],
        "answers": [attrs.asdict(a) for a in results.answers],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
