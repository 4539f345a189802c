"""The web routes: pages and static files with their headers, and the host's results download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from httpkit import http_get

from pubquiz_engine.client import open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import running_engine
from pubquiz_engine.server.http import HttpRequest, Router
from pubquiz_engine.web import PAGES, STATIC_DIR, load_static, static_routes

QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Web night",
    "rounds": [{"title": "One", "items": [
        {"kind": "text", "prompt": "Band of Abbey Road?", "answer": ["The Beatles"],
         "time_limit": 30},
    ]}],
}


def test_every_page_and_file_has_a_route() -> None:
    files = load_static()
    for route in PAGES:
        assert route in files
    on_disk = {p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()}
    served = {r.removeprefix("/static/") for r in files if r.startswith("/static/")}
    assert served == on_disk  # nothing in static/ is left unserved (or of an unknown type)
    assert files["/play"].body == files["/static/play.html"].body


def test_no_third_party_or_remote_code() -> None:
    """Pages load scripts and styles from this origin only, and no script fetches elsewhere."""
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in (".html", ".js", ".css"):
            continue
        text = path.read_text("utf-8")
        for marker in ("<script src=\"http", "cdn.", "unpkg", "jsdelivr", "googleapis",
                       "import(\"http", "from \"http", "@import"):
            assert marker not in text, f"{path.name}: {marker}"
        if path.suffix == ".html":
            # CSP forbids inline script and style: every script is an external module.
            assert "<script>" not in text and "style=" not in text and " on" + "click=" not in text


async def test_static_headers_and_revalidation() -> None:
    router = Router(static_routes(load_static()))
    page = await router(HttpRequest("GET", "/play"))
    headers = dict(page.headers)
    assert page.status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    again = await router(HttpRequest("GET", "/play", headers=(("If-None-Match", headers["etag"]),)))
    assert again.status == 304 and again.body == b""
    script = await router(HttpRequest("GET", "/static/protocol.js"))
    assert dict(script.headers)["content-type"].startswith("text/javascript")
    assert (await router(HttpRequest("GET", "/static/../pyproject.toml"))).status == 404
    assert (await router(HttpRequest("POST", "/play"))).status == 405


def test_missing_pages_are_refused(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    with pytest.raises(FileNotFoundError, match=r"play\.html"):
        load_static(tmp_path)


async def test_results_download_needs_the_host_token(tmp_path: Path) -> None:
    with trio.fail_after(20):
        config = ServerConfig(port=0, data_dir=str(tmp_path), join_rate=1000.0, join_burst=1000)
        async with running_engine(config) as (engine, address):
            session, token = engine.create_session(load_quiz_data(QUIZ, source="test"),
                                                   mode="solo")
            code, port = session.code, address.port
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(code, token)
                await ann.join(code, "Ann")
                await host.request(m.Start)
                await ann.next_event(m.Question)
                await ann.answer(0, "beatles")

            def bearer(secret: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {secret}"}

            status, _, _ = await http_get(port, f"/results?code={code}")
            assert status == 401
            status, _, _ = await http_get(port, f"/results?code={code}", headers=bearer("wrong"))
            assert status == 403
            status, _, _ = await http_get(port, "/results?code=NOPE", headers=bearer(token))
            assert status == 404
            status, _, _ = await http_get(port, f"/results?code={code}&format=xml",
                                          headers=bearer(token))
            assert status == 400
            # Issue 16: never in the URL (proxy logs keep it), right token or not, header or not.
            for query in (f"code={code}&token={token}", f"token={token}&code={code}&format=json"):
                for extra in ({}, bearer(token)):
                    status, _, body = await http_get(port, f"/results?{query}", headers=extra)
                    assert status == 400 and b"Authorization header" in body

            status, headers, body = await http_get(port, f"/results?code={code}",
                                                   headers=bearer(token))
            assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
            assert f'filename="pubquiz-{code}.csv"' in headers["content-disposition"]
            assert headers["cache-control"] == "no-store"
            assert body.decode().startswith("standings\n") and "Ann" in body.decode()

            status, headers, body = await http_get(
                port, f"/results?code={code}&format=json",
                headers={"Authorization": f"Bearer {token}"})
            assert status == 200 and headers["content-type"] == "application/json"
            document = json.loads(body)
            assert [a["value"] for a in document["answers"]] == ["beatles"]
            assert document["standings"][0]["name"] == "Ann"
