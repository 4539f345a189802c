"""GIFT (Moodle): the supported subset imports; everything else is reported by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import QuestionKind, Slide, load_quiz_data
from pubquiz_engine.interchange import import_bytes, import_quiz


def gift(text: str, notes: list[str] | None = None) -> dict[str, Any]:
    return import_bytes(text.encode(), "gift", source="q.gift", title="T", notes=notes)


def gift_problems(text: str) -> list[str]:
    with pytest.raises(QuizFileError) as info:
        gift(text)
    return info.value.problems


def test_sample_file_imports_every_supported_kind(samples: Path) -> None:
    notes: list[str] = []
    path = samples / "geography.gift"
    quiz = load_quiz_data(import_quiz(path, "gift", title="Geography night", notes=notes))
    # Categories become rounds, named by the last segment of their path.
    assert [r.title for r in quiz.rounds] == ["Capitals", "Numbers"]
    australia, crows, canada = quiz.rounds[0].questions
    assert australia.kind is QuestionKind.SINGLE
    assert australia.choices[australia.answer] == "Canberra"
    assert australia.explanation.startswith("Purpose-built")  # the right answer's feedback
    assert crows.kind is QuestionKind.TRUEFALSE and crows.answer is True
    assert crows.explanation == "Yes: a murder of crows."  # the general feedback
    assert canada.kind is QuestionKind.TEXT and canada.answer == ("Ottawa", "Ottawa, Ontario")
    wall, light, bones, gases, danube, escapes = quiz.rounds[1].questions
    assert (wall.kind, wall.answer, wall.tolerance) == (QuestionKind.NUMERIC, 1989, 0)
    assert (light.answer, light.tolerance) == (299792, 1000)
    assert (bones.answer, bones.tolerance) == (206, 6)  # the range 200..212
    assert gases.kind is QuestionKind.MULTIPLE and gases.partial
    assert [gases.choices[i] for i in gases.answer] == ["Neon", "Argon", "Krypton"]
    assert danube.prompt == "The Danube flows into the _____ Sea."  # missing word
    assert escapes.prompt == "Escapes work: 2 + 2 = 4 is"
    interval = quiz.rounds[1].items[-1]
    assert interval == Slide(title="Interval", text="Time for a break: back in ten minutes.")
    # What was left out without changing the scoring is noted, located.
    assert notes == [
        f"{path}: line 6: feedback on wrong answers is not shown",
        f"{path}: line 38: HTML markup was removed; the text was kept",
        f"{path}: question names (::name::) are not shown: 3 question(s) had one",
    ]


def test_every_unsupported_feature_is_reported_by_line(samples: Path) -> None:
    path = samples / "malformed.gift"
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "gift")
    assert info.value.problems == [
        f"{path}: line 5: matching questions are not supported",
        f"{path}: line 11: essay questions ({{}}) are not supported",
        f"{path}: line 13: weight 50% on a wrong choice 'Jupiter' is not supported (partial "
        "credit or penalty)",
        f"{path}: line 15: partial credit (50%) on numeric answer '3.1:0' is not supported",
        f"{path}: line 17: '{{' opens the answers but no '}}' closes them",
        f"{path}: line 19: more than one '=' answer among choices: use ~%50% weights for a "
        "question with several right choices",
        # The validator's problem, moved from "round 1, question 2" to the line.
        f"{path}: line 21: field 'choices': duplicate choice 'Red'",
        f"{path}: line 23: 'eight' is not a number",
    ]


def test_comments_do_not_split_or_renumber() -> None:
    data = gift("// header\n\nWhich?\n// a comment inside the question\n{=a ~b}\n\n"
                "// trailing\nNext? {T}\n")
    items = data["rounds"][0]["items"]
    assert [i["prompt"] for i in items] == ["Which?", "Next?"]
    assert gift_problems("// one\n// two\n\nBad {=a -> b}\n") == [
        "q.gift: line 4: matching questions are not supported"
    ]


def test_true_false_spellings_and_feedback() -> None:
    notes: list[str] = []
    data = gift("A? {T}\n\nB? {false}\n\nC? {TRUE#You said false.#Right, it is true.}\n", notes)
    items = data["rounds"][0]["items"]
    assert [i["answer"] for i in items] == [True, False, True]
    assert items[2]["explanation"] == "Right, it is true."
    assert notes == ["q.gift: line 5: feedback on wrong answers is not shown"]


def test_numeric_forms() -> None:
    data = gift("A {#3.14:0.01}\n\nB {#=42}\n\nC {#-5..5}\n\nD {#2.5}\n")
    items = data["rounds"][0]["items"]
    assert [(i["answer"], i.get("tolerance", 0)) for i in items] == [
        (3.14, 0.01), (42, 0), (0, 5), (2.5, 0)
    ]
    assert gift_problems("A {#=1 =2}\n\nB {#5..1}\n") == [
        "q.gift: line 1: several numeric answers are not supported: give one answer with a "
        "tolerance",
        "q.gift: line 3: numeric range '5..1' ends below its start",
    ]


def test_multiple_answer_weights() -> None:
    data = gift("Which? {~%50%a ~%50%b ~%-50%c ~d}\n")
    item = data["rounds"][0]["items"][0]
    assert item["kind"] == "multiple" and item["answer"] == ["a", "b"] and item["partial"]
    assert gift_problems("Which? {~%70%a ~%30%b ~c}\n") == [
        "q.gift: line 1: unequal weights (70, 30%) on the right choices are not supported: "
        "give each the same weight"
    ]
    assert gift_problems("Which? {~a ~b}\n") == [
        "q.gift: line 1: no right answer: mark one with '=' or give it a positive %weight%"
    ]


def test_short_answer_partial_credit_and_cloze_are_reported() -> None:
    assert gift_problems("Capital of France? {=Paris =%50%paris city}\n") == [
        "q.gift: line 1: partial credit (50%) on short answer 'paris city' is not supported"
    ]
    assert gift_problems("The {=cat ~dog} sat on the {=mat ~hat}.\n") == [
        "q.gift: line 1: more than one answer block: embedded (cloze) answers are not supported"
    ]


def test_questions_before_any_category_and_empty_categories() -> None:
    notes: list[str] = []
    data = gift("First? {T}\n\n$CATEGORY: $course$/Empty\n\n$CATEGORY: Music\n\nSecond? {F}\n",
                notes)
    rounds = data["rounds"]
    assert [r["title"] for r in rounds] == ["T", "Music"]
    assert notes == ["q.gift: line 3: round 'Empty' has no questions and was left out"]


def test_a_file_with_nothing_importable() -> None:
    assert gift_problems("// only comments\n") == ["q.gift: found no questions in the file"]
