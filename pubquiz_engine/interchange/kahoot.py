"""Kahoot spreadsheets (``.xlsx``, the layout of Kahoot's public quiz template) to quiz data.

The template is one worksheet: a title and instructions area at the top, then a header row
(``Question``, ``Answer 1`` to ``Answer 4``, ``Time limit (sec)``, ``Correct answer(s)``; the
exact wording carries length hints such as "- max 120 characters"), then one question a row.
The time limit is one of Kahoot's 5, 10, 20, 30, 60, 90, 120 or 240 seconds, and the correct
answers are answer numbers: ``1`` or ``1,3``.

How a row becomes a question: one correct answer makes a ``single`` question, several a
``multiple`` one; answers ``True`` and ``False`` (in either order, nothing else) make a
``truefalse`` question, which is how Kahoot's true/false questions look in the sheet. Empty
answer cells are skipped (the choices keep their order). All questions go into one round.

Rules this module keeps:

1. Only this module imports openpyxl (house rule: one module per third-party library); its
   errors on a broken workbook become one located problem, never a traceback.
2. The header row is found by its column names (case and the length hints ignored), not by a
   fixed position, so a template that gained a column or a title row still imports. A column
   the importer does not know is named in a note, not silently skipped.
3. Every problem names its row and column: ``row 12, column 'Time limit': 45 is not one of
   5, 10, 20, 30, 60, 90, 120, 240``.
"""

from __future__ import annotations

import io
import re
from typing import Any

from pubquiz_engine.interchange._draft import MAX_RECORDS, Draft, text_of

ALLOWED_TIME_LIMITS = (5, 10, 20, 30, 60, 90, 120, 240)
# How far down the sheet the header row may be: the template's title area is a few rows.
_HEADER_SEARCH_ROWS = 30
_ANSWER = re.compile(r"^answer\s*([1-4])\b")
_REQUIRED = {"question", "answer1", "answer2", "time", "correct"}
_COLUMN_NAMES = {"question": "Question", "time": "Time limit", "correct": "Correct answer(s)"} | {
    f"answer{n}": f"Answer {n}" for n in range(1, 5)
}


def read_kahoot(raw: bytes, draft: Draft) -> None:
    """Fill ``draft`` from the bytes of a Kahoot ``.xlsx`` spreadsheet."""
    # Imported here so that the rest of the package (and ``quiz import`` for other formats)
    # works without the optional ``import`` extra installed.
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - depends on the installation
        draft.problem(0, "", "reading .xlsx files needs openpyxl: pip install "
                      "'pubquiz-engine[import]'")
        return
    try:
        # Not read_only: the normal mode numbers rows exactly as the spreadsheet shows them,
        # which is what every problem refers to. The file is capped at MAX_FILE_BYTES.
        book = openpyxl.load_workbook(io.BytesIO(raw), data_only=True)
    except Exception as exc:  # openpyxl raises many exception types for a broken file
        reason = str(exc) or type(exc).__name__
        draft.problem(0, "", f"not a readable .xlsx workbook ({reason})")
        return
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(min_row=1, max_row=min(sheet.max_row, MAX_RECORDS), values_only=True)
    columns: dict[str, int] | None = None
    header_row = 0
    for number, cells in enumerate(rows, start=1):
        if columns is None:
            if number > _HEADER_SEARCH_ROWS:
                break
            columns = _header(cells, number, draft)
            header_row = number
            if columns is not None and not columns.keys() >= _REQUIRED:
                return  # reported by _header; every row would only repeat it
            continue
        _row(cells, number, columns, draft)
    if columns is None:
        draft.problem(0, "", f"no header row in the first {_HEADER_SEARCH_ROWS} rows (expected "
                      "columns Question, Answer 1 to 4, Time limit (sec), Correct answer(s), "
                      "as in Kahoot's template)")
        return
    if sheet.max_row > MAX_RECORDS:
        draft.problem(MAX_RECORDS, f"row {MAX_RECORDS}", f"more than {MAX_RECORDS} rows: only "
                      "the first ones were read")
    if not draft.data()["rounds"] and not draft.failed:
        draft.problem(0, "", f"no questions below the header row (row {header_row})")


