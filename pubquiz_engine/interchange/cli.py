"""``pubquiz-engine quiz import FILE --from FORMAT -o quiz.toml``: the command-line shell.

``add_import_command`` adds the subcommand to the ``quiz`` subparsers; ``cli.py`` wires it in
next to ``quiz validate`` and, like that command, runs it synchronously through ``run_sync``.

Rules this module keeps:

1. Output like ``quiz validate``: every problem on its own stderr line, located; exit status
   0 when the quiz was written, 1 when there were problems (nothing is written then), 2 for a
   usage error (argparse's own).
2. Never overwrite a file by surprise: an existing ``-o`` file needs ``--force``. Without
   ``-o`` the TOML goes to stdout, so it can be piped or just looked at.
3. Notes (what the import left out without changing the scoring) go to stderr as
   ``note:`` lines, so the quiz master sees them and stdout stays pure TOML.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.interchange import ENCODINGS, FORMATS, guess_format, import_quiz
from pubquiz_engine.interchange.toml_writer import quiz_to_toml

__all__ = ["add_import_command", "run_import"]


def add_import_command(
    quiz_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``quiz import`` to the ``quiz`` command's subparsers."""
    parser = quiz_subparsers.add_parser(
        "import", help="convert a quiz from another tool's format to a TOML quiz file",
        description="Convert a Kahoot spreadsheet, Open Trivia DB JSON, GIFT (Moodle) or CSV "
        "file to a pubquiz-engine TOML quiz file, reporting every problem with its location "
        "(formats: docs/quiz-format.md).",
    )
    parser.add_argument("file", help="the file to import")
    parser.add_argument("--from", dest="fmt", choices=FORMATS, metavar="FORMAT",
                        help=f"its format: {', '.join(FORMATS)} (default: from the file's "
                        "suffix: .xlsx, .json, .gift, .csv)")
    parser.add_argument("-o", "--output", metavar="QUIZ.toml",
                        help="where to write the quiz (default: standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--title", help="the quiz's title (default: from the file name)")
    parser.add_argument("--encoding", choices=ENCODINGS,
                        help="opentdb only: the API's encode parameter (default: detect)")
    parser.set_defaults(run_sync=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Run ``quiz import`` (rule 1)."""
    fmt = args.fmt or guess_format(args.file)
    if fmt is None:
        print(f"{args.file}: cannot tell the format from the file name: give --from "
              f"({', '.join(FORMATS)})", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output and args.output != "-" else None
    if output is not None and output.exists() and not args.force:
        print(f"{output}: already exists: use --force to overwrite it", file=sys.stderr)
        return 1
    notes: list[str] = []
    try:
        data = import_quiz(args.file, fmt, title=args.title, encoding=args.encoding,
                           notes=notes)
    except QuizFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        _print_notes(notes)
        return 1
    _print_notes(notes)
    text = quiz_to_toml(data, header=f"Imported from {Path(args.file).name} ({fmt}) by "
                        "pubquiz-engine quiz import.\nFormat: docs/quiz-format.md. Check it "
                        "with `pubquiz-engine quiz validate <file>`.")
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{output}: cannot write the file: {exc.strerror or exc}", file=sys.stderr)
        return 1
    questions = sum(1 for r in data["rounds"] for i in r["items"] if i["kind"] != "slide")
    print(f"{output}: wrote {data['title']!r}, {len(data['rounds'])} rounds, {questions} "
          "questions", file=sys.stderr)
    return 0


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
