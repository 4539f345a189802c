"""Quiz files: TOML and JSON in, a validated ``Quiz`` out, and back to plain data.

Rules this module keeps:

1. Every problem is collected, never just the first: ``QuizFileError.problems`` lists them
   all, each located as ``"<file>: round 2, question 3: field 'points': must be > 0"`` (with
   ``line N, column M`` for syntax errors, where the parser knows them). No traceback ever
   reaches the author: anything unexpected in the data becomes a problem line.
2. Unknown fields are problems too: a typo such as ``pionts`` must not silently fall back to
   the default.
3. ``load_quiz_data`` is the one validator; files and quizzes sent through the protocol share
   it. ``quiz_to_data`` is its inverse: ``load_quiz_data(quiz_to_data(q)) == q``, and its
   output is plain data (no None, no tuples) that TOML, JSON and msgpack can all carry.
4. The format is documented in ``docs/quiz-format.md``; ``FORMAT_VERSION`` is the version a
   file may declare with ``format = 1``.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game.quiz import Item, NumericMode, Question, QuestionKind, Quiz, Round, Slide

FORMAT_VERSION = 1
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_PROMPT = 1000
MAX_CHOICE = 200
MAX_CHOICES = 12
MAX_TIME_LIMIT = 3600
MAX_POINTS = 1000
MAX_TYPOS = 3
MAX_ROUNDS = 100
MAX_ITEMS = 500
DEFAULT_ARTICLES = ("the", "a", "an")

_MEDIA = re.compile(r"^(https?://[^\s]+|[A-Za-z0-9_][A-Za-z0-9_./-]*)$")
_MEDIA_TYPES = {
    "image": (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".avif"),
    "audio": (".mp3", ".ogg", ".oga", ".wav", ".m4a", ".flac", ".aac", ".opus"),
    "video": (".mp4", ".webm", ".mov", ".m4v"),
}

_COMMON_FIELDS = {
    "kind", "prompt", "answer", "time_limit", "points", "speed_bonus", "media", "media_type",
    "explanation",
}
_KIND_FIELDS: dict[QuestionKind, set[str]] = {
    QuestionKind.SINGLE: {"choices"},
    QuestionKind.MULTIPLE: {"choices", "partial"},
    QuestionKind.TRUEFALSE: set(),
    QuestionKind.TEXT: {"ignore_articles", "typos"},
    QuestionKind.NUMERIC: {"mode", "tolerance", "tiebreak", "unit"},
    QuestionKind.ORDERING: {"choices", "partial"},
}
_SLIDE_FIELDS = {"kind", "title", "text", "media"}
_ROUND_FIELDS = {"title", "multiplier", "wager", "joker", "items"}
_QUIZ_FIELDS = {"format", "title", "description", "author", "defaults", "rounds"}
_DEFAULT_FIELDS = {"time_limit", "points", "speed_bonus", "ignore_articles", "typos"}


class _Checker:
    """Collects located problems while reading one quiz's data."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, where: str, message: str) -> None:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        self.problems.append(prefix + message)

    def field(self, where: str, name: str, message: str) -> None:
        self.add(where, f"field '{name}': {message}")

    def unknown(self, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                self.add(where, f"unknown field '{key}'")

    # Typed readers: return the value, or None after recording a problem.
    def text(
        self, where: str, data: Mapping[str, Any], name: str, *, required: bool = False,
        limit: int = MAX_PROMPT, default: str | None = None,
    ) -> str | None:
        if name not in data:
            if required:
                self.field(where, name, "is required")
            return default
        value = data[name]
        if not isinstance(value, str):
            self.field(where, name, f"must be text, not {_kind_of(value)}")
            return None
        value = value.strip()
        if required and not value:
            self.field(where, name, "must not be empty")
            return None
        if len(value) > limit:
            self.field(where, name, f"is longer than {limit} characters")
            return None
        return value

    def number(
        self, where: str, data: Mapping[str, Any], name: str, *, default: float,
        low: float, high: float, low_open: bool = False, integer: bool = False,
    ) -> float | None:
        if name not in data:
            return default
        value = data[name]
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            wanted = "a whole number" if integer else "a number"
            self.field(where, name, f"must be {wanted}, not {_kind_of(value)}")
            return None
        if not math.isfinite(value):
            self.field(where, name, "must be a finite number")
            return None
        if (value <= low if low_open else value < low) or value > high:
            bound = f"> {_fmt(low)}" if low_open else f">= {_fmt(low)}"
            self.field(where, name, f"must be {bound} and <= {_fmt(high)}")
            return None
        return cast(float, value)  # an int stays an int: points and typos are whole numbers

    def flag(self, where: str, data: Mapping[str, Any], name: str) -> bool:
        value = data.get(name, False)
        if not isinstance(value, bool):
            self.field(where, name, f"must be true or false, not {_kind_of(value)}")
            return False
        return value


def _kind_of(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _choices(ck: _Checker, where: str, data: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = data.get("choices")
    if raw is None:
        ck.field(where, "choices", "is required")
        return None
    if not isinstance(raw, list) or not raw:
        ck.field(where, "choices", "must be a non-empty list of text")
        return None
    out: list[str] = []
    ok = True
    for i, c in enumerate(raw, start=1):
        if not isinstance(c, str) or not c.strip():
            ck.field(where, "choices", f"choice {i} must be non-empty text")
            ok = False
        elif len(c.strip()) > MAX_CHOICE:
            ck.field(where, "choices", f"choice {i} is longer than {MAX_CHOICE} characters")
            ok = False
        else:
            out.append(c.strip())
    if not ok:
        return None
    if not 2 <= len(out) <= MAX_CHOICES:
        ck.field(where, "choices", f"must hold 2 to {MAX_CHOICES} choices, not {len(out)}")
        return None
    folded = [c.casefold() for c in out]
    if len(set(folded)) != len(folded):
        dupes = sorted({c for c in out if folded.count(c.casefold()) > 1})
        ck.field(where, "choices", f"duplicate choice {dupes[0]!r}")
        return None
    return tuple(out)


def _choice_index(value: Any, choices: tuple[str, ...]) -> int | None:
    """An answer may name a choice by 0-based index or by its exact text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < len(choices) else None
    if isinstance(value, str):
        folded = [c.casefold() for c in choices]
        key = value.strip().casefold()
        return folded.index(key) if key in folded else None
    return None


def _articles(ck: _Checker, where: str, value: Any) -> tuple[str, ...] | None:
    if isinstance(value, bool):
        return DEFAULT_ARTICLES if value else ()
    if isinstance(value, list) and all(isinstance(a, str) and a.strip() for a in value):
        return tuple(a.strip().casefold() for a in value)
    ck.field(where, "ignore_articles", "must be true, false or a list of words")
    return None


def _question(
    ck: _Checker, where: str, data: Mapping[str, Any], kind: QuestionKind,
    defaults: Mapping[str, Any],
) -> Question | None:
    start = len(ck.problems)
    ck.unknown(where, data, _COMMON_FIELDS | _KIND_FIELDS[kind])
    prompt = ck.text(where, data, "prompt", required=True)
    tiebreak = kind is QuestionKind.NUMERIC and ck.flag(where, data, "tiebreak")
    time_limit = ck.number(
        where, data, "time_limit", default=defaults["time_limit"], low=1, high=MAX_TIME_LIMIT
    )
    points = ck.number(
        where, data, "points", default=0 if tiebreak else defaults["points"],
        low=0, high=MAX_POINTS, low_open=not tiebreak, integer=True,
    )
    if tiebreak and points:
        ck.field(where, "points", "must be 0 on a tie-break question (it only orders ties)")
    bonus = ck.number(
        where, data, "speed_bonus", default=defaults["speed_bonus"], low=0, high=MAX_POINTS,
        integer=True,
    )
    explanation = ck.text(where, data, "explanation", default="")
    media, media_type = _media(ck, where, data)

    kw: dict[str, Any] = {}
    answer: Any = None
    if "answer" not in data:
        ck.field(where, "answer", "is required")
    raw = data.get("answer")
    if kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE, QuestionKind.ORDERING):
        choices = _choices(ck, where, data)
        if choices is not None and "answer" in data:
            answer = _choice_answer(ck, where, kind, raw, choices)
        kw["choices"] = choices
        if kind is not QuestionKind.SINGLE:
            kw["partial"] = ck.flag(where, data, "partial")
    elif kind is QuestionKind.TRUEFALSE:
        if "answer" in data and not isinstance(raw, bool):
            ck.field(where, "answer", "must be true or false")
        answer = raw
    elif kind is QuestionKind.TEXT:
        accepted = [raw] if isinstance(raw, str) else raw
        if "answer" in data:
            if (
                not isinstance(accepted, list) or not accepted
                or not all(isinstance(a, str) and a.strip() for a in accepted)
            ):
                ck.field(where, "answer", "must be text or a non-empty list of text")
            elif any(len(a) > MAX_CHOICE for a in accepted):
                ck.field(where, "answer", f"accepted answers are at most {MAX_CHOICE} characters")
            else:
                answer = tuple(a.strip() for a in accepted)
        kw["ignore_articles"] = _articles(
            ck, where, data.get("ignore_articles", defaults["ignore_articles"])
        )
        typos = ck.number(
            where, data, "typos", default=defaults["typos"], low=0, high=MAX_TYPOS, integer=True
        )
        kw["typos"] = None if typos is None else int(typos)
    else:  # NUMERIC
        if "answer" in data:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                ck.field(where, "answer", f"must be a number, not {_kind_of(raw)}")
            elif not math.isfinite(raw) or abs(raw) > 1e15:
                ck.field(where, "answer", "must be a finite number of at most 1e15")
            else:
                answer = raw
        mode = data.get("mode", "exact")
        if mode not in ("exact", "closest"):
            ck.field(where, "mode", "must be 'exact' or 'closest'")
        else:
            kw["numeric_mode"] = NumericMode(mode)
        kw["tolerance"] = ck.number(where, data, "tolerance", default=0.0, low=0, high=1e15)
        kw["unit"] = ck.text(where, data, "unit", limit=20, default="")
        kw["tiebreak"] = tiebreak
    if len(ck.problems) > start:
        return None
    assert prompt is not None and time_limit is not None and points is not None
    assert bonus is not None and explanation is not None
    return Question(
        kind=kind, prompt=prompt, answer=answer, time_limit=float(time_limit), points=int(points),
        speed_bonus=int(bonus), media=media, media_type=media_type, explanation=explanation,
        **kw,
    )


def _choice_answer(
    ck: _Checker, where: str, kind: QuestionKind, raw: Any, choices: tuple[str, ...]
) -> Any:
    if kind is QuestionKind.SINGLE:
        index = _choice_index(raw, choices)
        if index is None:
            ck.field(where, "answer", f"must name one of the {len(choices)} choices "
                     "(its text, or its index from 0)")
        return index
    if not isinstance(raw, list) or not raw:
        ck.field(where, "answer", "must be a non-empty list of choices")
        return None
    indices = [_choice_index(v, choices) for v in raw]
    if any(i is None for i in indices):
        bad = raw[indices.index(None)]
        ck.field(where, "answer", f"{bad!r} is not one of the choices")
        return None
    if len(set(indices)) != len(indices):
        ck.field(where, "answer", "names a choice twice")
        return None
    if kind is QuestionKind.MULTIPLE:
        return tuple(sorted(i for i in indices if i is not None))
    if len(indices) != len(choices):
        ck.field(where, "answer", f"must put all {len(choices)} choices in order")
        return None
    return tuple(i for i in indices if i is not None)


def _media(ck: _Checker, where: str, data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    media = ck.text(where, data, "media", limit=2000)
    media_type = data.get("media_type")
    if media is None:
        if media_type is not None:
            ck.field(where, "media_type", "given without 'media'")
        return None, None
    if not _MEDIA.match(media) or ".." in media:
        ck.field(where, "media", "must be an http(s) URL or a relative path without '..'")
        return None, None
    if media_type is None:
        path = media.split("?", 1)[0].lower()
        media_type = next((t for t, ends in _MEDIA_TYPES.items() if path.endswith(ends)), None)
        if media_type is None:
            ck.field(where, "media_type", "cannot tell from the file name: set image, audio "
                     "or video")
            return None, None
    elif media_type not in _MEDIA_TYPES:
        ck.field(where, "media_type", "must be 'image', 'audio' or 'video'")
        return None, None
    return media, media_type


def _defaults(ck: _Checker, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time_limit": 30.0, "points": 1, "speed_bonus": 0, "ignore_articles": False, "typos": 0,
    }
    raw = data.get("defaults", {})
    if not isinstance(raw, Mapping):
        ck.field("defaults", "defaults", "must be a table")
        return out
    ck.unknown("defaults", raw, _DEFAULT_FIELDS)
    for name, (low, high, integer) in {
        "time_limit": (1, MAX_TIME_LIMIT, False), "points": (1, MAX_POINTS, True),
        "speed_bonus": (0, MAX_POINTS, True), "typos": (0, MAX_TYPOS, True),
    }.items():
        value = ck.number("defaults", raw, name, default=out[name], low=low, high=high,
                          integer=integer)
        if value is not None:
            out[name] = value
    if "ignore_articles" in raw:
        articles = raw["ignore_articles"]
        if not isinstance(articles, bool | list):
            ck.field("defaults", "ignore_articles", "must be true, false or a list of words")
        else:
            out["ignore_articles"] = articles
    return out


def load_quiz_data(data: Mapping[str, Any], *, source: str = "<data>") -> Quiz:
    """Validate plain data (a parsed file, or a quiz sent through the protocol)."""
    ck = _Checker(source)
    if not isinstance(data, Mapping):
        raise QuizFileError([f"{source}: the quiz must be a table / object at the top level"])
    ck.unknown("", data, _QUIZ_FIELDS)
    if "format" in data and data["format"] != FORMAT_VERSION:
        ck.field("", "format", f"this engine reads format {FORMAT_VERSION}, "
                 f"not {data['format']!r}")
    title = ck.text("", data, "title", required=True, limit=200)
    description = ck.text("", data, "description", default="", limit=5000)
    author = ck.text("", data, "author", default="", limit=200)
    defaults = _defaults(ck, data)
    rounds_raw = data.get("rounds")
    rounds: list[Round] = []
    tiebreaks: list[str] = []
    if not isinstance(rounds_raw, list) or not rounds_raw:
        ck.field("", "rounds", "must be a non-empty list of rounds ([[rounds]] in TOML)")
        rounds_raw = []
    if len(rounds_raw) > MAX_ROUNDS:
        ck.field("", "rounds", f"at most {MAX_ROUNDS} rounds")
        rounds_raw = []
    for r, rdata in enumerate(rounds_raw, start=1):
        rwhere = f"round {r}"
        if not isinstance(rdata, Mapping):
            ck.add(rwhere, "must be a table")
            continue
        before = len(ck.problems)
        ck.unknown(rwhere, rdata, _ROUND_FIELDS)
        rtitle = ck.text(rwhere, rdata, "title", required=True, limit=200)
        multiplier = ck.number(rwhere, rdata, "multiplier", default=1.0, low=0, high=10,
                               low_open=True)
        wager = ck.flag(rwhere, rdata, "wager")
        joker = ck.flag(rwhere, rdata, "joker") if "joker" in rdata else True
        items_raw = rdata.get("items")
        items: list[Item] = []
        if not isinstance(items_raw, list) or not items_raw:
            ck.field(rwhere, "items", "must be a non-empty list ([[rounds.items]] in TOML)")
            items_raw = []
        if len(items_raw) > MAX_ITEMS:
            ck.field(rwhere, "items", f"at most {MAX_ITEMS} items per round")
            items_raw = []
        q_number = s_number = 0
        for idata in items_raw:
            if not isinstance(idata, Mapping):
                ck.add(rwhere, "every item must be a table")
                continue
            kind_raw = idata.get("kind")
            if kind_raw == "slide":
                s_number += 1
                iwhere = f"{rwhere}, slide {s_number}"
                ck.unknown(iwhere, idata, _SLIDE_FIELDS)
                stitle = ck.text(iwhere, idata, "title", required=True, limit=200)
                stext = ck.text(iwhere, idata, "text", default="", limit=5000)
                smedia = ck.text(iwhere, idata, "media", limit=2000)
                if stitle is not None and stext is not None:
                    items.append(Slide(title=stitle, text=stext, media=smedia))
                continue
            q_number += 1
            iwhere = f"{rwhere}, question {q_number}"
            if kind_raw is None:
                ck.field(iwhere, "kind", "is required ('slide' or a question kind)")
                continue
            try:
                kind = QuestionKind(str(kind_raw))
            except ValueError:
                kinds = ", ".join(k.value for k in QuestionKind)
                ck.field(iwhere, "kind", f"must be 'slide' or one of {kinds}; got {kind_raw!r}")
                continue
            question = _question(ck, iwhere, idata, kind, defaults)
            if question is not None:
                if question.tiebreak:
                    tiebreaks.append(iwhere)
                items.append(question)
        if items_raw and q_number == 0 and wager:
            ck.add(rwhere, "a wager round needs at least one question")
        if len(ck.problems) == before:
            assert rtitle is not None and multiplier is not None
            rounds.append(Round(title=rtitle, items=tuple(items), multiplier=float(multiplier),
                                wager=wager, joker=joker))
    if len(tiebreaks) > 1:
        ck.add(tiebreaks[1], "only one tie-break question per quiz (the first is "
               f"{tiebreaks[0]})")
    if not ck.problems and not any(rnd.questions for rnd in rounds):
        ck.add("", "the quiz has no questions")
    if ck.problems:
        raise QuizFileError(ck.problems)
    assert title is not None and description is not None and author is not None
    return Quiz(title=title, rounds=tuple(rounds), description=description, author=author)


def load_quiz(path: str | Path) -> Quiz:
    """Load and validate a ``.toml`` or ``.json`` quiz file."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise QuizFileError([f"{source}: unsupported file type {suffix or '(none)'!r}: "
                             "use .toml or .json"])
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise QuizFileError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise QuizFileError([f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise QuizFileError([f"{source}: line {line}: not valid UTF-8"]) from None
    data: Any
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib ends its message with "(at line L, column C)"; lift that to the front.
            message = str(exc)
            found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
            if found:
                message = message[: found.start()].rstrip()
                where = f"line {found.group(1)}, column {found.group(2)}: "
            else:
                where = ""
            raise QuizFileError([f"{source}: {where}TOML syntax error: {message}"]) from None
    else:
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise QuizFileError([f"{source}: line {exc.lineno}, column {exc.colno}: "
                                     f"JSON syntax error: {exc.msg}"]) from None
            raise QuizFileError([f"{source}: JSON error: {exc}"]) from None
    return load_quiz_data(data, source=source)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a quiz can use")


def quiz_to_data(quiz: Quiz) -> dict[str, Any]:
    """Plain data for ``quiz`` (rule 3): the inverse of ``load_quiz_data``."""
    rounds: list[dict[str, Any]] = []
    for rnd in quiz.rounds:
        items: list[dict[str, Any]] = []
        for item in rnd.items:
            if isinstance(item, Slide):
                slide: dict[str, Any] = {"kind": "slide", "title": item.title, "text": item.text}
                if item.media is not None:
                    slide["media"] = item.media
                items.append(slide)
            else:
                items.append(_question_to_data(item))
        rounds.append({"title": rnd.title, "multiplier": rnd.multiplier, "wager": rnd.wager,
                       "joker": rnd.joker, "items": items})
    return {"format": FORMAT_VERSION, "title": quiz.title, "description": quiz.description,
            "author": quiz.author, "rounds": rounds}


def _question_to_data(q: Question) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": q.kind.value, "prompt": q.prompt, "time_limit": q.time_limit,
        "points": q.points, "speed_bonus": q.speed_bonus, "explanation": q.explanation,
    }
    if q.media is not None:
        out["media"] = q.media
        out["media_type"] = q.media_type
    if q.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE, QuestionKind.ORDERING):
        out["choices"] = list(q.choices)
    if q.kind in (QuestionKind.MULTIPLE, QuestionKind.ORDERING):
        out["partial"] = q.partial
    if q.kind is QuestionKind.TEXT:
        out["ignore_articles"] = list(q.ignore_articles)
        out["typos"] = q.typos
    if q.kind is QuestionKind.NUMERIC:
        out.update(mode=q.numeric_mode.value, tolerance=q.tolerance, tiebreak=q.tiebreak,
                   unit=q.unit)
    out["answer"] = list(q.answer) if isinstance(q.answer, tuple) else q.answer
    return out


def sample_quiz_path() -> Path:
    """The complete sample pub quiz shipped with the package."""
    return Path(__file__).parent / "samples" / "pub_quiz.toml"
