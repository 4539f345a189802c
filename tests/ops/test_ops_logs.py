"""JSON logs: the formatter and context binding alone, then a real run's output read back:
every line is JSON, connection lines carry their ids and session codes, and no secret shows."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from opskit import OPERATOR_KEY, QUIZ, serve_process

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.logs import (
    ContextFilter,
    JsonFormatter,
    Redactor,
    bind_log_fields,
    log_fields,
)
from pubquiz_engine.protocol import messages as m


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines (with the context filter) into a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(Redactor()))
    handler.addFilter(ContextFilter(node="node-a"))
    logger = logging.getLogger("pubquiz_test_ops")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_bound_fields_extra_and_unbinding(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = captured
    log.info("plain")
    state = {"session": None}
    with log_fields(conn=7, session=lambda: state["session"]):
        log.info("before join")
        state["session"] = "ABC234"
        log.info("after join")
        log.info("explicit", extra={"session": "ZZZ999"})
        with log_fields(conn=None):
            log.warning("session only")
    log.info("after")
    lines = _lines(out)
    assert [(x["msg"], x.get("conn"), x.get("session")) for x in lines] == [
        ("plain", None, None),
        ("before join", 7, None),
        ("after join", 7, "ABC234"),
        ("explicit", 7, "ZZZ999"),
        ("session only", None, "ABC234"),
        ("after", None, None),
    ]
    assert all(x["node"] == "node-a" and x["logger"] == "pubquiz_test_ops" for x in lines)
    assert lines[4]["level"] == "warning"


async def test_fields_follow_trio_tasks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = captured

    async def connection(conn: int, started: trio.Event, go: trio.Event) -> None:
        bind_log_fields(conn=conn)
        started.set()
        await go.wait()  # both tasks are bound before either logs
        log.info("hello")

    go = trio.Event()
    async with trio.open_nursery() as nursery:
        for conn in (1, 2):
            started = trio.Event()
            nursery.start_soon(connection, conn, started, go)
            await started.wait()
        go.set()
    log.info("parent")
    assert sorted((x["msg"], x.get("conn")) for x in _lines(out)) == [
        ("hello", 1), ("hello", 2), ("parent", None)]


def test_exceptions_are_one_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = captured
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    (line,) = out.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_redactor() -> None:
    redactor = Redactor()
    host_token = "q4mX_2vT9-bWc8LrP0sZk1YhN7eJfA3u"
    redactor.add(host_token)
    redactor.add("op/key+with=odd chars")
    redactor.add("short")  # too short to scrub safely: ignored
    assert len(redactor) == 2
    text = (f"host {host_token}, resume ABC234.17.Zx9_kq2LmN0pQr8sT1uV3wX4yZ5aB6cD, "
            "db postgresql://pubquiz:s3cr3t@db:5432/pubquiz, key op/key+with=odd chars, "
            f"longer {host_token}x, short word, sha 9f86d081884c7d659a2feaa0c55ad015")
    assert redactor.redact(text) == (
        "host ***, resume ABC234.17.***, db postgresql://pubquiz:***@db:5432/pubquiz, "
        f"key ***, longer {host_token}x, short word, sha 9f86d081884c7d659a2feaa0c55ad015")
    redactor.discard(host_token)
    assert host_token in redactor.redact(host_token)


async def test_a_runs_logs_are_json_tagged_and_free_of_tokens(tmp_path: Path) -> None:
    with trio.fail_after(45):
        async with serve_process(tmp_path, "--log-level", "debug") as served:
            url = f"ws://127.0.0.1:{served.port}/"
            async with open_client(url) as operator:
                created = await operator.create_session(OPERATOR_KEY, quiz=QUIZ, mode="solo")
                with pytest.raises(RemoteError) as wrong_key:
                    await operator.create_session(OPERATOR_KEY + "x", quiz=QUIZ)
                assert wrong_key.value.code is ErrorCode.BAD_KEY
            secrets = [OPERATOR_KEY, created.host_token]
            async with open_client(url) as host, open_client(url) as ann:
                await host.host(created.code, created.host_token)
                welcome = await ann.join(created.code, "Ann")
                assert welcome.token is not None
                secrets.append(welcome.token)
                secrets.append(welcome.token.rsplit(".", 1)[1])  # its secret part alone
                async with open_client(url) as intruder:
                    with pytest.raises(RemoteError):
                        await intruder.host(created.code, created.host_token[::-1])
                    with pytest.raises(RemoteError):
                        await intruder.resume(welcome.token[:-4] + "AAAA", 0)
                await host.request(m.Start)
                question = await ann.next_event(m.Question)
                await ann.answer(question.q, 0)
            async with open_client(url) as ann_again:  # a phone that reconnects
                await ann_again.resume(welcome.token, 0)
            assert await served.stop() == 0

    lines = served.lines
    print("\n".join(lines))  # shown when the test fails
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("listening on" in r["msg"] for r in records)
    text = "\n".join(lines)
    for secret in secrets:
        assert secret not in text
    # Each connection's lines carry its id; once it joined, its session's code.
    closed = [r for r in records if r["msg"].startswith("connection closed")]
    assert len(closed) == 5  # operator, host, ann, intruder, ann again
    assert len({r["conn"] for r in closed}) == 5
    joined = [r for r in closed if "never joined" not in r["msg"]]
    assert len(joined) == 3 and all(r["session"] == created.code for r in joined)
    assert all("session" not in r for r in closed if "never joined" in r["msg"])
    created_line = next(r for r in records if r["msg"] == "session created")
    assert created_line["session"] == created.code and "conn" in created_line
    # The session's own task logs as the session, not as the connection that created it.
    ended = next(r for r in records if r["msg"].startswith("session ended"))
    assert ended["session"] == created.code and "conn" not in ended
    assert [r["msg"] for r in records].count(
        "shutdown: write-behind queue flushed; closing 1 sessions") == 1
