"""Helpers for the operations tests: a short quiz, an in-process engine, a ``serve`` process,
and a tiny HTTP GET (the engine's admin routes are plain HTTP/1.1)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine

OPERATOR_KEY = "ops-test-operator-key-5c2d9e"

QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Ops night",
    "rounds": [
        {
            "title": "Only round",
            "items": [
                {"kind": "single", "prompt": "Capital of France?",
                 "choices": ["Paris", "Lyon", "Nice"], "answer": "Paris", "time_limit": 60},
                {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True,
                 "time_limit": 60},
            ],
        },
    ],
}


@contextlib.asynccontextmanager
async def engine_at(tmp_path: Path, **settings: Any
                    ) -> AsyncIterator[tuple[Engine, EngineAddress]]:
    """An engine in this process on 127.0.0.1 port 0, SQLite in ``tmp_path``."""
    settings.setdefault("port", 0)
    settings.setdefault("data_dir", str(tmp_path))
    settings.setdefault("join_rate", 1000.0)
    settings.setdefault("join_burst", 1000)
    async with running_engine(ServerConfig(**settings)) as pair:
        yield pair


class ServeProcess:
    """A ``pubquiz-engine serve`` child process and everything it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = bytearray()
        self.port = 0
        self.listening = trio.Event()
        self.eof = trio.Event()

    @property
    def lines(self) -> list[str]:
        return self.output.decode(errors="replace").splitlines()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while chunk := await self.process.stdout.receive_some(65536):
                self.output += chunk
                if not self.listening.is_set() and b"listening on" in self.output:
                    line = next(x for x in self.lines if "listening on" in x)
                    self.port = int(json.loads(line)["msg"].split()[2].split(":")[1])
                    self.listening.set()
        finally:
            self.eof.set()
            self.listening.set()  # a process that died early: the waiter checks ``port``

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop); the exit code, once all output is read."""
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            code = await self.process.wait()
            await self.eof.wait()
        return code


@contextlib.asynccontextmanager
async def serve_process(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
                        ) -> AsyncIterator[ServeProcess]:
    """Run ``pubquiz-engine serve`` on 127.0.0.1 port 0 until the block ends (killed if still
    running then); yields once it logged ``listening on``."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    environ.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pubquiz_engine.cli", "serve", "--host", "127.0.0.1",
         "--port", "0", "--data-dir", str(tmp_path), "--operator-key", OPERATOR_KEY,
         "--join-burst", "1000", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ)
    served = ServeProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(served._read)
            with trio.fail_after(20):
                await served.listening.wait()
            assert served.port, f"engine exited early: {served.output.decode(errors='replace')}"
            try:
                yield served
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # the test's own failure, not a group around it
            raise group.exceptions[0] from None
        raise
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
