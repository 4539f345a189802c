"""Results export: CSV and JSON text from a ``Results``. Pure formatting, no I/O.

CSV layout (``results_to_csv``): ONE text with two sections, standings first, separated by one
empty line; each section starts with a title line (``standings`` / ``answers``) and then its own
header row::

    standings
    rank,participant_id,name,team,score
    1,3,Ada,Owls,12.0
    ...

    answers
    seq,participant_id,team,question,value,request_id,submitted_at,epoch
    ...

A spreadsheet opens it as one sheet; a program can split on the empty line, or call
``standings_to_csv`` / ``answers_to_csv`` to write two files instead. Answer values are JSON text.
Text cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a tab/CR) are
prefixed with ``'``: player names are untrusted input (CSV injection).

JSON layout (``results_to_json``): ``{"session": {...}, "standings": [...], "answers": [...]}``
with the same field names as ``SessionRow`` / ``StandingRow`` / ``AnswerRow``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import attrs

from pubquiz_engine.store.records import Results

STANDINGS_HEADER = ("rank", "participant_id", "name", "team", "score")
ANSWERS_HEADER = (
    "seq",
    "participant_id",
    "team",
    "question",
    "value",
    "request_id",
    "submitted_at",
    "epoch",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
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


def answers_to_csv(results: Results, *, title: bool = False) -> str:
    rows = [
        (
            a.seq,
            a.participant_id,
            a.team,
            a.question,
            json.dumps(a.value, ensure_ascii=False, separators=(",", ":")),
            a.request_id,
            a.submitted_at,
            a.epoch,
        )
        for a in results.answers
    ]
    return _csv("answers" if title else "", ANSWERS_HEADER, rows)


def results_to_csv(results: Results) -> str:
    """Both sections in one text (see the module docstring)."""
    return standings_to_csv(results, title=True) + "\n" + answers_to_csv(results, title=True)


def results_to_json(results: Results) -> str:
    """The whole result as one JSON document (token hashes left out: not for sharing)."""
    session = attrs.asdict(results.session)
    session.pop("host_token_hash", None)
    document = {
        "session": session,
        "standings": [attrs.asdict(s) for s in results.standings],
        "answers": [attrs.asdict(a) for a in results.answers],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
