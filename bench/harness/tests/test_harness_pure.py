"""The harness's pure parts: statistics, quiz data, the report table, the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.harness import quizzes, report, scenarios, stats, system
from bench.harness.engine import histogram_buckets
from bench.harness.run import build_parser
from pubquiz_engine.game import load_quiz, load_quiz_data, sample_quiz_path
from pubquiz_engine.game.matching import validate_answer
from pubquiz_engine.protocol import messages as m


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert stats.percentile(values, 50) == 50.0
    assert stats.percentile(values, 99) == 99.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError):
        stats.percentile(values, 0)


def test_summarize_and_rate() -> None:
    summary = stats.summarize([3.0, 1.0, 2.0, 10.0])
    assert summary == {"n": 4, "mean": 4.0, "p50": 2.0, "p90": 10.0, "p99": 10.0,
                       "max": 10.0}
    assert stats.summarize([])["p99"] is None
    assert stats.rate(500, 2.0) == 250.0
    assert stats.rate(5, 0.0) is None


def test_bench_quiz_loads_with_the_engine_loader() -> None:
    quiz = load_quiz_data(quizzes.bench_quiz(7), source="bench")
    assert len(quiz.questions) == 7
    assert all(q.time_limit == quizzes.LONG_TIME_LIMIT for q in quiz.questions)
    with pytest.raises(ValueError):
        quizzes.bench_quiz(0)


@pytest.mark.parametrize("salt", [0, 1, 2, 5])
def test_answer_for_is_valid_for_every_sample_question(salt: int) -> None:
    quiz = load_quiz(sample_quiz_path())
    for question in quiz.questions:
        value = quizzes.answer_for(question.kind.value, question.choices, salt)
        validate_answer(question, value)  # raises when the engine would refuse it
        m.Answer(rid=1, q=0, value=value)  # and the message can be built (so encoded)


def test_table_aligns_columns() -> None:
    text = report.table("title", [("a", "1", "x"), ("longer name", "22", "")])
    lines = text.splitlines()
    assert lines[0] == "title" and set(lines[1]) == {"-"}
    assert lines[2].index("value") == lines[4].index("1") == lines[5].index("22")
    assert report.fmt(None) == "-" and report.fmt(1234.5, "ms") == "1,234.50 ms"


def test_write_result_never_overwrites(tmp_path: Path) -> None:
    first = report.write_result("demo", {"a": 1}, tmp_path)
    second = report.write_result("demo", {"a": 2}, tmp_path)
    assert first != second
    assert json.loads(second.read_text())["a"] == 2


def test_parser_bounds() -> None:
    parser = build_parser()
    args = parser.parse_args(["connections"])
    assert args.n == 5000 and args.workers == 4
    assert parser.parse_args(["answers", "--stores", "sqlite"]).stores == ["sqlite"]
    for bad in (["connections", "--n", "19001"], ["answers", "--stores", "mysql"],
                ["fanout", "--rounds", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_system_readings_of_this_process() -> None:
    pid = os.getpid()
    assert system.rss_kib(pid) > 1000
    assert system.cpu_seconds(pid) > 0
    assert system.machine_busy_seconds() > 0
    info = system.machine()
    assert info["nproc"] >= 1 and info["ram_gib"] > 0
    assert system.loopback_addresses(3) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    with pytest.raises(ValueError):
        system.loopback_addresses(251)
    plan = system.core_plan(pin=False)
    assert plan.prefix(plan.engine) == [] and plan.describe()["engine"] == "not pinned"
    assert system.CorePlan(engine=(0,), loadgen=(1, 2)).prefix((1, 2)) == [
        "taskset", "-c", "1,2"]


def test_ratio_and_baseline_rows() -> None:
    from bench.harness.baselines import baseline_rows, default_k, ratio

    assert ratio(50.0, 100.0) == 0.5
    assert ratio(None, 100.0) is None and ratio(5.0, 0) is None
    assert default_k(1000) == 50 and default_k(19_000) == 5
    rows = baseline_rows([{"name": "node_ws", "description": "Node", "n": 10,
                           "delivered_per_s": 200},
                          {"name": "trio_ws", "description": "trio", "n": 10,
                           "error": "boom"}], key="delivered_per_s", ours=100.0, label="x")
    assert "ratio 0.5" in rows[0][2]
    assert rows[1][1] == "failed" and "boom" in rows[1][2]


def test_slope_per_minute() -> None:
    from bench.harness.scenarios import _slope

    assert _slope([0.0, 30.0, 60.0], [100.0, 150.0, 200.0]) == 100.0
    assert _slope([1.0], [5.0]) is None
    assert _slope([2.0, 2.0], [1.0, 3.0]) is None


def test_new_scenarios_parse_with_bounds() -> None:
    parser = build_parser()
    args = parser.parse_args(["rapid", "--duration", "3", "--baselines", "none"])
    assert args.duration == 3.0 and args.baselines == []
    args = parser.parse_args(["sustained", "--duration", "600", "--churn", "0"])
    assert args.churn == 0 and args.interval == 5.0
    args = parser.parse_args(["fanout", "--no-answer", "--client", "python"])
    assert args.answer is False and args.client == "python"
    assert parser.parse_args(["fanout"]).baselines == ["node_ws", "node_sio", "trio_ws"]
    with pytest.raises(SystemExit):
        parser.parse_args(["rapid", "--baselines", "apache"])


def test_chart_points_and_png(tmp_path: Path) -> None:
    # matplotlib comes with the bench extra (`pip install -e '.[bench]'`), not with `make venv`.
    pytest.importorskip("matplotlib", reason="the chart needs the bench extra")
    from bench.harness import chart

    fanout = {"scenario": "fanout", "figures": {
        "joined": 1000, "client": "node", "pace": "flood", "delivered_per_s": 20000.0,
        "broadcast_last_ms": {"p99": 50.0}, "cpu": {"engine_cpu_pct": 50.0},
        "baselines": [{"name": "node_ws", "n": 1000, "delivered_per_s": 40000,
                       "server_cpu_pct": 80.0, "rtt_p99_ms": 90}]}}
    answers = {"scenario": "answers", "figures": {"runs": [
        {"store": "sqlite", "ack_mode": "durable", "offered_rate": 1000.0,
         "ack_ms": {"p99": 12.0}}]}}
    sustained = {"scenario": "sustained", "figures": {"samples": [
        {"t_s": 0, "rss_kib": 1000, "ack_ms": {"p99": None}},
        {"t_s": 5, "rss_kib": 1100, "ack_ms": {"p99": 3.0}}]}}
    for i, doc in enumerate((fanout, answers, sustained)):
        (tmp_path / f"{doc['scenario']}-{i}.json").write_text(json.dumps(doc))
    (tmp_path / "junk.json").write_text("not json")
    found = chart.load_results(tmp_path)
    assert chart.fanout_points(found["fanout"]) == {
        "pubquiz engine": [(1000, 40000.0, 50.0)], "node_ws": [(1000, 50000.0, 90)]}
    assert chart.answers_points(found["answers"]) == {"sqlite durable": [(1000.0, 12.0)]}
    out = chart.draw(tmp_path, tmp_path / "chart.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_capacity_scales_to_one_core() -> None:
    from bench.harness.scenarios import _capacity

    assert _capacity(5000.0, 50.0) == 10000.0
    assert _capacity(None, 50.0) is None and _capacity(5000.0, 0.0) is None


def test_an_ack_histogram_read_twice_gives_the_window_s_shares() -> None:
    text = "\n".join([
        "# TYPE pubquiz_ack_latency_seconds histogram",
        'pubquiz_ack_latency_seconds_bucket{le="0.001"} 50.0',
        'pubquiz_ack_latency_seconds_bucket{le="0.0025"} 90.0',
        'pubquiz_ack_latency_seconds_bucket{le="0.005"} 99.0',
        'pubquiz_ack_latency_seconds_bucket{le="0.01"} 100.0',
        'pubquiz_ack_latency_seconds_bucket{le="+Inf"} 100.0',
        "pubquiz_ack_latency_seconds_count 100.0",
        'pubquiz_event_loop_lag_seconds_bucket{le="0.001"} 7.0',
    ])
    after = histogram_buckets(text, "pubquiz_ack_latency_seconds")
    assert after == {0.001: 50.0, 0.0025: 90.0, 0.005: 99.0, 0.01: 100.0, float("inf"): 100.0}
    before = {0.001: 10.0, 0.0025: 10.0, 0.005: 10.0, 0.01: 10.0, float("inf"): 10.0}
    shares = scenarios._shares_within(before, after)
    # 90 acks in the window: 40 within 1 ms, 80 within 2.5, 89 within 5, all within 10.
    assert shares == {"1": round(40 / 90, 5), "2.5": round(80 / 90, 5),
                      "5": round(89 / 90, 5), "10": 1.0}
    assert scenarios._within_text(shares).startswith("p99 <= 10 ms")
    assert scenarios._shares_within(after, after) == {}


def test_a_floor_that_cannot_be_taken_here_is_a_row_not_a_ratio() -> None:
    # bench/broadcast_floor.py --engine says {"unavailable": ...} where it may not borrow the
    # engine's sockets (not root): no ratio, and the row says why.
    handoff = {"passes": 2, "seconds_total": 0.18, "cpu_seconds_total": 0.17}
    floor = {"unavailable": "[Errno 13] Permission denied: '/proc/1/fd'"}
    assert scenarios._floor_ratio(handoff, floor) is None
    [row] = scenarios._floor_rows(handoff, floor, 19000, "engine")
    assert "over the engine's own connections" in row[0]
    assert row[2] == "not measured on this machine: [Errno 13] Permission denied: '/proc/1/fd'"
    # ... while a measured floor gives the ratio, wall and CPU.
    measured = {"sockets": 19000, "per_send_us_median": 8.0, "scaled_median_ms": 152.0,
                "scaled_best_ms": 150.0, "scaled_cpu_median_ms": 151.0}
    ratio = scenarios._floor_ratio(handoff, measured)
    assert ratio is not None and ratio["median"] == round(180 / 152, 3)
    assert ratio["cpu_median"] == round(170 / 151, 3)
