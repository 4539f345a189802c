"""The README's main command: the demo plays the whole sample quiz over real sockets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from pubquiz_engine.demo import DemoOptions, command_hint, run_demo


async def test_demo_plays_the_sample_quiz_to_the_end(tmp_path: Path) -> None:
    lines: list[str] = []
    with trio.fail_after(120):
        summary = await run_demo(
            DemoOptions(players=8, teams=4, data_dir=str(tmp_path), answer_delay=(0.0, 0.02)),
            say=lines.append,
        )
    assert summary["refused"] == 0
    assert summary["acked"] > 0
    # Every acked answer is in the store exactly once (team mode stores each submission).
    assert summary["stored"] == summary["acked"]
    standings = summary["standings"]
    assert len(standings) == 4 and standings[0].rank == 1
    assert any("Final standings" in line for line in lines)
    # The closing hint names a command that runs from here (not a bare name off PATH).
    hint = next(line for line in lines if "export them with:" in line)
    command = hint.split("export them with: ", 1)[1].split(" export ")[0]
    assert command == command_hint()
    assert command == "pubquiz-engine" or await trio.Path(command.split()[0]).exists()


def test_the_command_hint_is_the_installed_script_not_a_bare_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` leaves `pubquiz-engine` in .venv/bin, off PATH: the hint says where."""
    script = Path(sys.executable).with_name("pubquiz-engine")
    assert script.exists()  # the dev virtualenv installs the entry point
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(script.parents[2])  # the directory holding .venv
    assert command_hint() == str(script.relative_to(script.parents[2]))
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")
    assert command_hint() == "pubquiz-engine"
