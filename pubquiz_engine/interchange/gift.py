"""GIFT (Moodle's plain-text question format), a documented subset, to quiz data.

GIFT in one paragraph: questions are separated by blank lines; ``//`` starts a comment line;
``$CATEGORY: path`` starts a category; a question is ``::name:: text {answers}``; inside the
braces ``=`` marks a right answer, ``~`` a wrong one, ``#`` starts the feedback on the answer
before it and ``####`` the general feedback; ``%50%`` gives an answer a weight; ``\\`` escapes
``~ = # { } :``.

What this importer carries over:

===================================  ==================================================
GIFT                                 quiz
===================================  ==================================================
``{T}`` ``{TRUE}`` ``{F}`` ``{FALSE}``  ``truefalse``
``{=right ~wrong ~wrong}``           ``single``
``{~%50%a ~%50%b ~%-100%c}``         ``multiple`` (positive weights are the right
                                     choices; unequal weights give partial credit)
``{=answer =other answer}``          ``text`` (every ``=`` answer is accepted)
``{#3.14:0.01}`` ``{#1..5}``          ``numeric`` with a tolerance (a range becomes its
``{#=1989}``                         middle, give or take half its width)
text ``{...}`` more text             the same, the gap shown as ``_____``
a text without ``{...}``             a slide (Moodle's "description")
``$CATEGORY: $course$/Music``        a new round titled ``Music``
``####general feedback``             ``explanation`` (or the right answer's feedback)
===================================  ==================================================

Rules this module keeps:

1. Anything else is reported, located by line, never dropped in silence: matching and essay
   questions, partial credit or penalties that the quiz cannot score, several right answers on
   a choice question. What is left out without changing the scoring (question names, feedback
   on wrong answers, ``[html]`` markup) is a note.
2. Line numbers are the file's own: comment lines are removed without renumbering.
3. The parser is a scanner over characters, not a regular expression: escapes are honoured
   everywhere, and a missing ``}`` is a problem, not a hang.
"""

from __future__ import annotations

import re
from typing import Any

from pubquiz_engine.interchange._draft import MAX_RECORDS, Draft, decode_text

