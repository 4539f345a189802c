"""The import examples in docs/quiz-format.md import as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pubquiz_engine.game import QuestionKind, load_quiz_data
from pubquiz_engine.interchange import import_bytes

DOC = Path(__file__).parents[2] / "docs" / "quiz-format.md"


def example(heading: str, fence: str) -> str:
    """The first ``fence`` code block under ``heading`` in the import section."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Importing quizzes from other tools", 1)[1]
    part = section.split(heading, 1)[1]
    found = re.search(rf"```{fence}\n(.*?)```", part, re.DOTALL)
    assert found, f"no {fence or 'plain'} example under {heading}"
    return found.group(1)


@pytest.mark.parametrize(
    ("heading", "fence", "fmt", "kinds"),
    [
        ("### Open Trivia DB", "json", "opentdb", ["single", "truefalse"]),
        ("### GIFT", "", "gift",
         ["single", "truefalse", "text", "numeric", "numeric", "multiple", "single"]),
        ("### CSV", "csv", "csv", ["single", "truefalse", "text", "numeric", "ordering"]),
    ],
)
def test_documented_example_imports(heading: str, fence: str, fmt: str, kinds: list[str]) -> None:
    data = import_bytes(example(heading, fence).encode(), fmt, source="example", title="Doc")
    quiz = load_quiz_data(data)
    assert [q.kind for q in quiz.questions] == [QuestionKind(k) for k in kinds]
