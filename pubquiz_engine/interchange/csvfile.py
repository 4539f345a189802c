"""Quizzes as CSV (one question a row, under a documented header) to quiz data.

The header row names the columns, in any order (``docs/quiz-format.md`` documents them):

- required: ``kind``, ``prompt``, ``answer``;
- optional: ``round``, ``choices``, ``time_limit``, ``points``, ``speed_bonus``,
  ``explanation``, ``media``, ``partial``, ``tolerance``, ``unit``, ``typos``,
  ``ignore_articles``.

Lists (``choices``; the ``answer`` of multiple, ordering and text questions) are separated by
``|``. A ``round`` cell starts a new round when its text differs from the current round's; an
empty one stays in the current round. A ``slide`` row uses ``prompt`` as the slide's title and
``explanation`` as its text. Empty cells mean "the default". The delimiter is a comma, or a
semicolon or tab when the header row uses that instead (spreadsheet programs in many locales
save CSV with semicolons).

Rules this module keeps:

1. Every problem is located by the line the row *starts* on (a quoted cell may span lines) and
   the column: ``line 5, column 'points': 'ten' is not a whole number``.
2. An unknown column is a problem, as an unknown field is in a quiz file: a typo such as
   ``tme_limit`` must not silently fall back to the default.
3. Cells are converted (numbers, true/false, lists) here; everything else, such as whether an
   answer is one of the choices, is left to the one validator.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from pubquiz_engine.interchange._draft import MAX_RECORDS, Draft, decode_text

REQUIRED = ("kind", "prompt", "answer")
OPTIONAL = ("round", "choices", "time_limit", "points", "speed_bonus", "explanation", "media",
            "partial", "tolerance", "unit", "typos", "ignore_articles")
_NUMBERS = {"time_limit": False, "tolerance": False, "points": True, "speed_bonus": True,
            "typos": True}  # column -> whole numbers only
_FLAGS = ("partial", "ignore_articles")
_TRUE = ("true", "yes", "y", "1")
_FALSE = ("false", "no", "n", "0")
_LIST_KINDS = ("multiple", "ordering", "text")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def read_csv(raw: bytes, draft: Draft) -> None:
    """Fill ``draft`` from the bytes of a CSV file with the documented header."""
    text = decode_text(raw, draft.source)
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    line = 1
    round_title: str | None = None
    rows = 0
    for cells in reader:
        start, line = line, reader.line_num + 1  # this row's first line; the next row's
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = _header(cells, start, draft)
            if header is None:
                return
            continue
        rows += 1
        if rows > MAX_RECORDS:
            draft.problem(start, f"line {start}", f"more than {MAX_RECORDS} rows: the rest "
                          "was not read")
            return
        row = dict(zip(header, (c.strip() for c in cells), strict=False))
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            draft.problem(start, f"line {start}", f"{len(cells)} cells but the header names "
                          f"{len(header)} columns")
            continue
        title = row.get("round", "")
        if title and title != round_title:
            draft.new_round(title, f"line {start}")
            round_title = title
        item = _item(row, start, draft)
        if item is not None:
            draft.add(item, start, f"line {start}")
    if header is None:
        draft.problem(0, "", "the file is empty: expected a header row naming the columns "
                      f"({', '.join(REQUIRED)}, ...)")


def _header(cells: list[str], line: int, draft: Draft) -> list[str] | None:
    names = [c.strip().lower() for c in cells]
    ok = True
    for i, name in enumerate(names):
        if name not in REQUIRED + OPTIONAL:
            draft.problem(line, f"line {line}", f"unknown column {cells[i].strip()!r} (columns: "
                          f"{', '.join(REQUIRED + OPTIONAL)})")
            ok = False
        elif names.index(name) != i:
            draft.problem(line, f"line {line}", f"column {name!r} appears twice")
            ok = False
    for name in REQUIRED:
        if name not in names:
            draft.problem(line, f"line {line}", f"the header has no {name!r} column")
            ok = False
    return names if ok else None


def _item(row: dict[str, str], line: int, draft: Draft) -> dict[str, Any] | None:
    kind = row.get("kind", "").lower()
    ok = True

    def problem(column: str, message: str) -> None:
        nonlocal ok
        draft.problem(line, f"line {line}, column '{column}'", message)
        ok = False

    if kind == "slide":
        slide: dict[str, Any] = {"kind": "slide", "title": row.get("prompt", "")}
        if row.get("explanation"):
            slide["text"] = row["explanation"]
        if row.get("media"):
            slide["media"] = row["media"]
        for column in ("choices", "answer", *_NUMBERS, *_FLAGS, "unit"):
            if row.get(column):
                problem(column, "a slide has no " + column.replace("_", " "))
        return slide if ok else None
    item: dict[str, Any] = {"kind": kind, "prompt": row.get("prompt", "")}
    if row.get("choices"):
        item["choices"] = _list(row["choices"])
    answer = row.get("answer", "")
    if not answer:
        problem("answer", "is empty")
    elif kind in _LIST_KINDS:
        item["answer"] = _list(answer)
    elif kind == "truefalse":
        flag = _flag(answer)
        if flag is None:
            problem("answer", f"{answer!r} is not true or false")
        item["answer"] = flag
    elif kind == "numeric":
        number = _number(answer, whole=False)
        if number is None:
            problem("answer", f"{answer!r} is not a number")
        item["answer"] = number
    else:
        item["answer"] = answer  # single: the choice's text; other kinds: the validator says
    for column, whole in _NUMBERS.items():
        if row.get(column):
            value = _number(row[column], whole=whole)
            if value is None:
                problem(column, f"{row[column]!r} is not a {'whole ' if whole else ''}number")
            item[column] = value
    for column in _FLAGS:
        if row.get(column):
            flag = _flag(row[column])
            if flag is None:
                problem(column, f"{row[column]!r} is not true or false")
            item[column] = flag
    for column in ("explanation", "media", "unit"):
        if row.get(column):
            item[column] = row[column]
    return item if ok else None


def _list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split("|")]


def _flag(cell: str) -> bool | None:
    low = cell.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


def _number(cell: str, *, whole: bool) -> int | float | None:
    text = cell.strip().replace(" ", "")
    if not _NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    value = float(text)
    if whole:
        return int(value) if value.is_integer() else None
    return value
