"""The coordinator side of the load generator: start worker processes, command them, gather.

Rules this module keeps:

1. Players are dealt round-robin over the workers, so every session spans every worker and
   no one process carries a whole session's fan-out.
2. Workers are child processes pinned to the load generator's cores (``taskset``); they are
   stopped with a ``close`` command, then by their own PID if they overrun.
3. ``got`` events (a worker's players of one session all received question ``q``) are gathered
   as they come; ``wait_question(code, q)`` returns when every worker holding players of that
   session has reported, with the earliest and latest receipt times.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from bench.harness.system import CorePlan, cpu_seconds

REPO = Path(__file__).resolve().parents[2]
NODE_WORKER = Path(__file__).resolve().parent / "worker.js"
NODE_MODULES = REPO / "bench" / "baselines" / "node_modules"
PlayerSpec = tuple[str, str, str | None]  # (join code, name, team)


@attrs.define
class WorkerHandle:
    index: int
    process: trio.Process
    sessions: set[str]
    players: int
    inbox_send: trio.MemorySendChannel[dict[str, Any]]
    inbox: trio.MemoryReceiveChannel[dict[str, Any]]


@attrs.define
class QuestionReceipt:
    """Per (session, question): which workers reported, first and last receipt time."""

    waiting_for: int
    first: float = math.inf
    last: float = 0.0
    count: int = 0
    done: trio.Event = attrs.field(factory=trio.Event)


class LoadGen:
    """Handles to the worker processes of one scenario run."""

    def __init__(self, workers: list[WorkerHandle]) -> None:
        self.workers = workers
        self.receipts: dict[tuple[str, int], QuestionReceipt] = {}

    def _receipt(self, code: str, q: int) -> QuestionReceipt:
        key = (code, q)
        receipt = self.receipts.get(key)
        if receipt is None:
            holders = sum(1 for w in self.workers if code in w.sessions)
            receipt = self.receipts[key] = QuestionReceipt(waiting_for=holders)
        return receipt

    def _on_got(self, event: dict[str, Any]) -> None:
        receipt = self._receipt(event["code"], event["q"])
        receipt.first = min(receipt.first, event["first"])
        receipt.last = max(receipt.last, event["last"])
        receipt.count += event["count"]
        receipt.waiting_for -= 1
        if receipt.waiting_for <= 0:
            receipt.done.set()

    async def wait_question(self, code: str, q: int, *, timeout: float = 30.0
                            ) -> QuestionReceipt:
        """Wait until every player of ``code`` received question ``q``."""
        receipt = self._receipt(code, q)
        with trio.fail_after(timeout):
            await receipt.done.wait()
        return receipt

    async def send(self, worker: WorkerHandle, message: dict[str, Any]) -> None:
        assert worker.process.stdin is not None
        await worker.process.stdin.send_all((json.dumps(message) + "\n").encode())

    async def command_all(self, message: dict[str, Any]) -> None:
        for w in self.workers:
            await self.send(w, message)

    async def collect(self, name: str, *, timeout: float) -> list[dict[str, Any]]:
        """The next ``name`` event of every worker (in worker order)."""
        results = []
        with trio.fail_after(timeout):
            for w in self.workers:
                while True:
                    event = await w.inbox.receive()
                    if event.get("ev") == name:
                        results.append(event)
                        break
        return results

    async def go(self, *, timeout: float) -> list[dict[str, Any]]:
        """Connect and join every player; the workers' ``ready`` events."""
        await self.command_all({"cmd": "go"})
        return await self.collect("ready", timeout=timeout)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by all worker processes still running."""
        total = 0.0
        for w in self.workers:
            with contextlib.suppress(OSError):
                total += cpu_seconds(w.process.pid)
        return total

    async def wait_counts(self, *, frames: int | None = None, ended: int | None = None,
                          no_pending: bool = False, timeout: float) -> dict[str, Any]:
        """Poll the workers' counters until ``frames`` / ``ended`` (summed) reach the given
        values (and, with ``no_pending``, no answer awaits its reply), at most ``timeout``
        seconds; returns the last sums either way."""
        deadline = trio.current_time() + timeout
        while True:
            await self.command_all({"cmd": "count"})
            counts = await self.collect("count", timeout=30)
            total = {key: sum(c[key] for c in counts) for key in ("frames", "ended", "pending")}
            total["last_frame"] = max((c["last_frame"] or 0.0) for c in counts)
            reached = ((frames is None or total["frames"] >= frames)
                       and (ended is None or total["ended"] >= ended)
                       and (not no_pending or total["pending"] == 0))
            if reached or trio.current_time() >= deadline:
                total["reached"] = reached
                return total
            await trio.sleep(0.02)

    async def wait_quiet(self, *, quiet: float = 0.2, timeout: float = 5.0) -> int:
        """Poll until no worker received a frame for ``quiet`` seconds (at most ``timeout``);
        the summed frame count. For messages whose number is not known in advance (a
        ``result`` follows only the answers that were acked)."""
        deadline = trio.current_time() + timeout
        last = -1
        while True:
            await self.command_all({"cmd": "count"})
            frames = int(sum(c["frames"] for c in await self.collect("count", timeout=30)))
            if frames == last or trio.current_time() >= deadline:
                return frames
            last = frames
            await trio.sleep(quiet)

    async def report(self, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        await self.command_all({"cmd": "report"})
        return await self.collect("report", timeout=timeout)


def node_binary() -> str:
    """The ``node`` executable, with a clear message when it or the modules are missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed (Node.js 18+ is needed for --client node "
                           "and the baselines)")
    if not (NODE_MODULES / "ws").is_dir():
        raise RuntimeError("no Node modules: run `python -m bench.harness setup` first")
    return node


