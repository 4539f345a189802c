"""``quiz import`` on the command line; the round trip import -> TOML -> load, every format."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from kahootkit import MakeKahoot

from pubquiz_engine.game import load_quiz, load_quiz_data
from pubquiz_engine.interchange import import_quiz, quiz_to_toml
from pubquiz_engine.interchange.cli import add_import_command

KAHOOT_ROWS = [
    ["What is the capital of Australia?", "Sydney", "Canberra", "Melbourne", "Perth", 20, "2"],
    ["Which of these are noble gases?", "Neon", "Nitrogen", "Argon", None, 30, "1,3"],
    ["A group of crows is called a murder.", "True", "False", None, None, 10, "1"],
]


def run(argv: list[str]) -> int:
    """Parse and run like ``pubquiz-engine quiz ...`` once the lead has wired the command in."""
    parser = argparse.ArgumentParser(prog="pubquiz-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    quiz = sub.add_parser("quiz")
    add_import_command(quiz.add_subparsers(dest="quiz_command", required=True))
    args = parser.parse_args(["quiz", *argv])
    return int(args.run_sync(args))


def sample_file(fmt: str, samples: Path, make_kahoot: MakeKahoot) -> Path:
    return {
        "kahoot": lambda: make_kahoot(KAHOOT_ROWS),
        "opentdb": lambda: samples / "opentdb_default.json",
        "gift": lambda: samples / "geography.gift",
        "csv": lambda: samples / "pub_quiz.csv",
    }[fmt]()


@pytest.mark.parametrize("fmt", ["kahoot", "opentdb", "gift", "csv"])
def test_round_trip_import_toml_load_gives_the_same_quiz(
    fmt: str, samples: Path, make_kahoot: MakeKahoot, tmp_path: Path
) -> None:
    source = sample_file(fmt, samples, make_kahoot)
    data = import_quiz(source, fmt)
    out = tmp_path / "quiz.toml"
    out.write_text(quiz_to_toml(data), encoding="utf-8")
    assert load_quiz(out) == load_quiz_data(data)
    # And the CLI writes the same quiz.
    cli_out = tmp_path / "cli.toml"
    assert run(["import", str(source), "--from", fmt, "-o", str(cli_out)]) == 0
    assert load_quiz(cli_out) == load_quiz_data(data)


def test_import_writes_a_file_and_reports(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quiz.toml"
    source = samples / "geography.gift"
    assert run(["import", str(source), "-o", str(out), "--title", "Geography night"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"{out}: wrote 'Geography night', 2 rounds, 9 questions"
    assert f"note: {source}: line 6: feedback on wrong answers is not shown" in err
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Imported from geography.gift (gift) by pubquiz-engine quiz import.")
    assert tomllib.loads(text)["title"] == "Geography night"
    # An existing file is kept unless --force.
    assert run(["import", str(source), "-o", str(out), "--title", "Other"]) == 1
    assert capsys.readouterr().err == f"{out}: already exists: use --force to overwrite it\n"
    assert tomllib.loads(out.read_text(encoding="utf-8"))["title"] == "Geography night"
    assert run(["import", str(source), "-o", str(out), "--title", "Other", "--force"]) == 0
    assert tomllib.loads(out.read_text(encoding="utf-8"))["title"] == "Other"


def test_import_to_stdout_and_problems_to_stderr(
    samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["import", str(samples / "opentdb_base64.json"), "--encoding", "base64"]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["rounds"][0]["title"] == "Entertainment: Music"
    bad = samples / "malformed.csv"
    assert run(["import", str(bad), "--from", "csv"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 7
    assert captured.err.startswith(f"{bad}: line 3: ")


def test_format_from_the_suffix_or_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "quiz.txt"
    odd.write_text("Q? {T}\n", encoding="utf-8")
    assert run(["import", str(odd)]) == 1
    assert "cannot tell the format from the file name: give --from" in capsys.readouterr().err
    assert run(["import", str(odd), "--from", "gift"]) == 0
    missing = tmp_path / "missing.csv"
    assert run(["import", str(missing)]) == 1
    assert capsys.readouterr().err.startswith(f"{missing}: cannot read the file: ")


def test_importing_the_package_loads_no_openpyxl_and_no_trio() -> None:
    code = ("import sys, pubquiz_engine.interchange, pubquiz_engine.interchange.cli; "
            "print(sorted(m for m in ('openpyxl', 'trio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"
