"""Helpers for the web tests: an engine running in a thread of its own, and skip-or-fail."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import trio

from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip the test, or fail it under ``CI=true`` (where every tool must be installed)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: browser tests never skip)", pytrace=False)
    pytest.skip(what)


class EngineThread:
    """An engine on 127.0.0.1 port 0 under ``trio.run`` in a background thread.

    ``start()`` returns once the port listens; ``stop()`` asks the engine for its graceful stop
    and re-raises whatever the engine's thread raised.
    """

    def __init__(self, **settings: Any) -> None:
        self.config = ServerConfig(**settings)
        self.engine: Engine | None = None
        self.address: EngineAddress | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="engine", daemon=True)

    @property
    def base_url(self) -> str:
        assert self.address is not None
        return f"http://127.0.0.1:{self.address.port}"

    def start(self, timeout: float = 20.0) -> EngineThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the engine did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported by start() or stop() in the test's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with running_engine(self.config) as (engine, address):
            self.engine, self.address = engine, address
            self._ready.set()
            await self._stop.wait()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``await fn(*args)`` in the engine's event loop and return its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def stop(self, timeout: float = 30.0) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the engine did not stop in time")
        if self._error is not None:
            raise self._error
