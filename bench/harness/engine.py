"""The engine under test, as its own process: ``pubquiz-engine serve`` pinned to its core.

Rules this module keeps:

1. The engine is started exactly as an operator would (the CLI, flags only), on 127.0.0.1 and a
   free port, with a private data directory; its output goes to a log file whose tail is kept
   for the report when something goes wrong.
2. Readiness is ``GET /ready`` answering 200, polled with a bounded deadline.
3. It is stopped by its own PID: SIGTERM (the graceful drain), then SIGKILL only if the drain
   overruns. The exit code is recorded.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import trio

from bench.harness.system import CorePlan, cpu_seconds, cpu_times, fd_count, rss_kib

#: Settings that take the engine's abuse protections out of a load test's way (they are
#: measured elsewhere): one client address may hold many connections and join fast.
LOAD_SETTINGS: dict[str, Any] = {
    "max_connections_per_address": 20_000,
    "join_rate": 1_000_000,
    "join_burst": 1_000_000,
    "message_rate": 1_000_000,
    "message_burst": 1_000_000,
    "max_members_per_session": 20_000,
    "log_level": "info",
}
OPERATOR_KEY = "bench-operator-key"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class EngineProcess:
    """A running engine: its process, address, database and log."""

    process: trio.Process
    port: int
    database_url: str
    log_path: Path
    command: list[str]
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def fd_count(self) -> int:
        return fd_count(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_times(self) -> tuple[float, float]:
        """(all, kernel) CPU seconds, from one reading (``system.cpu_times``)."""
        return cpu_times(self.pid)

    async def health(self) -> dict[str, Any]:
        status, body = await http_get(self.port, "/health")
        if status != 200:
            raise RuntimeError(f"/health answered {status}")
        data: dict[str, Any] = json.loads(body)
        return data

    async def histogram(self, name: str) -> dict[float, float]:
        """The cumulative bucket counts of one histogram of /metrics (``le`` -> count;
        ``+Inf`` as ``math.inf``), to compare two readings."""
        status, body = await http_get(self.port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return histogram_buckets(body.decode(), name)

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """``le`` -> cumulative count of the unlabelled histogram ``name`` in a Prometheus text
    exposition."""
    prefix = f'{name}_bucket{{le="'
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, count = line[len(prefix):].partition('"}')
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(count)
    return buckets


async def http_get(port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET to 127.0.0.1:port (the engine's own /health and /ready)."""
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def _open_log(path: Path) -> BinaryIO:
    """The engine's log file (its directory made): set-up, once per run, before any load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")  # handed to the child process; the caller closes it


@contextlib.asynccontextmanager
async def engine_process(plan: CorePlan, work_dir: Path, *, ack_mode: str = "durable",
                         database_url: str | None = None,
                         settings: Mapping[str, Any] | None = None,
                         ready_timeout: float = 30.0) -> AsyncIterator[EngineProcess]:
    """Run ``pubquiz-engine serve`` pinned to ``plan.engine``; SIGTERM it on exit."""
    log_path = work_dir / "engine.log"
    log = _open_log(log_path)
    port = free_port()
    database_url = database_url or f"sqlite:///{work_dir / 'pubquiz.sqlite3'}"
    values = {**LOAD_SETTINGS, **dict(settings or {})}
    command = [*plan.prefix(plan.engine), sys.executable, "-m", "pubquiz_engine.cli", "serve",
               "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(work_dir),
               "--database-url", database_url, "--operator-key", OPERATOR_KEY,
               "--ack-mode", ack_mode]
    for name, value in values.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    with log:
        process = await trio.lowlevel.open_process(command, stdout=log, stderr=log)
    engine = EngineProcess(process, port, database_url, log_path, command)
    try:
        with trio.fail_after(ready_timeout):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"engine exited with {process.returncode}: "
                                       + " | ".join(engine.log_tail(10)))
                try:
                    status, _ = await http_get(port, "/ready", timeout=2)
                    if status == 200:
                        break
                except (OSError, trio.TooSlowError, ValueError, IndexError):
                    pass
                await trio.sleep(0.05)
        yield engine
    finally:
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(40):
                    await process.wait()
                if process.poll() is None:
                    process.kill()
                    await process.wait()
            engine.exit_code = process.returncode
