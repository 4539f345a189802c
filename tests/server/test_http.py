"""Plain HTTP on the WebSocket port: /health, /ready, /metrics and 404."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from engine_fixtures import engine_at, short_quiz
from httpkit import http_get

from pubquiz_engine.client import open_client


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
