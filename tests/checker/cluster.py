"""Two engine processes sharing PostgreSQL and Redis, each behind its own fault proxies, and the
nemesis that hurts them on a seeded schedule.

Every engine is a real ``pubquiz-engine serve`` child (``--port 0``, loopback only). Each node
reaches PostgreSQL and Redis through its own ``FaultProxy`` (``tests/proxykit.py``), so a fault
can cut or stall one node's path while the other's works, and the shared servers are never
touched. A killed node is restarted under the same name (a new port: clients find it through
``Cluster.urls``, as a router would).

Fault families (``FAMILIES``): ``kill9`` (SIGKILL of the owner, restart), ``sigterm`` (graceful
stop of the owner, restart), ``pause`` (SIGSTOP of the owner past its lease, SIGCONT), ``db_cut``
and ``db_stall`` (the owner's path to PostgreSQL), ``redis_cut`` (the owner's path to Redis).
"The owner" is the node holding the session's lease when the fault starts (read from Redis);
a takeover by the other engine follows every fault that outlasts the lease.

Rules: only processes this module started are signalled, by their own handle; every wait has a
deadline; at the end every node is healed (SIGCONT, proxies restored) before it is stopped.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import trio
from proxykit import FaultProxy

from pubquiz_engine.snapshot import open_redis_store

FAMILIES = ("kill9", "sigterm", "pause", "db_cut", "db_stall", "redis_cut")
OPERATOR_KEY = "checker-operator-key"


@attrs.define(eq=False)
class Node:
    name: str
    pg: FaultProxy
    redis: FaultProxy
    process: trio.Process | None = None
    url: str | None = None
    starts: int = 0
    stopped: bool = False  # SIGSTOPped
    output: collections.deque[str] = attrs.Factory(lambda: collections.deque(maxlen=400))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


@attrs.frozen
class Fault:
    """One scheduled fault: ``at`` seconds after the quiz starts, for ``duration`` seconds."""

    at: float
    family: str
    duration: float


@attrs.define
class Injected:
    """A fault as it happened (for the report)."""

    at: float
    family: str
    node: str
    duration: float
    note: str = ""


def schedule(rng: random.Random, families: tuple[str, ...], count: int, *, start: float,
             gap: float) -> list[Fault]:
    """``count`` faults drawn from ``families``, the first ``start`` s into the quiz, then one
    every ``gap`` s plus jitter (a fault is healed before the next one starts)."""
    faults: list[Fault] = []
    at = start
    for _ in range(count if families else 0):
        family = rng.choice(families)
        duration = {"kill9": rng.uniform(0.0, 0.5), "sigterm": rng.uniform(0.0, 0.5),
                     "pause": rng.uniform(1.6, 2.4), "db_cut": rng.uniform(0.5, 2.5),
                     "db_stall": rng.uniform(0.5, 2.0), "redis_cut": rng.uniform(0.5, 3.0),
                     }[family]
        faults.append(Fault(round(at + rng.uniform(0.0, 1.0), 3), family, round(duration, 3)))
        at += gap
    return faults


class Cluster:
    """Nodes ``a`` and ``b``. Use ``async with Cluster.running(...)``."""

    def __init__(self, *, tmp: Path, postgres_url: str, redis_url: str, prefix: str,
                 ack_mode: str, lease_ttl_ms: int, nursery: trio.Nursery) -> None:
        self.tmp = tmp
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self.prefix = prefix
        self.ack_mode = ack_mode
        self.lease_ttl_ms = lease_ttl_ms
        self._nursery = nursery
        self.nodes: list[Node] = []
        self.changed = trio.Event()  # set (then replaced) whenever a node starts or stops
        self.redis = open_redis_store(redis_url, prefix=prefix)

    async def add_nodes(self, names: tuple[str, ...] = ("a", "b")) -> None:
        for name in names:
            pg = FaultProxy.for_url(self.postgres_url)
            redis = FaultProxy.for_url(self.redis_url)
            await self._nursery.start(pg.run)
            await self._nursery.start(redis.run)
            self.nodes.append(Node(name, pg, redis))
        async with trio.open_nursery() as starting:
            for node in self.nodes:
                starting.start_soon(self.start, node)

    def urls(self) -> list[str]:
        """The URLs of the nodes that run now (a router's view)."""
        return [n.url for n in self.nodes if n.alive and n.url is not None]

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def start(self, node: Node) -> None:
        """Start ``node``'s engine; return once it listens (bounded)."""
        node.starts += 1
        data_dir = self.tmp / f"{node.name}{node.starts}"
        data_dir.mkdir(parents=True, exist_ok=True)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "pubquiz_engine.cli", "serve", "--port", "0",
             "--data-dir", str(data_dir), "--node-id", node.name,
             "--database-url", node.pg.url_for(self.postgres_url),
             "--redis-url", node.redis.url_for(self.redis_url), "--redis-prefix", self.prefix,
             "--lease-ttl-ms", str(self.lease_ttl_ms), "--orphan-scan-interval", "1",
             "--snapshot-interval", "0.2", "--ack-mode", self.ack_mode,
             "--operator-key", OPERATOR_KEY, "--drain-timeout", "5",
             "--join-rate", "10000", "--join-burst", "10000", "--message-rate", "1000",
             "--message-burst", "1000", "--max-connections-per-address", "5000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        node.process = process
        node.url = None
        listening = trio.Event()
        self._nursery.start_soon(self._read, node, process, listening)
        with trio.fail_after(30):
            await listening.wait()
        if process.returncode is not None:
            raise AssertionError(f"engine {node.name} exited at start:\n"
                                 + "\n".join(node.output))
        self._changed()

    async def _read(self, node: Node, process: trio.Process, listening: trio.Event) -> None:
        assert process.stdout is not None
        buffer = b""
        try:
            while chunk := await process.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    node.output.append(line)
                    if not listening.is_set() and "listening on" in line:
                        port = int(json.loads(line)["msg"].split()[2].rsplit(":", 1)[1])
                        node.url = f"ws://127.0.0.1:{port}/"
                        listening.set()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            listening.set()  # an engine that died before listening: start() sees its code

    async def owner(self, code: str) -> Node | None:
        """The node holding the session's lease now (None: nobody, or Redis did not say)."""
        try:
            with trio.move_on_after(2):
                lease = await self.redis.owner(code)
                return next((n for n in self.nodes if lease is not None
                             and n.name == lease.node), None)
        except Exception:
            return None
        return None

    async def inject(self, fault: Fault, code: str, rng: random.Random, at: float
                     ) -> Injected:
        """Inject ``fault`` on the session's owner (or, if none, a live node), wait its
        duration, heal it. Returns what was done."""
        node = await self.owner(code)
        note = "owner"
        if node is None or not node.alive:
            live = [n for n in self.nodes if n.alive]
            node = rng.choice(live) if live else self.nodes[0]
            note = "no owner known: a live node"
        done = Injected(at, fault.family, node.name, fault.duration, note)
        family = fault.family
        if family in ("kill9", "sigterm"):
            if not node.alive:
                done.note = "node already down"
                return done
            process = node.process
            assert process is not None
            process.send_signal(signal.SIGKILL if family == "kill9" else signal.SIGTERM)
            with trio.move_on_after(20) as waited:
                code_ = await process.wait()
            if waited.cancelled_caught:  # SIGTERM that did not end it: the report says so
                done.note += "; SIGTERM did not stop it within 20 s, killed"
                process.kill()
                code_ = await process.wait()
            elif family == "sigterm" and code_ != 0:
                done.note += f"; exit code {code_}"
            self._changed()
            await trio.sleep(fault.duration)  # the node stays down this long (the schedule)
            await self.start(node)
        elif family == "pause":
            if node.process is None or not node.alive:
                done.note = "node down"
                return done
            node.process.send_signal(signal.SIGSTOP)
            node.stopped = True
            await trio.sleep(fault.duration * self.lease_ttl_ms / 1000)  # past its lease
            node.process.send_signal(signal.SIGCONT)
            node.stopped = False
        else:
            proxy = node.redis if family == "redis_cut" else node.pg
            if family == "db_stall":
                proxy.stall()
            else:
                proxy.cut()
            await trio.sleep(fault.duration)
            proxy.restore()
        return done

    def heal(self) -> None:
        for node in self.nodes:
            node.pg.restore()
            node.redis.restore()
            if node.stopped and node.alive and node.process is not None:
                node.process.send_signal(signal.SIGCONT)
                node.stopped = False

    async def stop(self) -> dict[str, Any]:
        """Heal, then SIGTERM every node and wait (bounded) for each to exit; exit codes."""
        self.heal()
        codes: dict[str, Any] = {}
        for node in self.nodes:
            if node.alive and node.process is not None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            process = node.process
            if process is None:
                continue
            with trio.move_on_after(20):
                await process.wait()
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
                codes[node.name] = "killed after 20 s"
            else:
                codes[node.name] = process.returncode
        return codes

    async def kill_all(self) -> None:
        """Whatever happened: no child outlives the run (our own processes only)."""
        for node in self.nodes:
            process = node.process
            if process is not None and process.returncode is None:
                if node.stopped:
                    process.send_signal(signal.SIGCONT)
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.redis.aclose()
