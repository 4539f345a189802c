"""CSV with the documented header: every column converts; every bad cell is located."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import QuestionKind, Slide, load_quiz_data
from pubquiz_engine.interchange import import_bytes, import_quiz


def csv_problems(text: str) -> list[str]:
    with pytest.raises(QuizFileError) as info:
        import_bytes(text.encode(), "csv", source="q.csv", title="T")
    return info.value.problems


def test_sample_file_imports_every_kind_and_column(samples: Path) -> None:
    quiz = load_quiz_data(import_quiz(samples / "pub_quiz.csv", "csv"))
    assert quiz.title == "pub quiz"
    assert [r.title for r in quiz.rounds] == ["General Knowledge", "Science"]
    assert quiz.rounds[0].items[0] == Slide(
        title="Welcome!", text="Phones on the table, answers on your phone."
    )
    capital, crows, abbey, wall = quiz.rounds[0].questions
    assert capital.choices[capital.answer] == "Canberra" and capital.time_limit == 20
    assert capital.explanation == "Canberra was purpose-built."
    assert crows.kind is QuestionKind.TRUEFALSE and crows.answer is True
    assert abbey.answer == ("The Beatles", "Beatles") and abbey.typos == 1
    assert abbey.ignore_articles == ("the", "a", "an")
    assert (wall.answer, wall.points, wall.unit) == (1989, 2, "year")
    gases, light, planets = quiz.rounds[1].questions
    assert gases.kind is QuestionKind.MULTIPLE and gases.partial
    assert [gases.choices[i] for i in gases.answer] == ["Neon", "Argon", "Krypton"]
    # A quoted cell may span lines.
    assert light.prompt == "How fast does light travel,\nin km/s?"
    assert (light.answer, light.tolerance, light.unit) == (299792, 1000, "km/s")
    assert [planets.choices[i] for i in planets.answer] == ["Mercury", "Venus", "Mars", "Jupiter"]


def test_every_bad_cell_is_reported_by_line_and_column(samples: Path) -> None:
    path = samples / "malformed.csv"
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "csv")
    assert info.value.problems == [
        # The validator's problems, located at the row's line.
        f"{path}: line 3: field 'answer': must name one of the 2 choices (its text, or its "
        "index from 0)",
        f"{path}: line 4, column 'answer': 'maybe' is not true or false",
        f"{path}: line 5, column 'answer': 'seven' is not a number",
        f"{path}: line 6, column 'time_limit': 'soon' is not a number",
        f"{path}: line 7, column 'points': 'ten' is not a whole number",
        f"{path}: line 8: field 'kind': must be 'slide' or one of single, multiple, "
        "truefalse, text, numeric, ordering; got 'quiz'",
        f"{path}: line 9: field 'prompt': must not be empty",
    ]


def test_unknown_and_missing_columns_are_reported(samples: Path) -> None:
    path = samples / "unknown_column.csv"
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "csv")
    assert info.value.problems == [
        f"{path}: line 1: unknown column 'anwser' (columns: kind, prompt, answer, round, "
        "choices, time_limit, points, speed_bonus, explanation, media, partial, tolerance, "
        "unit, typos, ignore_articles)",
        f"{path}: line 1: the header has no 'answer' column",
    ]
    assert csv_problems("kind,prompt,answer,kind\n") == [
        "q.csv: line 1: column 'kind' appears twice"
    ]


def test_semicolons_a_byte_order_mark_and_blank_lines() -> None:
    text = "\ufeffKind;Prompt;Answer;Choices\n\nsingle;Pick, then go;b;a|b\n\n"
    data = import_bytes(text.encode(), "csv", source="q.csv", title="T")
    assert data["rounds"][0]["items"] == [
        {"kind": "single", "prompt": "Pick, then go", "choices": ["a", "b"], "answer": "b"}
    ]


def test_rows_with_too_many_cells_and_slides_with_answers() -> None:
    assert csv_problems("kind,prompt,answer\ntext,Q,A,extra\nslide,Hello,42\n") == [
        "q.csv: line 2: 4 cells but the header names 3 columns",
        "q.csv: line 3, column 'answer': a slide has no answer",
    ]


def test_empty_files() -> None:
    assert csv_problems("") == [
        "q.csv: the file is empty: expected a header row naming the columns (kind, prompt, "
        "answer, ...)"
    ]
    assert csv_problems("kind,prompt,answer\n") == ["q.csv: found no questions in the file"]


def test_text_that_is_not_utf8_is_located() -> None:
    raw = "kind,prompt,answer\ntext,Café?,oui\n".encode("latin-1")
    with pytest.raises(QuizFileError) as info:
        import_bytes(raw, "csv", source="q.csv", title="T")
    assert info.value.problems == [
        "q.csv: line 2: not valid UTF-8 (save the file as UTF-8 and import it again)"
    ]