async def _read_events(handle: WorkerHandle, loadgen: LoadGen) -> None:
    stdout = handle.process.stdout
    assert stdout is not None
    buffer = b""
    async with handle.inbox_send:
        while chunk := await stdout.receive_some(1 << 20):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = json.loads(line)
                if event.get("ev") == "got":
                    loadgen._on_got(event)
                else:
                    await handle.inbox_send.send(event)


@contextlib.asynccontextmanager
async def open_loadgen(plan: CorePlan, *, port: int, players: Sequence[PlayerSpec],
                       workers: int, addresses: Sequence[str], lifetime: float = 600.0,
                       client: str = "python", **spec: Any) -> AsyncIterator[LoadGen]:
    """Start ``workers`` worker processes holding ``players`` between them.

    ``client`` is ``python`` (``worker.py``, trio-websocket) or ``node`` (``worker.js``, the
    ``ws`` package: far less CPU per received frame; no ``validate`` / ``auto_answer``).
    ``spec`` goes to every worker as is (``validate``, ``auto_answer``, ``answer_delay``,
    ``connect_concurrency``, ``connect_timeout``). The players connect on ``LoadGen.go()``.
    """
    workers = max(1, min(workers, len(players) or 1))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if client == "node":
        command = [*plan.prefix(plan.loadgen), node_binary(), str(NODE_WORKER)]
    else:
        command = [*plan.prefix(plan.loadgen), sys.executable, "-m", "bench.harness.worker"]
    handles: list[WorkerHandle] = []
    async with trio.open_nursery() as nursery:
        try:
            for i in range(workers):
                mine = list(players[i::workers])
                process = await trio.lowlevel.open_process(
                    command, stdin=-1, stdout=-1, cwd=str(REPO), env=env)
                send, receive = trio.open_memory_channel[dict[str, Any]](1000)
                handle = WorkerHandle(i, process, {p[0] for p in mine}, len(mine), send, receive)
                handles.append(handle)
                loadgen_spec = {**spec, "host": "127.0.0.1", "port": port,
                                "local_addresses": list(addresses), "players": mine,
                                "seed": i, "lifetime": lifetime}
                assert process.stdin is not None
                await process.stdin.send_all((json.dumps(loadgen_spec) + "\n").encode())
            loadgen = LoadGen(handles)
            for handle in handles:
                nursery.start_soon(_read_events, handle, loadgen)
            await loadgen.collect("hello", timeout=60)
            yield loadgen
            with trio.move_on_after(60):
                await loadgen.command_all({"cmd": "close"})
                await loadgen.collect("closed", timeout=60)
        finally:
            with trio.CancelScope(shield=True):
                for handle in handles:
                    # End of its standard input ends a worker that is still running.
                    if handle.process.stdin is not None:
                        with contextlib.suppress(trio.BrokenResourceError,
                                                 trio.ClosedResourceError):
                            await handle.process.stdin.aclose()
                for handle in handles:
                    with trio.move_on_after(10):
                        await handle.process.wait()
                    if handle.process.poll() is None:
                        handle.process.kill()  # by its own PID
                        await handle.process.wait()
            nursery.cancel_scope.cancel()
