"""Kahoot workbooks for the tests (imported as ``kahootkit``; pytest puts this directory on
``sys.path``), built with openpyxl at test time: no binary file is committed.

The layout follows Kahoot's public template: a title and instructions area, a header row whose
names carry length hints, the question number in column A, then one question a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openpyxl

KAHOOT_TITLE_AREA = [
    ["Quiz template"],
    ["Add questions, at least two answer alternatives, time limit and choose correct answers "
     "(at least one). Have fun creating your awesome quiz!"],
    ["Remember: questions have a limit of 120 characters and answers can have 75 characters "
     "max. If several answers are correct, separate them with a comma."],
    ["See an example question below (don't forget to overwrite this with your first "
     "question!)"],
    ["And remember, if you're not using Excel you need to export to .xlsx format before you "
     "upload to Kahoot!"],
    [],
    [],
]
KAHOOT_HEADER = [
    None,
    "Question - max 120 characters",
    "Answer 1 - max 75 characters",
    "Answer 2 - max 75 characters",
    "Answer 3 - max 75 characters",
    "Answer 4 - max 75 characters",
    "Time limit (sec) – 5, 10, 20, 30, 60, 90, 120, or 240 secs",
    "Correct answer(s) - choose at least one",
]
# The header is row 8: every question row number in the tests follows from that.
KAHOOT_FIRST_ROW = len(KAHOOT_TITLE_AREA) + 2

KahootRow = Sequence[Any]  # question, answer 1-4, time limit, correct answer(s)
MakeKahoot = Callable[..., Path]


def write_kahoot(
    path: Path, rows: Sequence[KahootRow], *, header: Sequence[Any] = KAHOOT_HEADER,
    title_area: Sequence[Sequence[Any]] = KAHOOT_TITLE_AREA, trailing_numbered_rows: int = 3,
) -> Path:
    """Write a Kahoot-template workbook with the given question rows to ``path``."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Sheet1"
    for line in title_area:
        sheet.append(list(line) or [None])
    sheet.append(list(header))
    number = 0
    for number, row in enumerate(rows, start=1):
        sheet.append([number, *row])
    # The template numbers empty rows below the questions too.
    for extra in range(trailing_numbered_rows):
        sheet.append([number + extra + 1])
    book.save(path)
    return path
