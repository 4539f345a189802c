"""Quizzes back to TOML: a small TOML writer for plain data, and ``quiz_to_toml``.

Why our own writer rather than a dependency: the standard library reads TOML (``tomllib``) but
does not write it, and the data a quiz file holds is a small subset of TOML (text, whole and
decimal numbers, booleans, lists, tables and arrays of tables). Writing that subset is about
a hundred lines, tested against ``tomllib`` by a property test, and it lets the output look like
the hand-written sample (``[[rounds.items]]`` indented under its ``[[rounds]]``, answers given
as choice text, fields at their default left out) instead of a generic dump.

Rules this module keeps:

1. ``tomllib.loads(dumps(data)) == data`` for every value of the subset; anything outside it
   (None, dates, integers beyond 64 bits, a non-text key) raises ``ValueError``, never writes
   something that reads back differently.
2. ``quiz_to_toml`` validates what it is given (a ``Quiz`` or plain quiz data) and writes a file
   that ``load_quiz`` reads back to the same ``Quiz``. It writes no ``[defaults]`` table, so
   every field it leaves out means exactly the loader's built-in default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pubquiz_engine.game.loader import DEFAULT_ARTICLES, FORMAT_VERSION, load_quiz_data
from pubquiz_engine.game.quiz import NumericMode, Question, QuestionKind, Quiz, Slide

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Basic strings must escape the quote, the backslash and every control character but tab.
_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"',
            "\\": "\\\\"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')
_INT64 = (-(2**63), 2**63 - 1)

__all__ = ["dumps", "quiz_to_toml"]


# --- the writer -------------------------------------------------------------------------------

def dumps(data: Mapping[str, Any], *, header: str = "") -> str:
    """TOML text for ``data`` (rule 1). ``header`` becomes leading ``#`` comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    _table(lines, (), data)
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines) + "\n"


def _is_table_array(value: Any) -> bool:
    """A non-empty list of tables is written as ``[[name]]`` sections; others stay inline."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
    )


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    # Nested arrays of tables are indented two spaces a level, like the sample quiz: rounds at
    # the margin, their items under them.
    indent = "  " * max(len(path) - 1, 0)
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in table.items():
        if not isinstance(key, str):
            raise ValueError(f"TOML keys are text, not {type(key).__name__}")
        if isinstance(value, Mapping):
            subtables.append((key, value))
        elif _is_table_array(value):
            arrays.append((key, value))
        else:
            # Keys must come before any sub-table header, or they would land in the sub-table.
            lines.append(f"{indent}{_key(key)} = {_inline(value)}")
    for key, sub in subtables:
        name = ".".join(_key(k) for k in (*path, key))
        lines += ["", f"{'  ' * len(path)}[{name}]"]
        _table(lines, (*path, key), sub)
    for key, elements in arrays:
        name = ".".join(_key(k) for k in (*path, key))
        for element in elements:
            lines += ["", f"{'  ' * len(path)}[[{name}]]"]
            _table(lines, (*path, key), element)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    def escape(found: re.Match[str]) -> str:
        char = found.group()
        return _ESCAPES.get(char, f"\\u{ord(char):04x}")

    return '"' + _NEEDS_ESCAPE.sub(escape, text) + '"'


def _inline(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{value} does not fit TOML's 64-bit integers")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # repr always has '.' or 'e', so it reads back as a float
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"TOML keys are text, not {type(key).__name__}")
        return "{ " + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):  # list or tuple; str was handled above
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    raise ValueError(f"TOML cannot hold {type(value).__name__} values")


# --- quizzes ----------------------------------------------------------------------------------

def quiz_to_toml(quiz_or_data: Quiz | Mapping[str, Any], *, header: str = "") -> str:
    """A quiz file, in TOML, for a ``Quiz`` or plain quiz data (validated first; rule 2).

    Raises ``QuizFileError`` (every problem, located as ``<data>: ...``) for invalid data.
    """
    quiz = (
        quiz_or_data if isinstance(quiz_or_data, Quiz)
        else load_quiz_data(quiz_or_data, source="<data>")
    )
    return dumps(_quiz_data(quiz), header=header)


def _number(value: float) -> int | float:
    """Whole numbers as integers, for fields the loader takes either way (time limits...)."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _quiz_data(quiz: Quiz) -> dict[str, Any]:
    out: dict[str, Any] = {"format": FORMAT_VERSION, "title": quiz.title}
    if quiz.description:
        out["description"] = quiz.description
    if quiz.author:
        out["author"] = quiz.author
    rounds: list[dict[str, Any]] = []
    for rnd in quiz.rounds:
        rdata: dict[str, Any] = {"title": rnd.title}
        if rnd.multiplier != 1.0:
            rdata["multiplier"] = _number(rnd.multiplier)
        if rnd.wager:
            rdata["wager"] = True
        if not rnd.joker:
            rdata["joker"] = False
        rdata["items"] = [
            _slide_data(item) if isinstance(item, Slide) else _question_data(item)
            for item in rnd.items
        ]
        rounds.append(rdata)
    out["rounds"] = rounds
    return out


def _slide_data(slide: Slide) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "slide", "title": slide.title}
    if slide.text:
        out["text"] = slide.text
    if slide.media is not None:
        out["media"] = slide.media
    return out


def _question_data(q: Question) -> dict[str, Any]:
    # Field order follows the sample quiz: what the question is, then its answer, then the
    # fields that tune it. Each is written only when it differs from the loader's default.
    out: dict[str, Any] = {"kind": q.kind.value, "prompt": q.prompt}
    if q.media is not None:
        out["media"] = q.media
        out["media_type"] = q.media_type
    if q.choices:
        out["choices"] = list(q.choices)
    # Answers by choice text, not index: readable, and unambiguous because the loader refuses
    # choices that differ only in case.
    if q.kind is QuestionKind.SINGLE:
        out["answer"] = q.choices[q.answer]
    elif q.kind in (QuestionKind.MULTIPLE, QuestionKind.ORDERING):
        out["answer"] = [q.choices[i] for i in q.answer]
    elif q.kind is QuestionKind.TEXT:
        out["answer"] = q.answer[0] if len(q.answer) == 1 else list(q.answer)
    else:  # truefalse (bool) and numeric (int or float, kept as it is)
        out["answer"] = q.answer
    if q.partial:
        out["partial"] = True
    if q.kind is QuestionKind.TEXT:
        if q.ignore_articles == DEFAULT_ARTICLES:
            out["ignore_articles"] = True
        elif q.ignore_articles:
            out["ignore_articles"] = list(q.ignore_articles)
        if q.typos:
            out["typos"] = q.typos
    if q.kind is QuestionKind.NUMERIC:
        if q.numeric_mode is not NumericMode.EXACT:
            out["mode"] = q.numeric_mode.value
        if q.tolerance:
            out["tolerance"] = _number(q.tolerance)
        if q.unit:
            out["unit"] = q.unit
        if q.tiebreak:
            out["tiebreak"] = True
    if q.time_limit != 30.0:
        out["time_limit"] = _number(q.time_limit)
    if q.points != (0 if q.tiebreak else 1):
        out["points"] = q.points
    if q.speed_bonus:
        out["speed_bonus"] = q.speed_bonus
    if q.explanation:
        out["explanation"] = q.explanation
    return out
