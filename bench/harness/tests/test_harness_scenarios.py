"""Each scenario at a tiny size against a real engine process: the commands work end to end.

These start real processes (the engine, two load generator workers) on 127.0.0.1, unpinned
(``--no-pin``: pinning would pin the test runner itself), and check the JSON each writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.harness.run import main


def _run(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--no-pin", "--workers", "2", "--results", str(tmp_path)])
    [path] = tmp_path.glob("*.json")
    document: dict[str, Any] = json.loads(path.read_text())
    return code, document


@pytest.mark.slow
def test_connections_small(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "connections", "--n", "30", "--per-session", "10",
                     "--settle", "0.1", "--baselines", "none")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["joined"] == 30 and figures["sessions"] == 3
    assert figures["health_after"]["members"] == 33  # players and hosts
    assert figures["question_frames_received"] == 30
    assert figures["broadcast_all_ms"] > 0
    # The send() floor of the same run, over as many sockets, and the engine's ratio to it.
    assert figures["send_floor"]["sockets"] == 30
    assert figures["broadcast_engine_to_floor"]["median"] > 0
    assert figures["send_floor_readers"]["readers"] is True
    assert figures["send_floor_readers"]["sockets"] == 30
    # ... and over the engine's own connections: its 30 players and 3 hosts, whose clients
    # took the unsolicited pongs without a word (the run is clean, checked above).
    own = figures["send_floor_engine_connections"]
    if "unavailable" in own:  # not root here: the floor says why, and there is no ratio
        assert figures["broadcast_median_to_floor_engine_connections"] is None
    else:
        assert own["engine_connections"] is True and own["sockets"] == 33
        assert figures["broadcast_median_to_floor_engine_connections"]["median"] > 0
    assert figures["broadcast_engine_handoff"]["write_behind_batches"] >= 1
    # Five questions (the default), each one's passes read on their own; the first is the one
    # above, and the ratios are also given for their median.
    handoffs = figures["broadcast_engine_handoffs"]
    assert len(handoffs) == figures["broadcast_median_handoff"]["broadcasts"] == 5
    assert handoffs[0] == figures["broadcast_engine_handoff"]
    assert all(h["passes"] >= 1 and h["write_behind_batches"] >= 1 for h in handoffs)
    assert figures["broadcast_median_to_floor"]["median"] > 0
    assert figures["broadcast_median_to_floor_readers"]["median"] > 0
    assert doc["command"].startswith("python -m bench.harness connections")


@pytest.mark.slow
def test_connections_ping_only(tmp_path: Path) -> None:
    # The connection alone: every player pinged instead of joining, so none is a member and
    # there is no broadcast; the baseline's connect + join is measured beside it.
    code, doc = _run(tmp_path, "connections", "--n", "30", "--per-session", "10",
                     "--settle", "0.1", "--ping-only", "--baselines", "node_ws")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["ping_only"] is True and figures["joined"] == 30
    assert figures["health_after"]["connections"] == 33  # players and hosts
    assert figures["health_after"]["members"] == 3  # the hosts only
    assert figures["join_ms"]["n"] == 30  # ping -> pong
    assert "broadcast_engine_handoff" not in figures and "send_floor" not in figures
    # The CPU figures are there, beside the baseline's; 30 pings may take less than one clock
    # tick of the engine's CPU time (10 ms), so they can be 0 at this size.
    assert figures["engine_cpu_per_join_ms"] >= 0
    assert "cpu_per_join" in figures["ratio_to_baselines"]["node_ws"]
    assert figures["baselines"][0]["ok"] and "server_cpu_per_join_ms" in figures["baselines"][0]


def test_ping_only_needs_the_node_players(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["connections", "--n", "2", "--ping-only", "--client", "python", "--no-pin",
              "--baselines", "none", "--results", str(tmp_path)])
    assert raised.value.code == 2
    assert "--ping-only needs the Node players" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.slow
def test_fanout_small(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "fanout", "--sessions", "2", "--players", "5", "--rounds", "3",
                     "--client", "python", "--no-answer", "--baselines", "none")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    # question, closed, reveal and each player's result, 3 rounds, 10 players
    assert figures["frames_delivered"] == figures["expected_frames"] == 10 * 3 * 4
    assert figures["broadcast_last_ms"]["n"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("ws_client", ["lean", "ws"])
def test_fanout_node_client_answering_with_a_baseline(tmp_path: Path, ws_client: str) -> None:
    code, doc = _run(tmp_path, "fanout", "--sessions", "2", "--players", "5", "--rounds", "3",
                     "--baselines", "node_ws", "--ws-client", ws_client)
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["client"] == "node" and figures["answer"] is True
    assert doc["params"]["ws_client"] == ws_client
    # Every question, closed, reveal and result reached all 10 players (a player whose
    # answer was refused gets "answered: false"); every answer got one reply.
    types = figures["types"]
    assert types["question"] == types["closed"] == types["reveal"] == types["result"] == 30
    assert types.get("answer_ack", 0) + types.get("error", 0) == 30
    assert figures["frames_delivered"] == figures["expected_frames"] == 10 * 3 * 5
    [base] = figures["baselines"]
    assert base["name"] == "node_ws" and base["ok"] and base["delivered_per_s"] > 0
    assert base["loadgen_client"] == ws_client
    assert figures["ratio_to_baselines"]["node_ws"] > 0


@pytest.mark.slow
def test_rapid_small(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "rapid", "--duration", "1", "--concurrency", "3",
                     "--sessions", "2", "--baselines", "none")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["cycles"] > 0 and figures["failed"] == {}
    assert figures["cycles_per_s"] > 0
    # Every churned connection is gone again: only the two hosts remain.
    assert figures["health_after"]["connections"] == figures["health_before"]["connections"]


@pytest.mark.slow
def test_sustained_small(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "sustained", "--duration", "1", "--interval", "0.5",
                     "--rate", "40", "--players", "8", "--churn", "1", "--quiz-questions", "1")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["sent"] == figures["acked"] == 40
    assert figures["quizzes"] == 2  # back to back, each its own session
    samples = figures["samples"]
    assert len(samples) == 3  # the start, then one per interval
    assert all(s["rss_kib"] > 0 and s["fds"] > 0 and s["tasks"] > 0 for s in samples)
    assert figures["churn_cycles"] > 0


@pytest.mark.slow
def test_answers_small_on_sqlite(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "answers", "--players", "10", "--rate", "100", "--duration",
                     "0.5", "--stores", "sqlite")
    assert doc["problems"] == [] and code == 0
    runs = doc["figures"]["runs"]
    assert [r["ack_mode"] for r in runs] == ["fast", "durable"]
    for r in runs:
        assert r["sent"] == r["acked"] == 50
        assert r["ack_ms"]["n"] == 50
        # The engine's own histogram counted the same 50 acks: its last share is all of them.
        within = r["engine_ack_within"]
        assert within and list(within.values())[-1] == 1.0
        assert all(0 <= share <= 1 for share in within.values())


@pytest.mark.slow
def test_quiz_night_small(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "quiz-night", "--sessions", "1", "--players", "6", "--teams",
                     "2", "--answer-delay", "0.05")
    assert doc["problems"] == [] and code == 0
    figures = doc["figures"]
    assert figures["answers_acked"] == figures["answers_stored"] > 0
    assert figures["answers_sent"] == figures["answers_acked"] + figures["answers_refused"]
    assert figures["acked_missing_from_store"] == figures["duplicates"] == 0
    assert figures["ended_seen"] == 6
