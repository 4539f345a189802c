"""A local cluster: several engine processes behind nginx, on loopback, in one command.

``pubquiz-engine cluster`` runs it for an operator to try the deployment of
docs/operations.md section 4 on a laptop; ``tests/cluster`` runs the same thing to prove it.
Every engine is a ``pubquiz-engine serve`` child on its own fixed loopback port (a restarted
node comes back on the same port, as a systemd instance does), with its own name and public
address through nginx (``/ws/node/NAME``); all share one PostgreSQL database and one Redis key
prefix. nginx runs from a config generated into the work directory (``nginx_site.render``,
the generator of the shipped site): no root, nothing outside the work directory.

Rules this module keeps:

1. **Readiness from the processes' own words, no polling.** nginx logs ``start worker
   processes`` (to its standard error, which we read) after it has bound its listening
   sockets: from then on a connection waits in the backlog until a worker accepts it. An
   engine is ready when it logs ``listening on`` (after its registration in Redis and its
   ``READY``).
2. **Only our processes.** Every signal goes to a process this object started, by its handle;
   ``aclose`` stops them all (SIGTERM, then SIGKILL after a deadline).
3. **Every wait is bounded** (``start_timeout``, ``stop_timeout``).
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

import attrs
import trio

from pubquiz_engine.nginx_site import Instance, Site, public_url, render


class ClusterError(Exception):
    """The cluster could not start (nginx missing or refusing its config, an engine that
    exited at start): the message says which, with the process's last lines."""


