"""Fixtures for the web client tests: node, Chromium + Playwright, and an engine in a thread.

The browser tests are synchronous (Playwright's sync API runs its own event loop), so the engine
runs under ``trio.run`` in a thread of its own and the test talks to it over 127.0.0.1 like any
browser would. Under ``CI=true`` a missing node, Chromium or Playwright fails the run; elsewhere
those tests skip (as tests/conftest.py does for PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webkit import EngineThread, missing

REPO = Path(__file__).resolve().parents[2]
#: Screenshots of every page at phone and projector sizes (tests/artifacts is gitignored).
ARTIFACTS = REPO / "tests" / "artifacts" / "web"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
#: Flags for a quiet, private, offline-friendly headless Chromium (Playwright adds --headless
#: and its own fresh --user-data-dir per launch).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable (Node 20+: ``node --test``)."""
    path = shutil.which("node")
    if path is None:
        missing("node is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium (``PUBQUIZ_CHROMIUM`` overrides); browsers are never downloaded."""
    wanted = os.environ.get("PUBQUIZ_CHROMIUM")
    for candidate in ([wanted] if wanted else CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    missing("chromium is not installed (apt-get install chromium)")
    raise AssertionError  # unreachable: _missing raises


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    """One headless Chromium for the session, driven by Playwright's sync API."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; never playwright install)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def engine_thread(tmp_path: Path) -> Iterator[EngineThread]:
    """A running engine with operator key ``operator-key-for-tests`` and a private SQLite
    file."""
    running = EngineThread(port=0, host="127.0.0.1", data_dir=str(tmp_path),
                           operator_key="operator-key-for-tests", join_rate=1000.0,
                           join_burst=1000).start()
    try:
        yield running
    finally:
        running.stop()