def _header(cells: tuple[Any, ...], number: int, draft: Draft) -> dict[str, int] | None:
    """The column index of each known field, if this row is the header row."""
    found: dict[str, int] = {}
    unknown: list[str] = []
    for index, cell in enumerate(cells):
        name = text_of(cell).casefold()
        if not name:
            continue
        answer = _ANSWER.match(name)
        if answer:
            found.setdefault(f"answer{answer.group(1)}", index)
        elif name.startswith("question"):
            found.setdefault("question", index)
        elif name.startswith("time limit"):
            found.setdefault("time", index)
        elif name.startswith("correct answer"):
            found.setdefault("correct", index)
        else:
            unknown.append(text_of(cell))
    if "question" not in found or "answer1" not in found:
        return None
    for field in sorted(_REQUIRED - found.keys()):
        draft.problem(number, f"row {number}", f"the header row has no "
                      f"'{_COLUMN_NAMES[field]}' column")
    # The template numbers its rows in the first column, under an empty header cell; any
    # other column with a name is something this importer does not carry over.
    for name in unknown:
        draft.note(f"row {number}", f"column {name!r} is not imported")
    return found


def _cell(cells: tuple[Any, ...], columns: dict[str, int], field: str) -> Any:
    index = columns.get(field)
    return cells[index] if index is not None and index < len(cells) else None


def _row(cells: tuple[Any, ...], number: int, columns: dict[str, int], draft: Draft) -> None:
    place = f"row {number}"
    prompt = text_of(_cell(cells, columns, "question"))
    answers = {n: text_of(_cell(cells, columns, f"answer{n}")) for n in range(1, 5)}
    time_raw = _cell(cells, columns, "time")
    correct_raw = _cell(cells, columns, "correct")
    if not prompt and not any(answers.values()) and time_raw is None and correct_raw is None:
        return  # a blank row (the template has many below the questions)

    def problem(field: str, message: str) -> None:
        draft.problem(number, f"{place}, column '{_COLUMN_NAMES[field]}'", message)

    ok = True
    if not prompt:
        problem("question", "is empty")
        ok = False
    time_limit = _time_limit(time_raw)
    if time_limit is None:
        shown = text_of(time_raw)
        if not shown:
            shown = "empty"
        elif not re.fullmatch(r"-?[0-9.]+", shown):
            shown = repr(shown)
        problem("time", f"{shown} is not one of {', '.join(map(str, ALLOWED_TIME_LIMITS))}")
        ok = False
    correct: list[int] = []
    text = text_of(correct_raw)
    # "1,3" as the template asks; also "1;3", "1 3", and 1.3: a spreadsheet set to a locale
    # with decimal commas turns a typed 1,3 into the number 1.3.
    parts = [p for p in re.split(r"[,;.\s]+", text) if p] if text else []
    if not parts:
        problem("correct", "is empty: name at least one answer, as 1 or 1,3")
        ok = False
    for part in parts:
        if not part.isdigit() or not 1 <= int(part) <= 4:
            problem("correct", f"{part!r} is not an answer number from 1 to 4")
            ok = False
        elif not answers[int(part)]:
            problem("correct", f"names answer {part}, but the 'Answer {part}' cell is empty")
            ok = False
        elif int(part) not in correct:
            correct.append(int(part))
    choices = [(n, a) for n, a in answers.items() if a]
    if len(choices) < 2:
        problem("answer2", "a question needs at least two answers")
        ok = False
    if not ok:
        return
    assert time_limit is not None
    item: dict[str, Any] = {"prompt": prompt, "time_limit": time_limit}
    texts = [a for _, a in choices]
    if len(correct) == 1 and sorted(t.casefold() for t in texts) == ["false", "true"]:
        item = {"kind": "truefalse", **item, "answer": answers[correct[0]].casefold() == "true"}
    elif len(correct) == 1:
        item = {"kind": "single", **item, "choices": texts, "answer": answers[correct[0]]}
    else:
        order = sorted(correct)
        item = {"kind": "multiple", **item, "choices": texts,
                "answer": [answers[n] for n in order]}
    draft.add(item, number, place)


def _time_limit(value: Any) -> int | None:
    """The time limit in seconds, if it is one Kahoot allows (a number or numeric text)."""
    text = text_of(value)
    try:
        seconds = float(text)
    except ValueError:
        return None
    return int(seconds) if seconds in ALLOWED_TIME_LIMITS else None
