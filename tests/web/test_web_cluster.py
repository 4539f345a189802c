"""The pages through nginx in front of three engines (issue 17): a host, a screen and three
phones play a question; the engine that owns the session is killed (kill -9) mid-question;
every page comes back through nginx on its own (the entry point with the join code, then a
redirect or a wait while the dead node's lease runs) and the reveal scores the answers the
phones gave before the kill.

The cluster (``LocalCluster``: three ``pubquiz-engine serve`` processes and nginx) runs in a
trio thread of its own on PostgreSQL and Redis; the pages in Chromium. Browsers log a refused
WebSocket handshake (nginx's 502 for a dead node) to the console: those lines are the only
console errors allowed.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from webkit import Pages, TrioThread, expect, missing

from pubquiz_engine.cluster import LocalCluster, free_port
from pubquiz_engine.snapshot import open_redis_store

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
PROJECTOR = {"width": 1280, "height": 800}
KEY = "cluster-browser-operator-key"
QUIZ: dict[str, Any] = {
    "format": 1, "title": "Cluster in the browser",
    "rounds": [{"title": "Only", "items": [
        {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon", "Nice"],
         "answer": "Paris", "time_limit": 600, "points": 1},
        {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True, "time_limit": 600},
    ]}],
}


class ClusterThread(TrioThread):
    what = "the cluster"
    stop_timeout = 60.0

    def __init__(self, workdir: Path, database_url: str, redis_url: str, prefix: str) -> None:
        super().__init__("cluster")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            missing("nginx is not installed")
        self.redis_url, self.prefix = redis_url, prefix
        self.cluster = LocalCluster(
            workdir, database_url=database_url, redis_url=redis_url, redis_prefix=prefix,
            nginx=nginx, nginx_port=free_port(), lease_ttl_ms=3000, operator_key=KEY,
            engine_args=("--orphan-scan-interval", "1", "--snapshot-interval", "0.2",
                         "--join-rate", "1000", "--join-burst", "1000"), stop_timeout=20)

    async def serve(self, ready: Callable[[], None], stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            try:
                await self.cluster.start(nursery)
                ready()
                await stop.wait()
            finally:
                await self.cluster.aclose()
                nursery.cancel_scope.cancel()

    async def kill_owner(self, code: str) -> str:
        """kill -9 of the engine holding the session's lease; its name."""
        redis = open_redis_store(self.redis_url, prefix=self.prefix)
        try:
            owner = await redis.owner(code)
        finally:
            redis.close()
        assert owner is not None
        await self.cluster.signal_node(self.cluster.node(owner.node), signal.SIGKILL)
        return owner.node


@pytest.fixture
def cluster_thread(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> Any:
    running = ClusterThread(tmp_path / "cluster", postgres_url, redis_url, redis_prefix)
    running.start(timeout=60)
    try:
        yield running
    finally:
        running.stop()


def _host_click(host: Any, command: str) -> None:
    button = host.locator(f"[data-cmd={command}]")
    expect(button).to_be_enabled()
    button.click()


def test_the_pages_come_back_through_nginx_after_a_kill9(
        browser: Any, cluster_thread: ClusterThread, artifacts: Path, tmp_path: Path) -> None:
    pages = Pages(browser, cluster_thread.cluster.http_url, artifacts)
    try:
        _play(pages, cluster_thread, tmp_path)
    except Exception:
        pages.on_failure("cluster-failed")
        print("\n".join(pages.errors))
        raise
    finally:
        pages.close()
    # A refused handshake to the dead node is the browser's console error, not the page's.
    assert [e for e in pages.errors if "WebSocket connection to" not in e] == []


def _play(pages: Pages, cluster: ClusterThread, tmp_path: Path) -> None:
    host = pages.open("/host", PROJECTOR, "host")
    quiz_file = tmp_path / "quiz.json"
    quiz_file.write_text(json.dumps(QUIZ))
    host.fill("#create-key", KEY)
    host.check("input[name=quiz][value=upload]")
    host.set_input_files("#create-file", str(quiz_file))
    host.check("input[name=mode][value=solo]")
    host.click("#create-form button[type=submit]")
    host.wait_for_selector("#player-link:has-text('/play?code=')")
    code = (host.text_content("#player-link") or "").rsplit("=", 1)[1]

    screen = pages.open(f"/screen?code={code}", PROJECTOR, "screen")
    screen.wait_for_selector(f"#join-code:has-text('{code}')")
    phones = [pages.open(f"/play?code={code}", PHONE, name) for name in ("ann", "bob", "cat")]
    for page, name in zip(phones, ("Ann", "Bob", "Cat"), strict=True):
        page.fill("#join-name", name)
        page.click("#join-submit")
        page.wait_for_selector("text=You are in")
    screen.wait_for_selector("#lobby-count:has-text('3 players')")

    _host_click(host, "start")
    for page, choice in zip(phones, (0, 1, 0), strict=True):
        page.wait_for_selector("#prompt:has-text('Capital of France?')")
        page.locator("#controls .choice").nth(choice).click()
        page.wait_for_selector("#feedback:has-text('Answer received')")
    host.wait_for_selector("#current-count:has-text('3 of 3 answered')")

    killed = cluster.call(cluster.kill_owner, code)
    # Every page sees its connection go, then comes back on its own (through /ws?code=, the
    # dead node's lease, the takeover); the reveal then reaches all of them and scores what
    # they answered before the kill.
    for page in (host, screen, *phones):
        page.wait_for_selector("#status:not([data-state=online])", state="attached")
    for page in (host, screen, *phones):
        page.wait_for_selector("#status[data-state=online]", state="attached")
    _host_click(host, "reveal")
    host.wait_for_selector("#phase-line:has-text('answer revealed')")
    phones[0].wait_for_selector("#feedback:has-text('Right!')")
    phones[1].wait_for_selector("#feedback:has-text('Not this time')")
    phones[2].wait_for_selector("#feedback:has-text('Right!')")
    screen.wait_for_selector("#q-answer:has-text('Paris')")
    print(f"\nkilled {killed}; the pages resumed through nginx")
