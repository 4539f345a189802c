"""Plain HTTP on the WebSocket port: /health, /ready, /metrics and 404."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio
from engine_fixtures import engine_at, short_quiz
from httpkit import http_get

from pubquiz_engine.client import open_client
from pubquiz_engine.server.http import HttpRequest, HttpResponse, Router


async def test_health_ready_and_metrics(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
                status, headers, body = await http_get(address.port, "/health")
                assert status == 200 and headers["content-type"] == "application/json"
                health = json.loads(body)
                assert health["status"] == "ok"
                assert health["sessions"] == 1 and health["members"] == 1
                assert health["connections"] >= 1
                # The root, the engine's own tasks, and one per open connection at least.
                assert health["tasks"] > health["connections"]
                assert health["write_behind"]["depth"] >= 0
                assert "lag_seconds" in health["write_behind"] and health["version"]
            status, _, body = await http_get(address.port, "/ready")
            assert status == 200 and json.loads(body) == {"ready": True}
            status, _, body = await http_get(address.port, "/metrics")
            assert status == 200 and b"pubquiz_sessions" in body
            status, _, _ = await http_get(address.port, "/nope")
            assert status == 404


async def test_a_failing_handler_is_a_500_and_the_engine_lives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16: an exception in an HTTP handler used to escape into the server's nursery
    and stop the engine. Now it is that request's 500 (traceback logged), nothing more."""
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")

            def broken() -> dict[str, object]:
                raise RuntimeError("a bug in /health")

            monkeypatch.setattr(engine, "health", broken)
            with caplog.at_level(logging.ERROR, logger="pubquiz_engine.server.http"):
                for _ in range(2):
                    status, _, body = await http_get(address.port, "/health")
                    assert status == 500 and body == b"internal server error\n"
            failures = [r for r in caplog.records if "HTTP handler for GET /health" in r.message]
            assert len(failures) == 2 and failures[0].exc_info is not None
            assert "a bug in /health" in caplog.text
            # The engine lives: other routes, WebSockets and the session carry on.
            status, _, body = await http_get(address.port, "/ready")
            assert status == 200 and json.loads(body) == {"ready": True}
            async with open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
            assert not engine.stopping


async def test_router_contains_a_handler_exception() -> None:
    async def broken(_request: HttpRequest) -> HttpResponse:
        raise KeyError("oops")

    router = Router({"/x": {"GET": broken}})
    for method in ("GET", "HEAD"):
        response = await router(HttpRequest(method, "/x", "token=secret"))
        assert response.status == 500
        assert b"secret" not in response.body
