"""``quiz generate`` end to end: real HTTP to the tests' own model server on 127.0.0.1.

The server (``modelkit.FakeModel``) answers well, answers with malformed or invalid questions,
stalls, and fails; each test checks what the command wrote (or that it wrote nothing), what it
reported on stderr, and what reached the server.
"""

from __future__ import annotations

import argparse
import socket
import time
import tomllib
from pathlib import Path

import pytest
import trio
from modelkit import FakeModel

from pubquiz_engine.game import load_quiz
from pubquiz_engine.game.quiz import QuestionKind
from pubquiz_engine.generate.cli import add_generate_command

MODEL = "test-model"


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse like ``pubquiz-engine quiz generate ...`` once the lead has wired it in."""
    parser = argparse.ArgumentParser(prog="pubquiz-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    quiz = sub.add_parser("quiz")
    add_generate_command(quiz.add_subparsers(dest="quiz_command", required=True))
    return parser.parse_args(["quiz", "generate", *argv])


async def generate(fake: FakeModel, argv: list[str], **env: str) -> int:
    """Run the command with only the environment given (never the machine's PUBQUIZ_*)."""
    environ = {"PUBQUIZ_GENERATOR_URL": fake.base_url, "PUBQUIZ_GENERATOR_MODEL": MODEL, **env}
    args = parse(argv)
    return int(await args.run(args, environ))


def prompts(path: Path) -> list[str]:
    return [q.prompt for q in load_quiz(path).questions]


EXISTING_TOML = """\
# The Red Lion quiz. This comment must survive an append.
title = "Red Lion"

[defaults]
points = 2

[[rounds]]
title = "Warm-up"

  [[rounds.items]]
  kind = "truefalse"
  prompt = "QUESTION 1 about 90s music"   # the model's first question, spelt differently
  answer = true
"""


@pytest.mark.parametrize(("kind", "expected"), [
    ("choice", QuestionKind.SINGLE), ("text", QuestionKind.TEXT),
    ("numeric", QuestionKind.NUMERIC),
])
async def test_good_answers_make_a_valid_round_and_the_second_call_uses_the_cache(
    fake_model: FakeModel, tmp_path: Path, sqlite_url: str, kind: str,
    expected: QuestionKind, capsys: pytest.CaptureFixture[str],
) -> None:
    out, again = tmp_path / "round.toml", tmp_path / "again.toml"
    with trio.fail_after(20):
        assert await generate(fake_model, [
            "--topic", "90s music", "--count", "10", "--kind", kind, "--difficulty", "easy",
            "-o", str(out), "--database-url", sqlite_url]) == 0
        quiz = load_quiz(out)
        assert quiz.title == "90s music" and [r.title for r in quiz.rounds] == ["90s music"]
        assert len(quiz.questions) == 10 and {q.kind for q in quiz.questions} == {expected}
        assert len(fake_model.requests) == 1
        err = capsys.readouterr().err
        assert "10 questions (0 from the cache, 1 model calls, 0 dropped)" in err

        # What went over the wire: the model, structured output, no key when none is set.
        sent = fake_model.requests[0]
        assert sent["model"] == MODEL and sent["stream"] is False
        assert sent["response_format"]["type"] == "json_schema"
        assert "Difficulty: easy." in sent["messages"][-1]["content"]
        assert "authorization" not in fake_model.headers[0]

        # Same request, differently spelt: served from the cache, the model is not asked.
        assert await generate(fake_model, [
            "--topic", "90S  Music", "--count", "10", "--kind", kind, "--difficulty", "easy",
            "-o", str(again), "--database-url", sqlite_url]) == 0
        assert len(fake_model.requests) == 1
        assert prompts(again) == prompts(out)
        assert "(10 from the cache, 0 model calls" in capsys.readouterr().err


@pytest.mark.redis
async def test_the_cache_lives_in_redis_when_configured(
    fake_model: FakeModel, tmp_path: Path, redis_url: str, redis_prefix: str,
) -> None:
    import redis

    argv = ["--topic", "Britpop", "--count", "4", "--redis-url", redis_url]
    with trio.fail_after(20):
        assert await generate(fake_model, [*argv, "-o", str(tmp_path / "a.toml")],
                              PUBQUIZ_REDIS_PREFIX=redis_prefix) == 0
        assert await generate(fake_model, [*argv, "-o", str(tmp_path / "b.toml")],
                              PUBQUIZ_REDIS_PREFIX=redis_prefix) == 0
    assert len(fake_model.requests) == 1
    assert prompts(tmp_path / "a.toml") == prompts(tmp_path / "b.toml")
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=redis_prefix + "ai-questions:*"))
        assert len(keys) == 1
        assert 0 < client.ttl(keys[0]) <= 7 * 24 * 3600
    finally:
        client.close()
    # No database was used for the cache.
    assert not (tmp_path / "data").exists()


