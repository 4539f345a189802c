"""Same-run baselines: minimal servers on the toy protocol, driven by one Node load generator.

The servers live in ``bench/baselines/`` (copied from ``shared/perf-baselines/servers`` for
this project): ``node_ws`` (Node.js + ``ws``), ``node_sio`` (Node.js + Socket.IO, the seed
application's stack), ``trio_ws`` (trio + trio-websocket, the idiomatic trio server), and
``pubquiz_transport`` (the toy protocol on this engine's own transport,
``bench/transport/quizproto_server.py``: the engine's I/O layer without its game). The load
generator is ``bench/baselines/loadgen.js``: N WebSocket clients (``leanws.js``, the same
client as the engine's load generator ``worker.js``; ``--ws-client ws``: the ``ws`` package's)
join, then client 0 asks for K broadcasts of a ~150-byte msgpack frame; every client answers
every broadcast and the server acks each answer. The figures: delivered broadcast messages/s,
answer RTT p50/p99 under that burst, server RSS per connection, server and load generator CPU.

Rules this module keeps:

1. The same machine, the same run and the same pinning as the engine's scenario: the server on
   ``plan.engine``, the load generator on ``plan.loadgen``, so an engine figure divided by a
   baseline figure is a ratio that holds on a noisy machine.
2. Each server is a fresh process on 127.0.0.1 and a free port, ready when it prints
   ``READY``; it is stopped by its own PID (SIGTERM, then SIGKILL), whatever happens.
3. Bounded: readiness, the load generator's own phases (it exits by itself) and the whole
   measurement each have a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from bench.harness.engine import free_port
from bench.harness.loadgen import NODE_MODULES, REPO, node_binary
from bench.harness.system import CorePlan

BASELINE_DIR = REPO / "bench" / "baselines"

#: name -> (description, command after the interpreter, load generator mode).
BASELINES: dict[str, tuple[str, list[str], str]] = {
    "node_ws": ("Node.js 20 + ws 8", ["node", "node_ws_server.js"], "ws"),
    "node_sio": ("Node.js 20 + Socket.IO 4 (the seed's stack)", ["node", "node_sio_server.js"],
                 "sio"),
    "trio_ws": ("trio + trio-websocket", ["python", "trio_ws_server.py"], "ws"),
    "pubquiz_transport": ("this engine's transport, toy protocol (no game)",
                          ["python", str(REPO / "bench" / "transport" / "quizproto_server.py")],
                          "ws"),
}
DEFAULT_BASELINES = ("node_ws", "node_sio", "trio_ws")


def default_k(n: int) -> int:
    """Broadcasts per measured round: about 50,000 delivered frames, at least 5."""
    return max(5, 50_000 // max(1, n))


def _command(name: str, port: int, plan: CorePlan) -> list[str]:
    _, (interpreter, script), _ = BASELINES[name]
    exe = node_binary() if interpreter == "node" else sys.executable
    path = script if os.path.isabs(script) else str(BASELINE_DIR / script)
    return [*plan.prefix(plan.engine), exe, path, str(port)]


async def _wait_ready(process: trio.Process, timeout: float) -> None:
    stdout = process.stdout
    assert stdout is not None
    seen = b""
    with trio.fail_after(timeout):
        while b"READY" not in seen:
            chunk = await stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"baseline server exited before READY: {seen[-500:]!r}")
            seen += chunk


async def run_baseline(name: str, plan: CorePlan, *, n: int, k: int | None = None,
                       conc: int | None = None, timeout: float = 180.0) -> dict[str, Any]:
    """One fresh ``name`` server, one ``loadgen.js`` run with ``n`` clients, ``conc``
    connection attempts in flight (default: loadgen.js's 256): its figures."""
    description, _, mode = BASELINES[name]
    k = k or default_k(n)
    port = free_port()
    env = {**os.environ, "PERF_NODE_MODULES": str(NODE_MODULES),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = await trio.lowlevel.open_process(_command(name, port, plan), stdout=-1,
                                              stderr=-2, env=env, cwd=str(BASELINE_DIR))
    try:
        await _wait_ready(server, 30)
        loadgen = [*plan.prefix(plan.loadgen), node_binary(), str(BASELINE_DIR / "loadgen.js"),
                   "--port", str(port), "--n", str(n), "--k", str(k), "--pid", str(server.pid),
                   "--mode", mode, "--timeout", "60000", "--ctimeout", "90000"]
        if conc is not None:
            loadgen += ["--conc", str(conc)]
        with trio.fail_after(timeout):
            result = await trio.run_process(loadgen, capture_stdout=True, capture_stderr=True,
                                            check=False, env=env, cwd=str(BASELINE_DIR))
    finally:
        with trio.CancelScope(shield=True):
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                with trio.move_on_after(5):
                    await server.wait()
                if server.poll() is None:
                    server.kill()
                    await server.wait()
    lines = [line for line in result.stdout.decode(errors="replace").splitlines()
             if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"baseline {name}: no result from loadgen.js (exit "
                           f"{result.returncode}): {result.stderr.decode(errors='replace')[-500:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    run = raw.get("run") or {}
    return {
        "name": name, "description": description, "n": n, "k": k,
        "ok": bool(run.get("ok")) and raw.get("connected") == n,
        "delivered_per_s": _round(run.get("bcast_msgs_per_s")),
        "rtt_p50_ms": _round(run.get("rtt_p50_ms"), 2),
        "rtt_p99_ms": _round(run.get("rtt_p99_ms"), 2),
        "rss_per_connection_kib": _round(raw.get("rss_per_conn_kib"), 2),
        "connect_s": _round(raw.get("connect_s"), 3),
        "joins_per_s": _round(n / raw["connect_s"]) if raw.get("connect_s") else None,
        "connect_in_flight": raw.get("conc"),
        "connect_server_cpu_pct": _round(raw.get("connect_server_cpu_pct"), 1),
        "connect_loadgen_cpu_pct": _round(raw.get("connect_loadgen_cpu_pct"), 1),
        "server_cpu_per_join_ms": _round(
            raw["connect_server_cpu_pct"] / 100 * raw["connect_s"] / n * 1000, 3)
        if raw.get("connect_server_cpu_pct") is not None and raw.get("connect_s") else None,
        "server_system_cpu_per_join_ms": _round(
            raw["connect_server_sys_pct"] / 100 * raw["connect_s"] / n * 1000, 3)
        if raw.get("connect_server_sys_pct") is not None and raw.get("connect_s") else None,
        "server_cpu_pct": _round(run.get("server_cpu_pct"), 1),
        "loadgen_cpu_pct": _round(run.get("loadgen_cpu_pct"), 1),
        "loadgen_client": raw.get("client"),
        "error": raw.get("error"),
    }


def _round(value: Any, digits: int = 0) -> Any:
    if value is None:
        return None
    return round(float(value), digits) if digits else round(float(value))


async def run_baselines(names: Sequence[str], plan: CorePlan, *, n: int,
                        k: int | None = None, conc: int | None = None) -> list[dict[str, Any]]:
    """Each baseline in turn (never two at once: they would share the server's core)."""
    results = []
    for name in names:
        try:
            results.append(await run_baseline(name, plan, n=n, k=k, conc=conc))
        except (RuntimeError, OSError, trio.TooSlowError) as exc:
            results.append({"name": name, "description": BASELINES[name][0], "n": n,
                            "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return results


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs`` rounded to 2 digits, None when either is missing or zero."""
    if not ours or not theirs:
        return None
    return round(ours / theirs, 2)


def baseline_rows(results: Sequence[dict[str, Any]], *, key: str, ours: float | None,
                  label: str, unit: str = "", higher_is_better: bool = True
                  ) -> list[tuple[str, str, str]]:
    """Table rows: each baseline's ``key`` figure and our figure as a ratio to it."""
    rows = []
    for r in results:
        value = r.get(key)
        if value is None:
            rows.append((f"  baseline {r['name']}: {label}", "failed",
                         str(r.get("error") or "no figure")))
            continue
        q = ratio(ours, value)
        sense = "ours / theirs" if higher_is_better else "ours / theirs (lower is better)"
        rows.append((f"  baseline {r['name']}: {label}", f"{value:,}{unit}",
                     f"ratio {q if q is not None else '-'} ({sense}); {r['description']}, "
                     f"n={r['n']}"))
    return rows
