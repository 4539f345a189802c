"""Open Trivia DB answers (the JSON of its ``api.php``) to quiz data.

The API answers ``{"response_code": 0, "results": [...]}``; each result has ``type``
(``multiple`` or ``boolean``), ``category``, ``difficulty``, ``question``, ``correct_answer``
and ``incorrect_answers``. Every text is encoded per the request's ``encode`` parameter:

- default: HTML entities (``Don&#039;t``), decoded with ``html.unescape``;
- ``url3986``: percent-encoding (``Don%27t%20forget``), decoded with ``urllib.parse.unquote``;
- ``urlLegacy``: form encoding (``Don%27t+forget``), decoded with ``unquote_plus``;
- ``base64``: every field, ``type`` included, is base64 of the UTF-8 text.

The URL and base64 encodings carry the raw text, so HTML entities are decoded for the default
encoding only (a question *about* ``&lt;`` must keep it). ``encoding=None`` detects the
encoding from the data: a base64 ``type`` field, or question texts with ``%20`` or ``+`` and no
space.

How results become questions: ``multiple`` is a ``single`` question whose choices are the
correct and incorrect answers in an order shuffled by a generator seeded with the question text
(the API always lists the correct answer apart; the order must not give it away, and the same
file must always import to the same quiz). ``boolean`` is a ``truefalse`` question.
Categories become rounds, in the order each first appears. ``difficulty`` is not used.

Problems are located by the result's index in the JSON: ``results[3]: field 'type': ...``.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import random
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.interchange._draft import MAX_RECORDS, Draft, decode_text

ENCODINGS = ("html", "url3986", "urlLegacy", "base64")
_RESPONSE_CODES = {
    1: "no results (the API had too few questions for the request)",
    2: "invalid parameter in the request",
    3: "session token not found",
    4: "session token has returned every question: reset it",
    5: "rate limited: too many requests",
}
_BASE64_TYPES = {"bXVsdGlwbGU=": "multiple", "Ym9vbGVhbg==": "boolean"}


def _b64(text: str) -> str:
    return base64.b64decode(text, validate=True).decode("utf-8")


_DECODERS: dict[str, Callable[[str], str]] = {
    "html": html.unescape,
    "url3986": unquote,
    "urlLegacy": unquote_plus,
    "base64": _b64,
}


def read_opentdb(raw: bytes, draft: Draft, *, encoding: str | None = None) -> None:
    """Fill ``draft`` from Open Trivia DB JSON; ``encoding`` is one of ``ENCODINGS`` or None."""
    if encoding is not None and encoding not in ENCODINGS:
        draft.problem(0, "", f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
        return
    text = decode_text(raw, draft.source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuizFileError([f"{draft.source}: line {exc.lineno}, column {exc.colno}: JSON "
                             f"syntax error: {exc.msg}"]) from None
    results: Any
    if isinstance(data, Mapping):
        code = data.get("response_code", 0)
        if code != 0:
            meaning = _RESPONSE_CODES.get(code, "an error") if isinstance(code, int) else "?"
            draft.problem(0, "response_code", f"{code!r}: the API answered {meaning}")
            return
        results = data.get("results")
    else:
        results = data  # a bare list of results, as some tools save them
    if not isinstance(results, list) or not results:
        draft.problem(0, "results", "must be a non-empty list of questions")
        return
    if len(results) > MAX_RECORDS:
        draft.problem(0, "results", f"more than {MAX_RECORDS} questions")
        return
    chosen = encoding or _detect(results)
    decode = _DECODERS[chosen]
    rounds: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, result in enumerate(results):
        parsed = _result(index, result, decode, chosen, draft)
        if parsed is not None:
            category, item = parsed
            rounds.setdefault(category, []).append((index, item))
    for category, items in rounds.items():
        draft.new_round(category or draft.title)
        for index, item in items:
            draft.add(item, index + 1, f"results[{index}]")


def _detect(results: list[Any]) -> str:
    first = results[0] if isinstance(results[0], Mapping) else {}
    if first.get("type") in _BASE64_TYPES:
        return "base64"
    questions = [r.get("question") for r in results if isinstance(r, Mapping)]
    texts = [q for q in questions if isinstance(q, str)]
    # URL encodings never leave a literal space; questions in the default encoding all but
    # always have one.
    if texts and not any(" " in q for q in texts):
        if any("%20" in q for q in texts):
            return "url3986"
        if any("+" in q for q in texts):
            return "urlLegacy"
    return "html"


def _result(
    index: int, result: Any, decode: Callable[[str], str], encoding: str, draft: Draft
) -> tuple[str, dict[str, Any]] | None:
    place = f"results[{index}]"
    order = index + 1
    if not isinstance(result, Mapping):
        draft.problem(order, place, "must be an object")
        return None
    ok = True

    def field(name: str, *, required: bool = True) -> str | None:
        nonlocal ok
        value = result.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            draft.problem(order, place, f"field '{name}': must be text")
            ok = False
            return None
        try:
            return decode(value).strip()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            draft.problem(order, place, f"field '{name}': not valid {encoding} text")
            ok = False
            return None

    kind = field("type")
    category = field("category", required=False)
    prompt = field("question")
    correct = field("correct_answer")
    wrong_raw = result.get("incorrect_answers", [])
    wrong: list[str] = []
    if not isinstance(wrong_raw, list):
        draft.problem(order, place, "field 'incorrect_answers': must be a list of text")
        ok = False
    else:
        for i, value in enumerate(wrong_raw):
            if not isinstance(value, str):
                draft.problem(order, place, f"field 'incorrect_answers': answer {i + 1} "
                              "must be text")
                ok = False
                continue
            try:
                wrong.append(decode(value).strip())
            except (binascii.Error, UnicodeDecodeError, ValueError):
                draft.problem(order, place, f"field 'incorrect_answers': answer {i + 1} is "
                              f"not valid {encoding} text")
                ok = False
    if not ok:
        return None
    assert kind is not None and prompt is not None and correct is not None
    assert category is not None
    if kind == "boolean":
        if correct not in ("True", "False"):
            draft.problem(order, place, f"field 'correct_answer': {correct!r} must be True or "
                          "False on a boolean question")
            return None
        return category, {"kind": "truefalse", "prompt": prompt, "answer": correct == "True"}
    if kind == "multiple":
        choices = [correct, *wrong]
        # Seeded by the question text: shuffled, yet the same file always gives the same quiz.
        random.Random(prompt).shuffle(choices)
        return category, {"kind": "single", "prompt": prompt, "choices": choices,
                          "answer": correct}
    draft.problem(order, place, f"field 'type': {kind!r} is not supported (multiple or boolean)")
    return None