@attrs.define(eq=False)
class EngineNode:
    """One engine process of the cluster."""

    name: str
    port: int
    public_url: str
    process: trio.Process | None = None
    starts: int = 0
    output: collections.deque[str] = attrs.Factory(lambda: collections.deque(maxlen=200))
    #: Set (then replaced) on every start and exit of the process.
    changed: trio.Event = attrs.Factory(trio.Event)
    #: Set (then replaced) whenever the engine logs ``state logged`` (``log_state``).
    state_logged: trio.Event = attrs.Factory(trio.Event)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def direct_url(self) -> str:
        """The engine's own port, bypassing nginx (tests, metrics)."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


#: Where ``free_port`` looks, below the kernel's ephemeral range.
_FIXED_PORTS_FROM: Final = 10_000
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """A loopback port free right now, below the kernel's ephemeral range where there is one.

    A node keeps its port across restarts (nginx names it). Between the stop and the start
    the port is free, and a port in the ephemeral range can be taken meanwhile as the local
    end of any outgoing connection on the machine (nginx's to the other nodes, the clients'):
    the restart then fails with EADDRINUSE. connect() never picks a port below the range.
    Without the range (not Linux), the kernel's choice."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    rng = random.Random()
    for _ in range(100 if low > _FIXED_PORTS_FROM + 1 else 0):
        port = rng.randrange(_FIXED_PORTS_FROM, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
# Standard error, read by LocalCluster: "start worker processes" is its readiness (rule 1).
error_log stderr notice;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    # Which engine carried each connection, for how long and how many bytes it was sent:
    # with the engines' own logs, what a failed test's clients went through.
    log_format cluster '$remote_addr:$remote_port [$time_local] "$request" $status '
                       '$body_bytes_sent upstream=$upstream_addr time=$request_time';
    access_log {dir}/nginx-access.log cluster;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


class LocalCluster:
    """``size`` engines (``n1``, ``n2``, ...) and nginx. Use ``async with cluster.running()``
    or ``start(nursery)`` / ``aclose()``."""

    def __init__(self, workdir: Path, *, database_url: str, redis_url: str,
                 redis_prefix: str = "pubquiz-cluster:", size: int = 3,
                 nginx: str | None = None, nginx_port: int = 0, lease_ttl_ms: int = 10_000,
                 operator_key: str | None = None, engine_args: Sequence[str] = (),
                 start_timeout: float = 30.0, stop_timeout: float = 40.0,
                 log_files: bool = False) -> None:
        if not 1 <= size <= 16:
            raise ValueError(f"size must be 1..16, got {size}")
        self.workdir = workdir
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.lease_ttl_ms = lease_ttl_ms
        self.operator_key = operator_key
        self.engine_args = list(engine_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.log_files = log_files
        self._nginx_bin = nginx or shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        self.nginx_port = nginx_port or free_port()
        origin = f"ws://127.0.0.1:{self.nginx_port}"
        self.nodes = [EngineNode(name, port, public_url(origin, name))
                      for name, port in ((f"n{i + 1}", free_port()) for i in range(size))]
        self.nginx: trio.Process | None = None
        self._nursery: trio.Nursery | None = None
        self.nginx_output: collections.deque[str] = collections.deque(maxlen=100)
        #: The instances in nginx's /ws ring (``reload_nginx`` changes it); by default all.
        self.routed: list[str] = [n.name for n in self.nodes]
        self._workers_started = 0
        self._workers_changed = trio.Event()

    # --- addresses ------------------------------------------------------------------------------

    @property
    def entry_url(self) -> str:
        """The WebSocket entry point through nginx (add ``?code=``)."""
        return f"ws://127.0.0.1:{self.nginx_port}/ws"

    @property
    def http_url(self) -> str:
        """The pages through nginx."""
        return f"http://127.0.0.1:{self.nginx_port}"

    def site(self) -> str:
        """The nginx site for these engines (plain HTTP on loopback)."""
        return render([Instance(n.name, f"127.0.0.1:{n.port}") for n in self.nodes],
                      Site(server_name="localhost", tls=False,
                           listen=f"127.0.0.1:{self.nginx_port}"),
                      drained=[n.name for n in self.nodes if n.name not in self.routed])

    def node(self, name: str) -> EngineNode:
        return next(n for n in self.nodes if n.name == name)

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Start nginx, then every engine; return once all are ready (rule 1)."""
        self._nursery = nursery
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self._start_nginx(nursery)
        try:
            async with trio.open_nursery() as starting:
                for node in self.nodes:
                    starting.start_soon(self.start_node, node)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # the one engine that failed, not a group
                raise group.exceptions[0] from None
            raise

    async def _start_nginx(self, nursery: trio.Nursery) -> None:
        if self._nginx_bin is None:
            raise ClusterError("nginx is not installed (apt-get install nginx)")
        (self.workdir / "site.conf").write_text(self.site())
        conf = self.workdir / "nginx.conf"
        conf.write_text(_NGINX_MAIN.format(dir=self.workdir))
        check = await trio.run_process([self._nginx_bin, "-t", "-q", "-c", str(conf), "-p",
                                        str(self.workdir)], capture_stdout=True,
                                       capture_stderr=True, check=False)
        if check.returncode != 0:
            raise ClusterError(f"nginx -t refused the config:\n{check.stderr.decode()}")
        self.nginx = await trio.lowlevel.open_process(
            [self._nginx_bin, "-c", str(conf), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ready = trio.Event()
        nursery.start_soon(self._read_nginx, self.nginx, ready)
        with trio.fail_after(self.start_timeout):
            await ready.wait()
        if self.nginx.returncode is not None:
            raise ClusterError("nginx exited at start:\n" + "\n".join(self.nginx_output))

    async def _read_nginx(self, process: trio.Process, ready: trio.Event) -> None:
        assert process.stderr is not None
        buffer = b""
        try:
            while chunk := await process.stderr.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    self.nginx_output.append(line)
                    if "start worker processes" in line:
                        ready.set()
                    # A reload is done when the old worker stopped accepting (it lingers
                    # for the connections it still carries).
                    if "gracefully shutting down" in line:
                        self._workers_started += 1
                        self._workers_changed.set()
                        self._workers_changed = trio.Event()
            await process.wait()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            ready.set()

    def _engine_command(self, node: EngineNode) -> list[str]:
        data_dir = self.workdir / node.name
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pubquiz_engine.cli", "serve",
            "--host", "127.0.0.1", "--port", str(node.port), "--node-id", node.name,
            "--public-url", node.public_url, "--data-dir", str(data_dir),
            "--database-url", self.database_url, "--redis-url", self.redis_url,
            "--redis-prefix", self.redis_prefix, "--lease-ttl-ms", str(self.lease_ttl_ms),
            "--trust-forwarded-for",
        ]
        if self.operator_key is not None:
            command += ["--operator-key", self.operator_key]
        return command + self.engine_args

    async def start_node(self, node: EngineNode) -> None:
        """Start ``node``'s engine (again, after a stop) on its port; return once ready."""
        assert self._nursery is not None, "start() first"
        if node.alive:
            raise ClusterError(f"engine {node.name} is already running")
        node.starts += 1
        node.output.clear()
        process = await trio.lowlevel.open_process(
            self._engine_command(node), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        node.process = process
        ready = trio.Event()
        self._nursery.start_soon(self._read_engine, node, process, ready)
        with trio.fail_after(self.start_timeout):
            await ready.wait()
        if process.returncode is not None:
            raise ClusterError(f"engine {node.name} exited at start ({process.returncode}):\n"
                               + "\n".join(node.output))
        self._changed(node)

    @staticmethod
    def _changed(node: EngineNode) -> None:
        node.changed.set()
        node.changed = trio.Event()

    async def _read_engine(self, node: EngineNode, process: trio.Process,
                           ready: trio.Event) -> None:
        assert process.stdout is not None
        log: TextIO | None = None
        if self.log_files:
            # Line-buffered: a failure report reads the file while the node still runs.
            log = (self.workdir / f"{node.name}.log").open("a", encoding="utf-8", buffering=1)
        buffer = b""
        try:
            while chunk := await process.stdout.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    node.output.append(line)
                    if log is not None:
                        log.write(line + "\n")
                    if not ready.is_set() and '"listening on' in line:
                        ready.set()
                    if '"state logged' in line:
                        node.state_logged.set()
                        node.state_logged = trio.Event()
            await process.wait()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            if log is not None:
                log.close()
            ready.set()  # an engine that died before listening: start_node sees its code
            if process.returncode is not None and node.process is process:
                self._changed(node)

    async def reload_nginx(self, routed: Sequence[str]) -> None:
        """Put only ``routed`` in the entry point's ring, the others drained (still reachable
        at their own address): a changed instance list. Regenerates the site and reloads
        nginx (SIGHUP, its own graceful reload: connections already open stay on their old
        worker). Returns once the old worker stopped accepting: new connections get the new
        site."""
        if self.nginx is None or self.nginx.returncode is not None:
            raise ClusterError("nginx is not running")
        self.routed = list(routed)
        (self.workdir / "site.conf").write_text(self.site())
        started = self._workers_started
        self.nginx.send_signal(signal.SIGHUP)
        with trio.fail_after(self.start_timeout):
            while self._workers_started == started:
                await self._workers_changed.wait()

    async def signal_node(self, node: EngineNode, signum: int) -> None:
        """Send ``signum`` to ``node``'s engine (SIGKILL: kill -9) and wait until it exited."""
        process = node.process
        if process is None or process.returncode is not None:
            raise ClusterError(f"engine {node.name} is not running")
        process.send_signal(signum)
        with trio.fail_after(self.stop_timeout):
            await process.wait()

    async def log_state(self, *, timeout: float = 10) -> None:
        """Have every running engine log its sessions and their members' connections
        (SIGUSR1, ``Engine.log_state``) and return once each has (or after ``timeout``): what
        each client was left with, in the logs, before a failed test lets its clients go."""
        with trio.move_on_after(timeout):
            for node in self.nodes:
                if node.alive and node.process is not None:
                    logged = node.state_logged
                    node.process.send_signal(signal.SIGUSR1)
                    await logged.wait()

    async def restart_node(self, node: EngineNode) -> None:
        """A graceful restart: SIGTERM, wait for the exit, start, wait until ready."""
        await self.signal_node(node, signal.SIGTERM)
        await self.start_node(node)

    async def aclose(self) -> None:
        """Stop every engine (SIGTERM, SIGKILL after ``stop_timeout``), then nginx."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as stopping:
                for node in self.nodes:
                    if node.alive:
                        stopping.start_soon(self._stop, node.process)
            if self.nginx is not None and self.nginx.returncode is None:
                await self._stop(self.nginx)

    async def _stop(self, process: trio.Process | None) -> None:
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.stop_timeout):
            await process.wait()
            return
        process.kill()
        await process.wait()


def cluster_summary(cluster: LocalCluster) -> str:
    """What ``pubquiz-engine cluster`` prints once everything runs."""
    lines = [
        f"pubquiz cluster: {len(cluster.nodes)} engines behind nginx "
        f"(work directory {cluster.workdir})",
        f"  pages          {cluster.http_url}/   (host: {cluster.http_url}/host)",
        f"  WebSocket      {cluster.entry_url}?code=CODE",
        f"  health         {cluster.http_url}/health",
    ]
    for node in cluster.nodes:
        lines.append(f"  engine {node.name:<6}  {node.public_url}  (direct {node.http_url}, "
                     f"metrics {node.http_url}/metrics, pid "
                     f"{node.process.pid if node.process else '-'})")
    lines.append(f"  nginx config   {cluster.workdir / 'site.conf'}")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


__all__ = ["ClusterError", "EngineNode", "LocalCluster", "cluster_summary", "free_port"]