_ESCAPABLE = "~=#{}:\\"
_WEIGHT = re.compile(r"^%(-?\d+(?:\.\d+)?)%")
_FORMAT = re.compile(r"^\[(html|moodle|plain|markdown)\]", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Path segments of a category that are Moodle's context markers, not names.
_CATEGORY_MARKERS = re.compile(r"^(\$\w+\$|top)$", re.IGNORECASE)
_GAP = "_____"


class _Unsupported(Exception):
    """A question this importer cannot carry over: becomes one located problem."""


def read_gift(raw: bytes, draft: Draft) -> None:
    """Fill ``draft`` from the bytes of a GIFT file."""
    text = decode_text(raw, draft.source)
    names = 0
    for number, (line, lines) in enumerate(_blocks(text)):
        if number >= MAX_RECORDS:
            draft.problem(line, f"line {line}", f"more than {MAX_RECORDS} questions: the rest "
                          "was not read")
            return
        if lines[0].lstrip().upper().startswith("$CATEGORY:"):
            draft.new_round(_category(lines[0].split(":", 1)[1]), f"line {line}")
            lines = lines[1:]
            line += 1
            if not lines:
                continue
        try:
            item, named = _question("\n".join(lines), line, draft)
        except _Unsupported as exc:
            draft.problem(line, f"line {line}", str(exc))
            continue
        names += named
        draft.add(item, line, f"line {line}")
    if names:
        draft.note("", f"question names (::name::) are not shown: {names} question(s) had one")


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Questions as (first line number, lines): blank lines separate, comments vanish."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue  # a comment line neither separates nor belongs to a question
        if not stripped:
            if current:
                blocks.append((start, current))
                current = []
            continue
        if not current:
            start = number
        current.append(line.rstrip())
    if current:
        blocks.append((start, current))
    return blocks


def _category(path: str) -> str:
    """``$course$/top/Geography/Capitals`` -> ``Capitals``: the last real segment."""
    parts = [p.strip() for p in path.strip().split("/")]
    names = [p for p in parts if p and not _CATEGORY_MARKERS.match(p)]
    return names[-1] if names else path.strip()


def _find(text: str, target: str, start: int = 0) -> int:
    """Index of the first unescaped ``target`` at or after ``start``, or -1."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(target, i):
            return i
        i += 1
    return -1


def _split(text: str, markers: str) -> list[tuple[str, str]]:
    """Split at unescaped marker characters: [(marker or '', text after it), ...]."""
    parts: list[tuple[str, str]] = []
    marker, start, i = "", 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in markers:
            parts.append((marker, text[start:i]))
            marker, start = text[i], i + 1
        i += 1
    parts.append((marker, text[start:]))
    return parts


def _unescape(text: str) -> str:
    """GIFT escapes resolved; the line breaks of a wrapped question become single spaces."""
    text = " ".join(text.split())
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append("\n" if nxt == "n" else nxt if nxt in _ESCAPABLE else "\\" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out).strip()


def _plain(text: str, line: int, draft: Draft) -> str:
    """Drop a ``[format]`` marker; HTML becomes its text (with a note)."""
    found = _FORMAT.match(text)
    if not found:
        return text
    text = text[found.end():]
    if found.group(1).lower() == "html" and _TAG.search(text):
        draft.note(f"line {line}", "HTML markup was removed; the text was kept")
        text = _TAG.sub("", text)
    return text


def _question(text: str, line: int, draft: Draft) -> tuple[dict[str, Any], int]:
    """One question block as a quiz item; the second value counts a ``::name::`` (0 or 1)."""
    name = ""
    if text.startswith("::"):
        end = _find(text, "::", 2)
        if end < 0:
            raise _Unsupported("'::' opens a question name that is never closed")
        name = _unescape(text[2:end])
        text = text[end + 2:].lstrip()
    text = _plain(text, line, draft)
    opening = _find(text, "{")
    if opening < 0:
        # A text with no answers: Moodle's "description", shown between questions.
        # Its name is the slide's title; without one, a short text is the title itself.
        body = _unescape(text)
        if name:
            slide = {"kind": "slide", "title": name, "text": body}
        elif len(body) <= 200:
            slide = {"kind": "slide", "title": body}
        else:
            slide = {"kind": "slide", "title": "Note", "text": body}
        return slide, 0  # the name is shown: it is the title
    closing = _find(text, "}", opening + 1)
    if closing < 0:
        raise _Unsupported("'{' opens the answers but no '}' closes them")
    if _find(text, "{", closing + 1) >= 0:
        raise _Unsupported("more than one answer block: embedded (cloze) answers are not "
                           "supported")
    before, after = text[:opening].strip(), text[closing + 1:].strip()
    # Text after the answers makes a "missing word" question: the answers fill the gap.
    prompt = _unescape(f"{before} {_GAP} {after}" if after else before)
    item = _answers(text[opening + 1:closing], line, draft)
    item = {"kind": item.pop("kind"), "prompt": prompt, **item}
    return item, int(bool(name))


def _feedback(answer: str) -> tuple[str, str]:
    """Split one answer at its first unescaped ``#``: (answer, feedback)."""
    at = _find(answer, "#")
    if at < 0:
        return answer, ""
    return answer[:at], _unescape(answer[at + 1:])


def _answers(body: str, line: int, draft: Draft) -> dict[str, Any]:
    general = ""
    at = _find(body, "####")
    if at >= 0:
        body, general = body[:at], _unescape(body[at + 4:])
    body = body.strip()
    if not body:
        raise _Unsupported("essay questions ({}) are not supported")
    if body.startswith("#"):
        item = _numeric(body[1:].strip())
    elif _feedback(body)[0].strip().upper() in ("T", "TRUE", "F", "FALSE"):
        value, *feedback = _split(body, "#")
        # Moodle's {TRUE#shown if wrong#shown if right}: the second is the explanation.
        texts = [_unescape(f) for _, f in feedback]
        item = {"kind": "truefalse", "answer": value[1].strip().upper().startswith("T"),
                "feedback": texts[1] if len(texts) > 1 else texts[0] if texts else "",
                "dropped": len(texts) > 1 and bool(texts[0])}
    else:
        item = _choices(body, line, draft)
    feedback = item.pop("feedback")
    explanation = general or feedback
    if item.pop("dropped"):
        draft.note(f"line {line}", "feedback on wrong answers is not shown")
    if explanation:
        item["explanation"] = explanation
    return item


def _weighted(text: str) -> tuple[float | None, str]:
    found = _WEIGHT.match(text.strip())
    if not found:
        return None, text.strip()
    return float(found.group(1)), text.strip()[found.end():]


def _choices(body: str, line: int, draft: Draft) -> dict[str, Any]:
    parts = _split(body, "=~")
    if parts[0][1].strip():
        raise _Unsupported(f"text {parts[0][1].strip()!r} before the first '=' or '~' answer")
    answers: list[tuple[str, float | None, str, str]] = []  # (marker, weight, text, feedback)
    for marker, raw in parts[1:]:
        answer, feedback = _feedback(raw)
        if _find(answer, "->") >= 0:
            raise _Unsupported("matching questions are not supported")
        weight, answer = _weighted(answer)
        answers.append((marker, weight, _unescape(answer), feedback))
    right = [a for a in answers if a[0] == "="]
    wrong = [a for a in answers if a[0] == "~"]
    if not wrong:
        # Only '=' answers: a short-answer question accepting each of them.
        partial = [a for a in right if a[1] is not None and a[1] != 100]
        if partial:
            raise _Unsupported(f"partial credit ({_fmt(partial[0][1])}%) on short answer "
                               f"{partial[0][2]!r} is not supported")
        return {"kind": "text", "answer": [a[2] for a in right],
                "feedback": right[0][3], "dropped": False}
    choices = [a[2] for a in answers]
    if right:
        if len(right) > 1:
            raise _Unsupported("more than one '=' answer among choices: use ~%50% weights "
                               "for a question with several right choices")
        weighted = [a for a in wrong if a[1]]
        if weighted:
            raise _Unsupported(f"weight {_fmt(weighted[0][1])}% on a wrong choice "
                               f"{weighted[0][2]!r} is not supported (partial credit or "
                               "penalty)")
        return {"kind": "single", "choices": choices, "answer": right[0][2],
                "feedback": right[0][3], "dropped": any(a[3] for a in wrong)}
    # No '=': Moodle's multiple-answer question; the positively weighted choices are right.
    good = [a for a in answers if (a[1] or 0) > 0]
    if not good:
        raise _Unsupported("no right answer: mark one with '=' or give it a positive %weight%")
    if any(a[3] for a in answers):
        draft.note(f"line {line}", "feedback on individual choices is not shown")
    # Moodle credits each right choice its weight and each wrong one its (usually negative)
    # weight. Our partial credit gives each right choice an equal share and lets each wrong
    # one cancel a share: the same when the right weights are equal. Exports round 1/3 to
    # 33.33333, so "equal" allows a point of rounding.
    weights = [a[1] or 0.0 for a in good]
    if max(weights) - min(weights) > 1:
        raise _Unsupported(f"unequal weights ({', '.join(_fmt(w) for w in weights)}%) on the "
                           "right choices are not supported: give each the same weight")
    return {"kind": "multiple", "choices": choices, "answer": [a[2] for a in good],
            "partial": True, "feedback": "", "dropped": False}


def _numeric(body: str) -> dict[str, Any]:
    if body.startswith("="):
        answers = [_feedback(raw) for marker, raw in _split(body, "=") if marker]
        full = []
        for answer, _ in answers:
            weight, value = _weighted(answer)
            if weight is not None and weight != 100:
                raise _Unsupported(f"partial credit ({_fmt(weight)}%) on numeric answer "
                                   f"{value.strip()!r} is not supported")
            full.append(value)
        if len(full) != 1:
            raise _Unsupported("several numeric answers are not supported: give one answer "
                               "with a tolerance")
        spec, feedback = full[0], answers[0][1]
    else:
        spec, feedback = _feedback(body)
    spec = _unescape(spec)
    if ".." in spec:
        low_text, high_text = spec.split("..", 1)
        low, high = _num(low_text), _num(high_text)
        if high < low:
            raise _Unsupported(f"numeric range {spec!r} ends below its start")
        middle = (low + high) / 2
        item: dict[str, Any] = {"kind": "numeric", "answer": _whole(middle)}
        if high > low:
            item["tolerance"] = _whole((high - low) / 2)
    else:
        value_text, _, tolerance_text = spec.partition(":")
        item = {"kind": "numeric", "answer": _num(value_text)}
        if tolerance_text.strip():
            tolerance = _num(tolerance_text)
            if tolerance < 0:
                raise _Unsupported(f"negative tolerance {tolerance_text.strip()!r}")
            if tolerance:
                item["tolerance"] = tolerance
    item["feedback"] = feedback
    item["dropped"] = False
    return item


def _num(text: str) -> int | float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise _Unsupported(f"{text!r} is not a number")
    value = float(text)
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else value


def _whole(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _fmt(value: float | None) -> str:
    return "" if value is None else (str(int(value)) if value.is_integer() else str(value))
