"""Open Trivia DB JSON: each encoding decodes to the same quiz; bad results are located."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game import QuestionKind, load_quiz_data
from pubquiz_engine.interchange import import_bytes, import_quiz


def problems(raw: bytes, **options: Any) -> list[str]:
    with pytest.raises(QuizFileError) as info:
        import_bytes(raw, "opentdb", source="trivia.json", title="T", **options)
    return info.value.problems


def test_default_encoding_decodes_html_entities(samples: Path) -> None:
    data = import_quiz(samples / "opentdb_default.json", "opentdb")
    quiz = load_quiz_data(data)
    # Categories become rounds, in the order each first appears.
    assert [r.title for r in quiz.rounds] == [
        "Entertainment: Music", "Science & Nature", "Geography"
    ]
    abbey, waterloo = quiz.rounds[0].questions
    assert abbey.prompt == 'Which band released the album "Abbey Road" in 1969?'
    assert abbey.kind is QuestionKind.SINGLE
    assert abbey.choices[abbey.answer] == "The Beatles"
    assert set(abbey.choices) == {"The Beatles", "The Rolling Stones", "The Who", "Pink Floyd"}
    assert waterloo.prompt == "Which Swedish group won Eurovision in 1974 with 'Waterloo'?"
    gold, pi, sound = quiz.rounds[1].questions
    assert gold.kind is QuestionKind.TRUEFALSE and gold.answer is True
    assert sound.answer is False
    assert pi.prompt == "What is π rounded to two decimal places?"
    capital = quiz.rounds[2].questions[0]
    assert "Don't say Sydney & don't say Melbourne." in capital.prompt


@pytest.mark.parametrize("encoding", ["base64", "url3986"])
def test_every_encoding_gives_the_same_quiz(samples: Path, encoding: str) -> None:
    expected = import_quiz(samples / "opentdb_default.json", "opentdb", title="Q")
    path = samples / f"opentdb_{encoding}.json"
    assert import_quiz(path, "opentdb", title="Q") == expected  # detected
    assert import_quiz(path, "opentdb", title="Q", encoding=encoding) == expected  # given


def test_legacy_url_encoding_and_a_bare_result_list() -> None:
    results = [{"type": "boolean", "category": "Science+%26+Nature",
                "question": "Water+boils+at+100%C2%B0C+at+sea+level.",
                "correct_answer": "True", "incorrect_answers": ["False"]}]
    data = import_bytes(json.dumps(results).encode(), "opentdb", source="t.json", title="T")
    item = data["rounds"][0]["items"][0]
    assert data["rounds"][0]["title"] == "Science & Nature"
    assert item == {"kind": "truefalse", "prompt": "Water boils at 100°C at sea level.",
                    "answer": True}


def test_url_and_base64_text_keeps_html_entities_literally() -> None:
    # Only the default encoding uses HTML entities: in base64 the text is raw, and a
    # question about "&lt;" must keep it.
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    results = [{"type": b64("boolean"), "category": b64("Computers"),
                "question": b64("In HTML, &lt; stands for <."),
                "correct_answer": b64("True"), "incorrect_answers": [b64("False")]}]
    data = import_bytes(json.dumps({"response_code": 0, "results": results}).encode(),
                        "opentdb", source="t.json", title="T")
    assert data["rounds"][0]["items"][0]["prompt"] == "In HTML, &lt; stands for <."


def test_choice_order_hides_the_answer_and_is_reproducible(samples: Path) -> None:
    path = samples / "opentdb_default.json"
    first = import_quiz(path, "opentdb")
    assert import_quiz(path, "opentdb") == first
    singles = [i for r in first["rounds"] for i in r["items"] if i["kind"] == "single"]
    # The API lists the correct answer apart; the import must not always put it in one place.
    assert len({i["choices"].index(i["answer"]) for i in singles}) > 1


def test_every_bad_result_is_reported_by_index(samples: Path) -> None:
    path = samples / "opentdb_malformed.json"
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "opentdb")
    assert info.value.problems == [
        f"{path}: results[1]: field 'type': 'matching' is not supported (multiple or boolean)",
        f"{path}: results[2]: field 'correct_answer': 'Yes' must be True or False on a "
        "boolean question",
        f"{path}: results[3]: field 'question': must be text",
        # The validator's problem, located by the result it came from.
        f"{path}: results[4]: field 'choices': duplicate choice 'Paris'",
        f"{path}: results[5]: field 'incorrect_answers': must be a list of text",
    ]


def test_json_syntax_errors_have_line_and_column(samples: Path) -> None:
    path = samples / "opentdb_syntax_error.json"
    with pytest.raises(QuizFileError) as info:
        import_quiz(path, "opentdb")
    assert info.value.problems == [
        f"{path}: line 9, column 5: JSON syntax error: Expecting property name enclosed in "
        "double quotes"
    ]


def test_api_error_codes_and_bad_encodings_are_explained() -> None:
    assert problems(b'{"response_code": 5, "results": []}') == [
        "trivia.json: response_code: 5: the API answered rate limited: too many requests"
    ]
    assert problems(b'{"response_code": 0, "results": []}') == [
        "trivia.json: results: must be a non-empty list of questions"
    ]
    bad = {"results": [{"type": "Ym9vbGVhbg==", "question": "not base64!",
                        "correct_answer": "VHJ1ZQ==", "incorrect_answers": ["@@"]}]}
    assert problems(json.dumps(bad).encode()) == [
        "trivia.json: results[0]: field 'question': not valid base64 text",
        "trivia.json: results[0]: field 'incorrect_answers': answer 1 is not valid base64 text",
    ]
    assert problems(b"[]", encoding="rot13") == [
        "trivia.json: unknown encoding 'rot13': use one of html, url3986, urlLegacy, base64"
    ]
