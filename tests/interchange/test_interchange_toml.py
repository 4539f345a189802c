"""Quizzes back to TOML: the writer reads back exactly, and quizzes survive the round trip."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import load_quiz, load_quiz_data, sample_quiz_path
from pubquiz_engine.interchange import dumps, quiz_to_toml

# Any text TOML can hold (every Unicode scalar value: control characters included, so the
# escapes are exercised; lone surrogates are not text UTF-8 can carry).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(texts, values, max_size=6))
def test_writer_reads_back_exactly(data: dict[str, Any]) -> None:
    assert tomllib.loads(dumps(data)) == data


def test_writer_layout_and_refusals() -> None:
    text = dumps({"a": 1, "t": {"x": "q\"\\\n\x00"}, "rows": [{"k": 1.5, "sub": [{"z": True}]}]},
                 header="made by a test")
    assert text == (
        "# made by a test\n\na = 1\n\n[t]\nx = \"q\\\"\\\\\\n\\u0000\"\n\n[[rows]]\nk = 1.5\n"
        "\n  [[rows.sub]]\n  z = true\n"
    )
    assert dumps({"inf": math.inf, "odd key": []}) == 'inf = inf\n"odd key" = []\n'
    for bad in ({"n": None}, {"big": 2**64}, {"t": {1: 2}}):
        with pytest.raises(ValueError):
            dumps(bad)


def test_sample_quiz_round_trips_through_toml() -> None:
    quiz = load_quiz(sample_quiz_path())
    text = quiz_to_toml(quiz)
    assert load_quiz_data(tomllib.loads(text)) == quiz
    # Readable: answers by choice text, defaults left out, items indented under rounds.
    assert '  answer = "Canberra"\n' in text
    assert "time_limit = 30" not in text
    assert "\n  [[rounds.items]]\n" in text


def test_plain_data_is_validated_first() -> None:
    with pytest.raises(QuizFileError) as info:
        quiz_to_toml({"title": "T", "rounds": []})
    assert info.value.problems == [
        "<data>: field 'rounds': must be a non-empty list of rounds ([[rounds]] in TOML)"
    ]


# --- random valid quizzes -----------------------------------------------------------------

words = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=15).filter(
    lambda s: bool(s.strip())
)


@st.composite
def questions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(
        ["single", "multiple", "ordering", "truefalse", "text", "numeric"]))
    q: dict[str, Any] = {"kind": kind, "prompt": draw(words)}
    if kind in ("single", "multiple", "ordering"):
        choices = draw(st.lists(words, min_size=2, max_size=5,
                                unique_by=lambda s: s.strip().casefold()))
        q["choices"] = choices
        n = len(choices)
        if kind == "single":
            q["answer"] = draw(st.integers(0, n - 1))
        elif kind == "multiple":
            q["answer"] = draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True))
        else:
            q["answer"] = draw(st.permutations(range(n)))
        if kind != "single":
            q["partial"] = draw(st.booleans())
    elif kind == "truefalse":
        q["answer"] = draw(st.booleans())
    elif kind == "text":
        q["answer"] = draw(st.lists(words, min_size=1, max_size=3))
        q["typos"] = draw(st.integers(0, 3))
        q["ignore_articles"] = draw(st.one_of(st.booleans(), st.lists(words, max_size=2)))
    else:
        q["answer"] = draw(st.one_of(st.integers(-(10**15), 10**15),
                                     st.floats(-1e15, 1e15, allow_nan=False)))
        q["tolerance"] = draw(st.floats(0, 1e6))
        q["mode"] = draw(st.sampled_from(["exact", "closest"]))
        q["unit"] = draw(st.text(max_size=5))
    q["time_limit"] = draw(st.one_of(st.integers(1, 3600), st.floats(1, 3600)))
    q["points"] = draw(st.integers(1, 1000))
    q["speed_bonus"] = draw(st.integers(0, 5))
    q["explanation"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        q["media"] = draw(st.sampled_from(["pic.png", "https://example.org/a.mp3", "v/c.webm"]))
    return q


slides = st.builds(lambda t, x: {"kind": "slide", "title": t, "text": x}, words,
                   st.text(max_size=20))
rounds = st.fixed_dictionaries(
    {"title": words, "items": st.lists(st.one_of(questions(), slides), min_size=1, max_size=4)},
    optional={"multiplier": st.floats(0.5, 10), "wager": st.booleans(), "joker": st.booleans()},
)
quizzes = st.fixed_dictionaries(
    {"title": words, "rounds": st.lists(rounds, min_size=1, max_size=3)},
    optional={"description": st.text(max_size=30), "author": st.text(max_size=10)},
)


@settings(max_examples=150, deadline=None)
@given(quizzes)
def test_any_quiz_round_trips_through_toml(data: dict[str, Any]) -> None:
    try:
        quiz = load_quiz_data(data)
    except QuizFileError:
        # A draw with no question at all, or a wager round without one: not a quiz.
        return
    text = quiz_to_toml(quiz)
    assert load_quiz_data(tomllib.loads(text)) == quiz
    assert quiz_to_toml(data) == text
