"""Quiz files: the sample loads, the format round-trips, and every problem is reported, located."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import (
    NumericMode,
    Question,
    QuestionKind,
    Quiz,
    Round,
    Slide,
    load_quiz,
    load_quiz_data,
    quiz_to_data,
    sample_quiz_path,
)


def problems_of(data: Any, source: str = "quiz.toml") -> list[str]:
    with pytest.raises(QuizFileError) as info:
        load_quiz_data(data, source=source)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def minimal(**question: Any) -> dict[str, Any]:
    q = {"kind": "single", "prompt": "Pick", "choices": ["a", "b"], "answer": 0} | question
    return {"title": "T", "rounds": [{"title": "R", "items": [q]}]}


def test_sample_quiz_is_complete() -> None:
    quiz = load_quiz(sample_quiz_path())
    assert quiz.title == "The Red Lion Thursday Quiz"
    assert len(quiz.rounds) >= 4
    assert {q.kind for q in quiz.questions} == set(QuestionKind)
    assert any(q.media_type == "image" for q in quiz.questions)  # a picture round
    assert sum(q.tiebreak for q in quiz.questions) == 1
    assert any(r.wager for r in quiz.rounds)
    assert any(r.multiplier == 2 for r in quiz.rounds)
    assert any(isinstance(i, Slide) for r in quiz.rounds for i in r.items)
    assert any(q.numeric_mode is NumericMode.EXACT and q.tolerance for q in quiz.questions)
    # Answers given as choice text were resolved to indices.
    capital = quiz.questions[0]
    assert capital.choices[capital.answer] == "Canberra"


def test_round_trip_through_plain_data_json_and_toml_shape() -> None:
    quiz = load_quiz(sample_quiz_path())
    data = quiz_to_data(quiz)
    assert load_quiz_data(data) == quiz
    assert load_quiz_data(json.loads(json.dumps(data))) == quiz


def test_json_file_loads_the_same_quiz(tmp_path: Path) -> None:
    quiz = load_quiz(sample_quiz_path())
    path = tmp_path / "quiz.json"
    path.write_text(json.dumps(quiz_to_data(quiz)), encoding="utf-8")
    assert load_quiz(path) == quiz


def test_model_built_by_hand_matches_the_loader() -> None:
    data = {
        "title": "Tiny", "rounds": [{"title": "One", "multiplier": 2, "items": [
            {"kind": "slide", "title": "Hello"},
            {"kind": "text", "prompt": "Band?", "answer": ["The Who", "Who"],
             "ignore_articles": ["the"], "typos": 1, "time_limit": 20, "points": 3},
        ]}],
    }
    expected = Quiz(title="Tiny", rounds=(Round(title="One", multiplier=2.0, items=(
        Slide(title="Hello"),
        Question(QuestionKind.TEXT, "Band?", ("The Who", "Who"), time_limit=20.0, points=3,
                 ignore_articles=("the",), typos=1),
    )),))
    assert load_quiz_data(data) == expected


def test_all_problems_are_reported_at_once_and_located() -> None:
    data = {
        "title": "",
        "rounds": [
            {"title": "R1", "items": [
                {"kind": "single", "prompt": "ok", "choices": ["a", "b"], "answer": 0},
                {"kind": "single", "prompt": "bad", "choices": ["a", "A"], "answer": 5},
                {"kind": "single", "prompt": "p", "choices": ["a", "b"], "answer": 1,
                 "points": 0},
            ]},
            {"title": "R2", "multiplier": -1, "items": [
                {"kind": "numeric", "prompt": "n", "answer": "12", "pionts": 2},
                {"kind": "essay", "prompt": "?"},
                {"kind": "text", "prompt": "t", "answer": [], "typos": 9},
                {"kind": "ordering", "prompt": "o", "choices": ["x", "y", "z"], "answer": [0, 1]},
                {"kind": "truefalse", "prompt": "tf", "answer": "yes", "time_limit": 0},
            ]},
        ],
    }
    assert problems_of(data) == [
        "quiz.toml: field 'title': must not be empty",
        "quiz.toml: round 1, question 2: field 'choices': duplicate choice 'A'",
        "quiz.toml: round 1, question 3: field 'points': must be > 0 and <= 1000",
        "quiz.toml: round 2: field 'multiplier': must be > 0 and <= 10",
        "quiz.toml: round 2, question 1: unknown field 'pionts'",
        "quiz.toml: round 2, question 1: field 'answer': must be a number, not text",
        "quiz.toml: round 2, question 2: field 'kind': must be 'slide' or one of single, "
        "multiple, truefalse, text, numeric, ordering; got 'essay'",
        "quiz.toml: round 2, question 3: field 'answer': must be text or a non-empty list of text",
        "quiz.toml: round 2, question 3: field 'typos': must be >= 0 and <= 3",
        "quiz.toml: round 2, question 4: field 'answer': must put all 3 choices in order",
        "quiz.toml: round 2, question 5: field 'time_limit': must be >= 1 and <= 3600",
        "quiz.toml: round 2, question 5: field 'answer': must be true or false",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "quiz.toml: the quiz must be a table / object at the top level"),
        ({"title": "T"}, "quiz.toml: field 'rounds': must be a non-empty list of rounds"),
        ({"title": "T", "rounds": [{"title": "R", "items": [{"kind": "slide", "title": "s"}]}]},
         "quiz.toml: the quiz has no questions"),
        ({"title": "T", "rounds": [{"title": "R", "wager": True,
                                    "items": [{"kind": "slide", "title": "s"}]}]},
         "quiz.toml: round 1: a wager round needs at least one question"),
        (minimal(answer="c"), "quiz.toml: round 1, question 1: field 'answer': must name one"),
        (minimal(answer=True), "quiz.toml: round 1, question 1: field 'answer': must name one"),
        (minimal(choices=["a"]), "field 'choices': must hold 2 to 12 choices, not 1"),
        (minimal(choices=["a", ""]), "field 'choices': choice 2 must be non-empty text"),
        (minimal(media="javascript:alert(1)"), "field 'media': must be an http(s) URL"),
        (minimal(media="../../etc/passwd.png"), "field 'media': must be an http(s) URL"),
        (minimal(media="https://x.org/clip"), "field 'media_type': cannot tell"),
        (minimal(time_limit=float("nan")), "field 'time_limit': must be a finite number"),
        (minimal(points=1.5), "field 'points': must be a whole number, not a number"),
        (minimal(speed_bonus=True), "field 'speed_bonus': must be a whole number, not true/false"),
        (minimal(kind="numeric", answer=1e300), "field 'answer': must be a finite number"),
        (minimal(kind="numeric", answer=1, tiebreak=True, points=2),
         "field 'points': must be 0 on a tie-break question"),
        (minimal(kind="multiple", answer=[0, 0]), "field 'answer': names a choice twice"),
        (minimal(kind=None), "field 'kind': is required"),
        ({"title": "T", "format": 2, "rounds": []}, "field 'format': this engine reads format 1"),
    ],
)
def test_each_problem_is_explained(data: Any, expected: str) -> None:
    assert any(expected in p for p in problems_of(data)), problems_of(data)


def test_two_tiebreaks_are_refused() -> None:
    tb = {"kind": "numeric", "prompt": "n", "answer": 1, "tiebreak": True}
    data = {"title": "T", "rounds": [{"title": "R", "items": [tb, tb]}]}
    assert problems_of(data) == [
        "quiz.toml: round 1, question 2: only one tie-break question per quiz "
        "(the first is round 1, question 1)"]


def test_media_type_is_inferred_or_given() -> None:
    quiz = load_quiz_data(minimal(media="https://x.org/a.MP3?x=1"))
    assert quiz.questions[0].media_type == "audio"
    quiz = load_quiz_data(minimal(media="pics/a", media_type="image"))
    assert quiz.questions[0].media_type == "image"


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "quiz.toml"
    path.write_text('title = "T"\n\n[[rounds]]\ntitle = "R\n', encoding="utf-8")
    with pytest.raises(QuizFileError) as info:
        load_quiz(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: line 4, column ")
    assert "TOML syntax error" in problem


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "quiz.json"
    path.write_text('{\n  "title": "T",\n  "rounds": [,]\n}\n', encoding="utf-8")
    with pytest.raises(QuizFileError) as info:
        load_quiz(path)
    assert info.value.problems == [f"{path}: line 3, column 14: JSON syntax error: "
                                   "Expecting value"]


def test_json_nan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "quiz.json"
    path.write_text(json.dumps(minimal(kind="numeric", answer=1)).replace("1}", "NaN}"))
    with pytest.raises(QuizFileError) as info:
        load_quiz(path)
    assert "NaN" in info.value.problems[0]


def test_semantic_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "night.toml"
    path.write_text('title = "T"\n[[rounds]]\ntitle = "R"\n[[rounds.items]]\nkind = "single"\n'
                    'prompt = "p"\nchoices = ["a", "b"]\nanswer = 3\n', encoding="utf-8")
    with pytest.raises(QuizFileError) as info:
        load_quiz(path)
    assert info.value.problems == [
        f"{path}: round 1, question 1: field 'answer': must name one of the 2 choices "
        "(its text, or its index from 0)"]


@pytest.mark.parametrize("name", ["quiz.yaml", "quiz"])
def test_unsupported_and_missing_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(QuizFileError) as info:
        load_quiz(tmp_path / name)
    assert "unsupported file type" in info.value.problems[0]
    with pytest.raises(QuizFileError) as info:
        load_quiz(tmp_path / "missing.toml")
    assert "cannot read the file" in info.value.problems[0]


def test_bad_utf8_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "quiz.toml"
    path.write_bytes(b'title = "T"\ntitle2 = "\xff"\n')
    with pytest.raises(QuizFileError) as info:
        load_quiz(path)
    assert info.value.problems == [f"{path}: line 2: not valid UTF-8"]


def test_the_sample_is_valid_toml_that_documents_itself() -> None:
    raw = tomllib.loads(sample_quiz_path().read_text(encoding="utf-8"))
    assert raw["format"] == 1
