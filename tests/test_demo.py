"""The README's main command: the demo plays the whole sample quiz over real sockets."""

from __future__ import annotations

from pathlib import Path

import trio

from pubquiz_engine.demo import DemoOptions, run_demo


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
