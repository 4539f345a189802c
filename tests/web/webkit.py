"""Helpers for the web tests: services under ``trio.run`` in threads of their own, the browser
pages of a test (with their errors and screenshots), Playwright's ``expect``, and skip-or-fail."""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
import trio

from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: How long a page, a locator or ``expect`` waits for anything, in milliseconds.
WAIT_MS = 15_000

Viewport = dict[str, int]

#: Wait (bounded) until the pages' animations are done; the countdown bar, which moves for as
#: long as a question is open, is left out.
SETTLE = """async () => {
  for (let round = 0; round < 20; round++) {
    const running = document.getAnimations().filter((a) => a.playState === "running"
      && !a.effect?.target?.closest?.(".countdown"));
    if (!running.length) return;
    await Promise.all(running.map((a) => a.finished.catch(() => null)));
  }
}"""

#: Controls and pictures without an accessible name (a label, text, aria-label or alt).
UNNAMED = """() => [...document.querySelectorAll("button, input, a[href], img, [role=img]")]
  .filter((el) => !el.closest("[hidden]"))
  .filter((el) => !(el.getAttribute("aria-label") || el.labels?.length || el.getAttribute("alt")
    || el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""

T = TypeVar("T")


def missing(what: str) -> None:
    """Skip the test, or fail it under ``CI=true`` (where every tool must be installed)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: browser tests never skip)", pytrace=False)
    pytest.skip(what)


def expect(target: Any) -> Any:
    """Playwright's ``expect`` with ``WAIT_MS``, imported late: without playwright the fixtures
    skip (or fail under CI) instead of the test modules failing to import."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect(target)


class Pages:
    """A test's open pages, each in a browser context of its own (players must not share
    localStorage), with the page errors and console errors they reported.

    ``shot_sizes`` names the viewports ``shot()`` takes each screenshot at.
    """

    def __init__(self, browser: Any, base: str, artifacts: Path, *,
                 shot_sizes: dict[str, Viewport] | None = None) -> None:
        self.browser = browser
        self.base = base
        self.artifacts = artifacts
        self.shot_sizes = shot_sizes or {}
        self.errors: list[str] = []
        self.contexts: list[Any] = []

    def open(self, path: str, viewport: Viewport, label: str) -> Any:
        """A new page at ``base + path``; its errors are kept as ``label: error``."""
        context = self.browser.new_context(viewport=viewport, accept_downloads=True)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"{label}: {error}"))
        page.on("console", lambda msg: self.errors.append(f"{label}: {msg.text}")
                if msg.type == "error" else None)
        page.goto(self.base + path)
        return page

    def shot(self, page: Any, name: str) -> None:
        """``name-<size>.png`` for each of ``shot_sizes``, once animations have settled."""
        assert self.shot_sizes, "Pages(shot_sizes=...) names the screenshot sizes"
        original = page.viewport_size
        for size_name, size in self.shot_sizes.items():
            page.set_viewport_size(size)
            # (wait_for_function would evaluate a string: the pages' CSP forbids eval, rightly)
            page.evaluate(SETTLE)
            page.screenshot(path=str(self.artifacts / f"{name}-{size_name}.png"))
        page.set_viewport_size(original)

    def on_failure(self, prefix: str) -> None:
        """Keep what each page showed when the test failed (``artifacts/<prefix>-<n>.png``)."""
        for number, context in enumerate(self.contexts):
            for page in context.pages:
                page.screenshot(path=str(self.artifacts / f"{prefix}-{number}.png"))

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def run_scenario(pages: Pages, scenario: Callable[[Pages], None], *, failure_prefix: str) -> None:
    """Run ``scenario(pages)``; if it raises, keep the failure screenshots and print the pages'
    errors before re-raising. Then no page may have reported an error. The pages are closed
    in any case."""
    try:
        try:
            scenario(pages)
        except Exception:
            pages.on_failure(failure_prefix)
            print("\n".join(pages.errors))
            raise
        assert pages.errors == []
    finally:
        pages.close()


class TrioThread:
    """A service under ``trio.run`` in a daemon thread of its own.

    A subclass writes ``serve()``: it sets the service up, calls ``ready()`` and waits for
    ``stop``. ``start()`` returns once ``ready()`` was called; ``stop()`` sets ``stop``, joins
    the thread and re-raises whatever the service raised. ``call()`` and ``call_sync()`` run a
    function in the service's event loop from the test's thread.
    """

    #: Names the service in the thread's name and in the errors of start() and stop().
    what = "the trio service"
    stop_timeout = 30.0

    def __init__(self, name: str) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    async def serve(self, ready: Callable[[], None], stop: trio.Event) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"{self.what} did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported by start() or stop() in the test's thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        await self.serve(self._ready.set, self._stop)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the service's event loop and return its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the service's event loop and return its result."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def stop(self, timeout: float | None = None) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            self.call_sync(self._stop.set)
        self._thread.join(self.stop_timeout if timeout is None else timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.what} did not stop in time")
        if self._error is not None:
            raise self._error


class EngineThread(TrioThread):
    """An engine on 127.0.0.1 port 0 under ``trio.run`` in a background thread.

    ``start()`` returns once the port listens; ``stop()`` asks the engine for its graceful stop
    and re-raises whatever the engine's thread raised.
    """

    what = "the engine"

    def __init__(self, **settings: Any) -> None:
        super().__init__("engine")
        self.config = ServerConfig(**settings)
        self.engine: Engine | None = None
        self.address: EngineAddress | None = None

    @property
    def base_url(self) -> str:
        assert self.address is not None
        return f"http://127.0.0.1:{self.address.port}"

    async def serve(self, ready: Callable[[], None], stop: trio.Event) -> None:
        async with running_engine(self.config) as (engine, address):
            self.engine, self.address = engine, address
            ready()
            await stop.wait()
