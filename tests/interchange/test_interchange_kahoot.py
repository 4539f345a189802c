"""Kahoot spreadsheets: the template's layout imports, and every bad cell is located."""

from __future__ import annotations

from pathlib import Path

import pytest
from kahootkit import KAHOOT_FIRST_ROW, KAHOOT_HEADER, MakeKahoot

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import QuestionKind, load_quiz_data
from pubquiz_engine.interchange import import_bytes, import_quiz

GOOD_ROWS = [
    ["What is the capital of Australia?", "Sydney", "Canberra", "Melbourne", "Perth", 20, "2"],
    ["Which of these are noble gases?", "Neon", "Nitrogen", "Argon", None, 30, "1,3"],
    ["A group of crows is called a murder.", "True", "False", None, None, 10, 1],
    ["In which year did the Berlin Wall fall?", 1987, 1989, 1991, None, 60.0, 2.0],
]


def problems(path: Path) -> list[str]:
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "kahoot")
    return info.value.problems


def test_template_layout_imports_every_kind(make_kahoot: MakeKahoot) -> None:
    path = make_kahoot(GOOD_ROWS)
    notes: list[str] = []
    data = import_quiz(path, "kahoot", title="Thursday Kahoot", notes=notes)
    assert notes == []
    quiz = load_quiz_data(data)
    assert quiz.title == "Thursday Kahoot"
    assert [r.title for r in quiz.rounds] == ["Thursday Kahoot"]
    capital, gases, crows, wall = quiz.questions
    assert capital.kind is QuestionKind.SINGLE
    assert capital.choices == ("Sydney", "Canberra", "Melbourne", "Perth")
    assert capital.choices[capital.answer] == "Canberra"
    assert capital.time_limit == 20
    # Several correct answers: a multiple question; an empty answer cell is skipped.
    assert gases.kind is QuestionKind.MULTIPLE
    assert gases.choices == ("Neon", "Nitrogen", "Argon")
    assert [gases.choices[i] for i in gases.answer] == ["Neon", "Argon"]
    # Answers True and False: Kahoot's true/false question.
    assert crows.kind is QuestionKind.TRUEFALSE and crows.answer is True
    # Numeric cells (answers, a float time limit, a float correct answer) read as text.
    assert wall.choices == ("1987", "1989", "1991")
    assert wall.choices[wall.answer] == "1989"
    assert wall.time_limit == 60


def test_default_title_comes_from_the_file_name(make_kahoot: MakeKahoot) -> None:
    path = make_kahoot(GOOD_ROWS[:1], name="friday_night-quiz.xlsx")
    assert import_quiz(path, "kahoot")["title"] == "friday night quiz"


@pytest.mark.parametrize("correct", ["1,3", "1;3", " 1 , 3 ", 1.3, "3,1,3"])
def test_correct_answer_spellings(make_kahoot: MakeKahoot, correct: object) -> None:
    # 1.3: what a spreadsheet with decimal commas makes of a typed "1,3".
    path = make_kahoot([["Pick odd", "one", "two", "three", "four", 20, correct]])
    item = import_quiz(path, "kahoot")["rounds"][0]["items"][0]
    assert item["kind"] == "multiple" and item["answer"] == ["one", "three"]


def test_blank_rows_between_questions_are_skipped(make_kahoot: MakeKahoot) -> None:
    rows = [GOOD_ROWS[0], [None] * 7, [None] * 7, GOOD_ROWS[2]]
    data = import_quiz(make_kahoot(rows), "kahoot")
    assert len(data["rounds"][0]["items"]) == 2


def test_every_bad_cell_is_reported_with_row_and_column(make_kahoot: MakeKahoot) -> None:
    rows = [
        GOOD_ROWS[0],
        ["Too slow?", "Yes", "No", None, None, 45, "1"],
        ["Which answer?", "A", "B", None, None, 20, "5"],
        ["Names an empty answer", "A", "B", None, None, 20, "1,3"],
        [None, "A", "B", None, None, 20, "1"],
        ["Only one answer", "A", None, None, None, 20, "1"],
        ["Duplicate choices", "Paris", "paris", None, None, 20, "1"],
        ["No time limit, no correct answer", "A", "B", None, None, None, None],
    ]
    found = problems(make_kahoot(rows))
    first = KAHOOT_FIRST_ROW
    assert found == [
        f"{path_name(found)}: row {first + 1}, column 'Time limit': 45 is not one of "
        "5, 10, 20, 30, 60, 90, 120, 240",
        f"{path_name(found)}: row {first + 2}, column 'Correct answer(s)': '5' is not an "
        "answer number from 1 to 4",
        f"{path_name(found)}: row {first + 3}, column 'Correct answer(s)': names answer 3, "
        "but the 'Answer 3' cell is empty",
        f"{path_name(found)}: row {first + 4}, column 'Question': is empty",
        f"{path_name(found)}: row {first + 5}, column 'Answer 2': a question needs at least "
        "two answers",
        # The validator's own problem, moved from "round 1, question 2" to its row.
        f"{path_name(found)}: row {first + 6}: field 'choices': duplicate choice 'Paris'",
        f"{path_name(found)}: row {first + 7}, column 'Time limit': empty is not one of "
        "5, 10, 20, 30, 60, 90, 120, 240",
        f"{path_name(found)}: row {first + 7}, column 'Correct answer(s)': is empty: name at "
        "least one answer, as 1 or 1,3",
    ]


def path_name(found: list[str]) -> str:
    return found[0].split(": ", 1)[0]


def test_header_is_found_by_name_not_position(make_kahoot: MakeKahoot) -> None:
    # No title area, columns in another order, an extra column: still imports, and the
    # extra column is named in a note rather than skipped in silence.
    header = [None, "Correct answer(s)", "Time limit (sec)", "Image link", "Question",
              "Answer 1", "Answer 2"]
    path = make_kahoot([["2", 10, "x.png", "Pick B", "A", "B"]], header=header, title_area=())
    notes: list[str] = []
    data = import_quiz(path, "kahoot", notes=notes)
    item = data["rounds"][0]["items"][0]
    assert item["prompt"] == "Pick B" and item["answer"] == "B" and item["time_limit"] == 10
    assert notes == [f"{path}: row 1: column 'Image link' is not imported"]


def test_a_header_missing_a_column_is_reported(make_kahoot: MakeKahoot) -> None:
    header = KAHOOT_HEADER[:-1]  # no "Correct answer(s)"
    path = make_kahoot([["Pick A", "A", "B", None, None, 10]], header=header)
    assert problems(path) == [f"{path}: row 8: the header row has no 'Correct answer(s)' column"]


def test_a_file_without_the_header_row_is_refused(make_kahoot: MakeKahoot) -> None:
    path = make_kahoot([], header=["Name", "Score"])
    assert problems(path) == [
        f"{path}: no header row in the first 30 rows (expected columns Question, Answer 1 to "
        "4, Time limit (sec), Correct answer(s), as in Kahoot's template)"
    ]


def test_a_header_without_questions_is_refused(make_kahoot: MakeKahoot) -> None:
    path = make_kahoot([], trailing_numbered_rows=5)
    assert problems(path) == [f"{path}: no questions below the header row (row 8)"]


def test_a_file_that_is_not_a_workbook_is_one_problem() -> None:
    with pytest.raises(QuizFileError) as info:
        import_bytes(b"question,answer\n", "kahoot", source="quiz.xlsx", title="T")
    [problem] = info.value.problems
    assert problem.startswith("quiz.xlsx: not a readable .xlsx workbook (")