async def test_invalid_questions_are_dropped_reported_and_made_up_for(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fake_model.script = ["half"]  # then "good"
    out = tmp_path / "round.toml"
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "Britpop", "--count", "6", "-o", str(out),
                                           "--no-cache"]) == 0
    assert len(load_quiz(out).questions) == 6
    assert len(fake_model.requests) == 2
    # The second request asked for exactly the three that were dropped.
    assert "Write 3 quiz questions" in fake_model.requests[1]["messages"][-1]["content"]
    err = capsys.readouterr().err
    dropped = [line for line in err.splitlines() if line.startswith("dropped: ")]
    assert len(dropped) == 3, err
    assert any("duplicate choice" in line for line in dropped)
    assert any("must name one of the 4 choices" in line for line in dropped)
    assert "6 questions (0 from the cache, 2 model calls, 3 dropped)" in err


@pytest.mark.parametrize(("behaviour", "kind", "reason"), [
    ("malformed", "choice", "not JSON"),
    ("invalid", "numeric", "finite"),
    ("invalid", "text", "non-empty list"),
])
async def test_garbage_every_time_is_a_clear_error_and_nothing_is_written(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    behaviour: str, kind: str, reason: str,
) -> None:
    fake_model.default = behaviour
    out = tmp_path / "round.toml"
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "x", "--count", "2", "--kind", kind,
                                           "-o", str(out), "--no-cache"]) == 1
    assert len(fake_model.requests) == 3  # the default number of attempts, no more
    err = capsys.readouterr().err
    assert "quiz generate: the model gave no usable question in 3 attempts" in err
    assert reason in err
    assert not out.exists()


async def test_a_stalled_server_is_a_clear_error_within_the_timeout(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fake_model.default = "stall"
    into = tmp_path / "quiz.toml"
    into.write_text(EXISTING_TOML, encoding="utf-8")
    started = time.monotonic()
    with trio.fail_after(10):
        status = await generate(fake_model, ["--topic", "90s music", "--into", str(into),
                                             "--timeout", "0.5", "--no-cache"])
    elapsed = time.monotonic() - started
    assert status == 1
    assert 0.4 < elapsed < 5
    assert fake_model.request_seen.is_set()
    err = capsys.readouterr().err
    assert "did not answer within 0.5 s" in err and fake_model.base_url in err
    assert into.read_text(encoding="utf-8") == EXISTING_TOML  # untouched
    # No temporary file is left behind.
    assert [p.name for p in await trio.Path(tmp_path).iterdir()] == ["quiz.toml"]


@pytest.mark.parametrize(("behaviour", "expected"), [
    ("fail", "answered HTTP 500: model crashed: out of memory"),
    ("refuse", "answered HTTP 401: invalid API key"),
    ("html", "did not answer with JSON"),
])
async def test_a_failing_server_is_a_clear_error_without_retries(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    behaviour: str, expected: str,
) -> None:
    fake_model.default = behaviour
    out = tmp_path / "round.toml"
    with trio.fail_after(20):
        status = await generate(fake_model, ["--topic", "x", "-o", str(out), "--no-cache"],
                                PUBQUIZ_GENERATOR_API_KEY="sk-very-secret")
    assert status == 1 and not out.exists()
    assert len(fake_model.requests) == 1  # the server's failure is not retried
    assert fake_model.headers[0]["authorization"] == "Bearer sk-very-secret"
    err = capsys.readouterr().err
    assert expected in err
    assert "sk-very-secret" not in err
    assert "Traceback" not in err


async def test_an_unreachable_server_is_a_clear_error(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with trio.fail_after(20):
        status = await generate(fake_model, ["--topic", "x", "--no-cache", "-o",
                                             str(tmp_path / "r.toml")],
                                PUBQUIZ_GENERATOR_URL=f"http://127.0.0.1:{port}/v1")
    assert status == 1
    assert f"cannot connect to the model server at http://127.0.0.1:{port}/v1" in (
        capsys.readouterr().err)


async def test_into_appends_a_round_keeps_comments_and_skips_known_questions(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    into = tmp_path / "quiz.toml"
    into.write_text(EXISTING_TOML, encoding="utf-8")
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "90s music", "--count", "3", "--into",
                                           str(into), "--round-title", "Britpop",
                                           "--no-cache"]) == 0
    text = into.read_text(encoding="utf-8")
    assert text.startswith(EXISTING_TOML.rstrip("\n"))  # the author's file, comments and all
    quiz = load_quiz(into)
    assert [r.title for r in quiz.rounds] == ["Warm-up", "Britpop"]
    assert [q.prompt for q in quiz.rounds[1].questions] == [
        "Question 2 about 90s music?", "Question 3 about 90s music?",
        "Question 4 about 90s music?"]
    assert {q.points for q in quiz.rounds[1].questions} == {2}  # the file's [defaults] apply
    # The model was told what the quiz already has.
    assert "- QUESTION 1 about 90s music" in fake_model.requests[0]["messages"][-1]["content"]
    assert "already in the quiz" in capsys.readouterr().err


async def test_into_a_json_quiz_with_another_output(
    fake_model: FakeModel, tmp_path: Path,
) -> None:
    into, out = tmp_path / "quiz.json", tmp_path / "out.json"
    into.write_text('{"title": "T", "rounds": [{"title": "R", "items": [{"kind": "truefalse",'
                    ' "prompt": "Old?", "answer": false}]}]}', encoding="utf-8")
    before = into.read_text(encoding="utf-8")
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "Pulp", "--count", "2", "--into",
                                           str(into), "-o", str(out), "--no-cache"]) == 0
    assert into.read_text(encoding="utf-8") == before
    assert prompts(out) == ["Old?", "Question 1 about Pulp?", "Question 2 about Pulp?"]


