"""Quiz interchange: other tools' quiz formats in, quizzes back out as TOML.

``import_quiz(path, fmt)`` reads a Kahoot spreadsheet, an Open Trivia DB JSON answer, a GIFT
(Moodle) file or a CSV file and returns plain quiz data, the shape ``load_quiz_data`` takes,
already validated by it; ``quiz_to_toml`` writes a quiz (or such data) as a TOML quiz file.
The formats are documented, with an example each, in ``docs/quiz-format.md``.

Rules this package keeps:

1. One validator. Importers build plain data and hand it to ``game.load_quiz_data``; they
   check only what their own format means (a Kahoot time limit, a GIFT weight), never
   re-implement the quiz rules.
2. Every problem at once, located in the source file (``row 12``, ``line 33``,
   ``results[4]``), in one ``QuizFileError``. Unsupported features are reported, never
   dropped in silence: as a problem when leaving them out would change the scoring, as a note
   (collected in the ``notes`` list, when given) when it would not.
3. A thin shell over a pure core. ``import_bytes`` and the format modules take bytes and
   touch no file; ``import_quiz`` only reads the file. Only ``kahoot`` imports openpyxl, and
   only when a spreadsheet is imported (it is the optional ``import`` extra).
4. Round trip: ``load_quiz(<file written from quiz_to_toml(import_quiz(p, f))>)`` equals
   ``load_quiz_data(import_quiz(p, f))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.interchange._draft import MAX_FILE_BYTES, Draft, title_from_path
from pubquiz_engine.interchange.csvfile import read_csv
from pubquiz_engine.interchange.gift import read_gift
from pubquiz_engine.interchange.kahoot import read_kahoot
from pubquiz_engine.interchange.opentdb import ENCODINGS, read_opentdb
from pubquiz_engine.interchange.toml_writer import dumps, quiz_to_toml

FORMATS = ("kahoot", "opentdb", "gift", "csv")
# The format a file name suggests, for ``quiz import`` without ``--from``.
SUFFIXES = {".xlsx": "kahoot", ".json": "opentdb", ".gift": "gift", ".csv": "csv"}

__all__ = [
    "ENCODINGS",
    "FORMATS",
    "SUFFIXES",
    "dumps",
    "guess_format",
    "import_bytes",
    "import_quiz",
    "quiz_to_toml",
]


def guess_format(path: str | Path) -> str | None:
    """The format a file's suffix suggests, or None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def import_bytes(
    raw: bytes, fmt: str, *, source: str, title: str, encoding: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Import a quiz from the bytes of a file: plain quiz data, validated (pure; rule 3).

    ``source`` names the file in every problem; ``title`` is the quiz's title (none of the
    formats carries one); ``encoding`` is Open Trivia DB's (``ENCODINGS``; None detects it).
    Raises ``QuizFileError`` with every problem, located. Notes are appended to ``notes``.
    """
    if fmt not in FORMATS:
        raise QuizFileError([f"{source}: unknown import format {fmt!r}: use one of "
                             f"{', '.join(FORMATS)}"])
    if encoding is not None and fmt != "opentdb":
        raise QuizFileError([f"{source}: an encoding applies to opentdb imports only"])
    if len(raw) > MAX_FILE_BYTES:
        raise QuizFileError([f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"])
    draft = Draft(source, title)
    if fmt == "kahoot":
        read_kahoot(raw, draft)
    elif fmt == "opentdb":
        read_opentdb(raw, draft, encoding=encoding)
    elif fmt == "gift":
        read_gift(raw, draft)
    else:
        read_csv(raw, draft)
    try:
        return draft.finish()
    finally:
        if notes is not None:
            notes.extend(draft.notes)


def import_quiz(
    path: str | Path, fmt: str, *, title: str | None = None, encoding: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Import the quiz in the file at ``path``, written in format ``fmt`` (one of ``FORMATS``).

    Returns plain quiz data (the shape ``load_quiz_data`` takes), already validated. The
    title defaults to the file name (``friday_quiz.csv`` -> ``friday quiz``). Raises
    ``QuizFileError`` listing every problem, located in the file.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise QuizFileError([f"{source}: cannot read the file: {exc.strerror or exc}"]) from None
    return import_bytes(raw, fmt, source=source, title=title or title_from_path(path),
                        encoding=encoding, notes=notes)
