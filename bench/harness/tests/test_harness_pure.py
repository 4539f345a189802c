"""The harness's pure parts: statistics, quiz data, the report table, the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.harness import quizzes, report, stats, system
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