async def test_an_invalid_into_quiz_is_reported_before_asking_the_model(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    into = tmp_path / "quiz.toml"
    into.write_text('title = "T"\n[[rounds]]\ntitle = "R"\n', encoding="utf-8")
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "x", "--into", str(into)]) == 1
    assert fake_model.requests == []
    assert "field 'items'" in capsys.readouterr().err


async def test_an_existing_output_needs_force(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "round.toml"
    out.write_text("keep me", encoding="utf-8")
    out.chmod(0o640)
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "x", "-o", str(out), "--no-cache"]) == 1
        assert fake_model.requests == [] and out.read_text(encoding="utf-8") == "keep me"
        assert "--force" in capsys.readouterr().err
        assert await generate(fake_model, ["--topic", "x", "--count", "1", "-o", str(out),
                                           "--force", "--no-cache"]) == 0
    assert len(load_quiz(out).questions) == 1
    assert out.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept


async def test_without_output_the_toml_goes_to_stdout(
    fake_model: FakeModel, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(20):
        assert await generate(fake_model, ["--topic", "Oasis", "--count", "2",
                                           "--no-cache"]) == 0
    captured = capsys.readouterr()
    data = tomllib.loads(captured.out)
    assert len(data["rounds"][0]["items"]) == 2
    assert captured.out.startswith("# Generated by pubquiz-engine quiz generate")
    assert "2 questions" in captured.err
    assert list(await trio.Path(tmp_path).iterdir()) == []  # --no-cache: no database file either


async def test_no_cache_always_asks_the_model(
    fake_model: FakeModel, tmp_path: Path, sqlite_url: str,
) -> None:
    argv = ["--topic", "x", "--count", "2", "--no-cache", "--database-url", sqlite_url]
    with trio.fail_after(20):
        assert await generate(fake_model, [*argv, "-o", str(tmp_path / "a.toml")]) == 0
        assert await generate(fake_model, [*argv, "-o", str(tmp_path / "b.toml")]) == 0
    assert len(fake_model.requests) == 2
    assert not await trio.Path(sqlite_url.removeprefix("sqlite:///")).exists()


async def test_an_unusable_cache_is_a_note(
    fake_model: FakeModel, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")  # a file where the database's directory must go
    with trio.fail_after(20):
        assert await generate(fake_model, [
            "--topic", "x", "--count", "1", "-o", str(tmp_path / "r.toml"),
            "--database-url", f"sqlite:///{blocker / 'db.sqlite3'}"]) == 0
    assert "going on without the cache" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--topic", "x"], {"PUBQUIZ_GENERATOR_URL": ""}, "no model server configured"),
    (["--topic", "x", "--count", "99"], {}, "count must be"),
    (["--topic", "x", "--attempts", "0"], {}, "--attempts"),
    (["--topic", "x", "--generator-url", "ftp://host/v1"], {}, "http:// or https://"),
    (["--topic", "x", "--timeout", "0"], {}, "timeout"),
    (["--topic", "x"], {"PUBQUIZ_GENERATOR_TIMEOUT": "soon"}, "PUBQUIZ_GENERATOR_TIMEOUT must"),
])
async def test_usage_errors_exit_2_before_any_request(
    fake_model: FakeModel, capsys: pytest.CaptureFixture[str], argv: list[str],
    env: dict[str, str], message: str,
) -> None:
    with trio.fail_after(20):
        assert await generate(fake_model, [*argv, "--no-cache"], **env) == 2
    assert message in capsys.readouterr().err
    assert fake_model.requests == []
