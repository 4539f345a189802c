"""The scenarios: each starts its own engine process, drives it, and returns its figures.

Every scenario is ``async def name(ctx, params) -> Outcome``: ``ctx`` says where things run
(core plan, work directory), ``params`` are the command's options (documented in ``run.py``
and ``bench/README.md``). The outcome holds the figures (for the JSON file), the table rows,
and problems seen (errors, disconnects, missing answers), which the report prints loudly.

Rules this module keeps:

1. Hosts and the operator use the engine's thin client (``pubquiz_engine.client``); the bulk
   players are the load generator's lean clients in worker processes.
2. A latency starts when the coordinator hands a request to its socket and ends when the last
   player concerned has the frame (``time.monotonic``, shared by all processes).
3. Nothing waits unboundedly: every wait has a timeout derived from the scenario's size.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from bench.harness.baselines import baseline_rows, ratio, run_baselines
from bench.harness.engine import OPERATOR_KEY, EngineProcess, engine_process
from bench.harness.loadgen import LoadGen, PlayerSpec, QuestionReceipt, open_loadgen
from bench.harness.quizzes import bench_quiz
from bench.harness.report import Row, fmt
from bench.harness.stats import rate, summarize
from bench.harness.system import (
    CorePlan,
    loopback_addresses,
    machine_busy_seconds,
    private_postgres,
    self_cpu_seconds,
)
from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import CloseCode
from pubquiz_engine.protocol import messages as m

now = time.monotonic


@attrs.define
class Context:
    plan: CorePlan
    work_dir: Path


@attrs.define
class Outcome:
    figures: dict[str, Any] = attrs.field(factory=dict)
    rows: list[Row] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)


# --- shared steps ------------------------------------------------------------------------------


async def create_sessions(url: str, count: int, *, quiz: dict[str, Any] | None = None,
                          quiz_path: str | None = None, mode: str = "solo",
                          options: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``count`` sessions created through the protocol by an operator: (code, host token)."""
    sessions = []
    async with open_client(url) as operator:
        for _ in range(count):
            created = await operator.create_session(OPERATOR_KEY, quiz=quiz, quiz_path=quiz_path,
                                                    mode=mode, options=options)
            sessions.append((created.code, created.host_token))
    return sessions


@contextlib.asynccontextmanager
async def hosts_for(url: str, sessions: Sequence[tuple[str, str]]) -> AsyncIterator[list[Client]]:
    """One host client attached to each session."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for code, token in sessions:
            client = await stack.enter_async_context(open_client(url))
            await client.host(code, token)
            clients.append(client)
        yield clients


def address_count(connections: int, requested: int | None) -> int:
    """Loopback source addresses: as asked, else one per 1,000 connections (1..250)."""
    if requested is not None:
        return max(1, min(250, requested))
    return max(1, min(250, math.ceil(connections / 1000)))


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The workers' ``report`` events added up (lists concatenated, counters summed)."""
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    types: Counter[str] = Counter()
    merged: dict[str, Any] = {"frames": 0, "frame_bytes": 0, "sent": 0, "ended": 0,
                              "connected": 0, "pending": 0, "ack_ms": [], "acked": [],
                              "questions": []}
    firsts, lasts = [], []
    for r in reports:
        for key in ("frames", "frame_bytes", "sent", "ended", "connected", "pending"):
            merged[key] += r[key]
        merged["ack_ms"] += r["ack_ms"]
        merged["acked"] += r["acked"]
        merged["questions"] += r["questions"]
        errors.update(r["errors"])
        closes.update(r["closes"])
        types.update(r["types"])
        if r["first_frame"] is not None:
            firsts.append(r["first_frame"])
            lasts.append(r["last_frame"])
    merged["errors"] = dict(errors)
    merged["closes"] = dict(closes)
    merged["types"] = dict(types)
    merged["first_frame"] = min(firsts) if firsts else None
    merged["last_frame"] = max(lasts) if lasts else None
    return merged


def check_clean(outcome: Outcome, merged: dict[str, Any], *, joined: int, expected: int,
                failed: dict[str, int], expected_closes: frozenset[str] = frozenset(),
                expected_errors: frozenset[str] = frozenset()) -> None:
    """Record connection failures, unexpected disconnects and error replies as problems
    (close codes and error codes the scenario expects are left out)."""
    if joined != expected or failed:
        outcome.problems.append(f"{expected - joined} of {expected} players did not join: "
                                f"{failed}")
    closes = {k: v for k, v in merged["closes"].items() if k not in expected_closes}
    if closes:
        outcome.problems.append(f"connections closed by the engine: {closes}")
    errors = {k: v for k, v in merged["errors"].items() if k not in expected_errors}
    if errors:
        outcome.problems.append(f"error replies / client errors: {errors}")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class CpuWindow:
    """CPU used by the engine and the load generator between ``start()`` and ``stop()``."""

    def __init__(self, engine: EngineProcess, loadgen: LoadGen) -> None:
        self.engine = engine
        self.loadgen = loadgen
        self.t0 = self.e0 = self.s0 = self.l0 = self.c0 = self.m0 = 0.0
        self.figures: dict[str, Any] = {}

    def start(self) -> None:
        self.t0, (self.e0, self.s0) = now(), self.engine.cpu_times()
        self.l0 = self.loadgen.cpu_seconds()
        self.c0, self.m0 = self_cpu_seconds(), machine_busy_seconds()

    def stop(self) -> dict[str, Any]:
        wall = now() - self.t0
        engine_all, engine_kernel = self.engine.cpu_times()
        engine, engine_system = engine_all - self.e0, engine_kernel - self.s0
        workers = self.loadgen.cpu_seconds() - self.l0
        coordinator = self_cpu_seconds() - self.c0
        busy = machine_busy_seconds() - self.m0

        def pct(seconds: float) -> float:
            return round(100 * seconds / wall, 1)

        self.figures = {
            "wall_s": round(wall, 3),
            "engine_cpu_pct": pct(engine),
            "engine_system_cpu_pct": pct(engine_system),
            "loadgen_cpu_pct": pct(workers + coordinator),
            "loadgen_workers_cpu_pct": pct(workers),
            "coordinator_cpu_pct": pct(coordinator),
            # Everything else on the machine in the same window: the noise next to our figures.
            "other_processes_cpu_pct": pct(max(0.0, busy - engine - workers - coordinator)),
        }
        return self.figures


def cpu_row(cpu: dict[str, Any], cores: dict[str, str]) -> Row:
    return ("CPU in the window: engine / load gen / others",
            f"{cpu['engine_cpu_pct']}% / {cpu['loadgen_cpu_pct']}% / "
            f"{cpu['other_processes_cpu_pct']}%",
            f"engine cores {cores['engine']}, load generator cores {cores['loadgen']}; "
            "100% = one core")


# --- connections -------------------------------------------------------------------------------


async def connections(ctx: Context, p: dict[str, Any]) -> Outcome:
    """N players connect and join; time to connect all, engine RSS per connection, then one
    question broadcast to all of them.

    ``ping_only``: each player sends a ``ping`` instead of its join and stays connected, not
    a member of any session (no broadcast then): the connection with one request each way,
    as a baseline's "join" is (an echo), against the engine's full join of the other runs.
    """
    out = Outcome()
    # The rows' words: each player's request and its reply, the players after it, and what
    # the engine's CPU is divided by.
    join_what, reply_what, players_what, per_what = (
        ("ping", "pong", "pinged, no join", "connection + ping") if p["ping_only"]
        else ("join", "welcome", "joined", "join"))
    n: int = p["n"]
    per: int = p["per_session"]
    s = math.ceil(n / per)
    addresses = loopback_addresses(address_count(n, p["addresses"]))
    async with engine_process(ctx.plan, ctx.work_dir / "engine") as engine:
        sessions = await create_sessions(engine.url, s, quiz=bench_quiz(p["broadcasts"]),
                                         mode="solo", options={"max_participants": per})
        players: list[PlayerSpec] = [(sessions[i % s][0], f"p{i}", None) for i in range(n)]
        async with hosts_for(engine.url, sessions) as hosts, \
                open_loadgen(ctx.plan, port=engine.port, players=players,
                             workers=p["workers"], addresses=addresses, client=p["client"],
                             connect_concurrency=p["concurrency"],
                             ping_only=p["ping_only"]) as lg:
            await trio.sleep(0.5)  # let the engine's start-up garbage settle before the baseline
            rss_before = engine.rss_kib()
            health_before = await engine.health()
            cpu = CpuWindow(engine, lg)
            cpu.start()
            ready = await lg.go(timeout=60 + n / 50)
            cpu.stop()
            joined = sum(r["joined"] for r in ready)
            failed: Counter[str] = Counter()
            retried: Counter[str] = Counter()  # retryable join refusals the players retried
            for r in ready:
                failed.update(r["failed"])
                retried.update(r.get("join_retries", {}))
            window = max(r["finished"] for r in ready) - min(r["started"] for r in ready)
            handshake = summarize(x for r in ready for x in r["handshake_ms"])
            join = summarize(x for r in ready for x in r["join_ms"])
            await trio.sleep(p["settle"])
            rss_after = engine.rss_kib()
            health = await engine.health()
            per_conn = (rss_after - rss_before) / joined if joined else None

            # Then (not with ``ping_only``: nobody is a member) one question to everyone,
            # ``broadcasts`` times, and the floors it is held to.
            bcast = None if p["ping_only"] else await _broadcast_to_all(
                ctx, p, engine, lg, hosts, sessions, joined, out)
            merged = merge_reports(await lg.report())
        check_clean(out, merged, joined=joined, expected=n, failed=dict(failed))
    # The baselines get as many connection attempts in flight as the engine's workers had
    # in all, so that neither rate is one of fewer lanes.
    lanes = p["concurrency"] * p["workers"]
    bases = await run_baselines(p["baselines"], ctx.plan, n=n, conc=lanes) \
        if p["baselines"] else []
    joins_per_s = rate(joined, window)
    cpu_per_join = (cpu.figures["engine_cpu_pct"] / 100 * window / joined * 1000
                    if joined and cpu.figures.get("engine_cpu_pct") is not None else None)
    system_per_join = (cpu.figures["engine_system_cpu_pct"] / 100 * window / joined * 1000
                       if joined and cpu.figures.get("engine_system_cpu_pct") is not None
                       else None)
    out.figures = {
        "connections": n, "sessions": s, "per_session": per, "workers": p["workers"],
        "source_addresses": len(addresses), "joined": joined, "failed": dict(failed),
        "join_retries": dict(retried),
        "connect_all_s": round(window, 3), "joins_per_s": rate(joined, window),
        "engine_rss_before_kib": rss_before, "engine_rss_after_kib": rss_after,
        "engine_rss_per_connection_kib": round(per_conn, 2) if per_conn is not None else None,
        "handshake_ms": handshake, "join_ms": join, "health_before": health_before,
        "health_after": health, "cpu_connect": cpu.figures, "ping_only": p["ping_only"],
        **(bcast.figures if bcast is not None else {}),
        "engine_exit_code": engine.exit_code, "client": p["client"], "baselines": bases,
        "engine_cpu_per_join_ms": round(cpu_per_join, 3) if cpu_per_join is not None else None,
        "engine_system_cpu_per_join_ms": round(system_per_join, 3)
        if system_per_join is not None else None,
        "ratio_to_baselines": {b["name"]: {
            "rss_per_connection": ratio(per_conn, b.get("rss_per_connection_kib")),
            "joins_per_s": ratio(joins_per_s, b.get("joins_per_s")),
            "cpu_per_join": ratio(cpu_per_join, b.get("server_cpu_per_join_ms"))}
            for b in bases},
    }
    out.rows = [
        (f"connections {players_what}",
         f"{joined:,} / {n:,}", f"{s} sessions, {len(addresses)} "
         "source addresses" + (f"; retried after a retryable refusal: {dict(retried)}"
                               if retried else "")),
        (f"time to connect and {join_what} all", fmt(window, "s", 2),
         f"{fmt(rate(joined, window))} {join_what}s/s"),
        ("per player: TCP + WebSocket handshake p50 / p99",
         f"{fmt(handshake['p50'], 'ms')} / {fmt(handshake['p99'], 'ms')}",
         f"{p['concurrency']} in flight per worker"),
        (f"per player: {join_what} -> {reply_what} p50 / p99",
         f"{fmt(join['p50'], 'ms')} / {fmt(join['p99'], 'ms')}", ""),
        ("engine RSS before -> after", f"{rss_before / 1024:,.1f} -> {rss_after / 1024:,.1f} MiB",
         ""),
        (f"engine RSS per connection ({players_what})", fmt(per_conn, "KiB"),
         "< 10 KiB (DESIGN 9)"),
        *baseline_rows(bases, key="rss_per_connection_kib", ours=per_conn,
                       label="RSS per connection", unit=" KiB", higher_is_better=False),
        *baseline_rows(bases, key="joins_per_s", ours=joins_per_s,
                       label=f"connect+join rate ({lanes} in flight)", unit="/s"),
        (f"engine CPU per {per_what}", fmt(cpu_per_join, "ms", 3),
         f"the engine's CPU time in the window (its threads too) / players {players_what}"),
        *baseline_rows(bases, key="server_cpu_per_join_ms", ours=cpu_per_join,
                       label="server CPU per connect+join", unit=" ms",
                       higher_is_better=False),
        ("  of which the kernel's (system time)", fmt(system_per_join, "ms", 3),
         "stime: system calls and the network stack on the engine's behalf"),
        *baseline_rows(bases, key="server_system_cpu_per_join_ms", ours=system_per_join,
                       label="server system CPU per connect+join", unit=" ms",
                       higher_is_better=False),
        ("engine /health connections, members", f"{health['connections']:,}, "
         f"{health['members']:,}", "hosts included"),
        cpu_row(cpu.figures, ctx.plan.describe()),
    ]
    if bcast is not None:
        out.rows += bcast.rows
    return out


@attrs.define
class _Broadcasts:
    """What ``_broadcast_to_all`` measured: its JSON figures and its table rows."""

    figures: dict[str, Any]
    rows: list[Row]


async def _broadcast_to_all(ctx: Context, p: dict[str, Any], engine: EngineProcess,
                            lg: LoadGen, hosts: Sequence[Client],
                            sessions: Sequence[tuple[str, str]], joined: int,
                            out: Outcome) -> _Broadcasts:
    """``connections``' second half: one question to all, ``broadcasts`` times, each timed by
    the engine's write passes, and the ``send()`` floors of the same run they are held to."""
    n: int = p["n"]
    per: int = p["per_session"]
    # One question to everyone, ``broadcasts`` times: every host starts its session
    # (then opens the next question) at once, and each question's write passes are
    # read off /health around it alone. The first is the one timed at the clients.
    handoffs: list[dict[str, Any]] = []
    sent: dict[str, float] = {}
    step_timeout = 30 + n / 200

    async def step(host: Client, code: str, message: type[m.Message]) -> None:
        sent[code] = now()
        await host.request(message)

    async def all_hosts(message: type[m.Message]) -> None:
        async with trio.open_nursery() as nursery:
            for host, (code, _) in zip(hosts, sessions, strict=True):
                nursery.start_soon(step, host, code, message)

    receipts: dict[str, QuestionReceipt] = {}
    all_ms: float | None = None
    per_session: dict[str, Any] = {}
    frames_seen = 0
    for q in range(p["broadcasts"]):
        if q:
            # Close and reveal the last question (each player gets closed, reveal
            # and its own result), and wait until all of it has arrived, so that
            # the next question's passes are its own.
            await all_hosts(m.Close)
            await all_hosts(m.Reveal)
            counts = await lg.wait_counts(frames=frames_seen + 3 * joined,
                                          timeout=step_timeout)
            if not counts["reached"]:
                out.problems.append(f"question {q - 1}'s close and reveal not all "
                                    f"delivered: {counts}")
                break
        else:
            frames_seen = (await lg.wait_counts(timeout=0))["frames"]
        health_start = await engine.health()
        await all_hosts(m.Next if q else m.Start)
        got = {code: await lg.wait_question(code, q, timeout=step_timeout)
               for code, _ in sessions}
        health_broadcast = await engine.health()
        handoff = _handoff(health_start["write_passes"], health_broadcast["write_passes"])
        # Commits of the write-behind in that window: the step's records must commit
        # before its frames leave (output commit), so each commit releases a pass.
        handoff["write_behind_batches"] = (_batches(health_broadcast)
                                           - _batches(health_start))
        handoffs.append(handoff)
        frames_seen += (1 if q == 0 else 4) * joined
        if q == 0:
            receipts = got
            all_ms = ms(max(r.last for r in got.values()) - min(sent.values()))
            per_session = summarize(ms(r.last - sent[c]) for c, r in got.items())
    handoff = handoffs[0]
    typical = _median_handoff(handoffs)
    # The floor measured in the same run: bare send() loops, on the engine's core, to
    # sockets nobody waits on (the floor the target is stated with), then to sockets a
    # process waits on in epoll (as the load generator waits on the engine's).
    floor = await send_floor(ctx.plan, n, out)
    floor_readers = await send_floor(ctx.plan, n, out, readers=True)
    # And over the engine's own connections, its peers the readers (the engine idle):
    # what a bare send() loop costs over the very sockets the broadcasts went to.
    floor_own = await send_floor(ctx.plan, n, out, engine=engine)
    figures = {
        "broadcast_all_ms": all_ms, "broadcast_per_session_ms": per_session,
        "broadcast_engine_handoff": handoff, "send_floor": floor,
        "broadcast_engine_to_floor": _floor_ratio(handoff, floor),
        "send_floor_readers": floor_readers,
        "broadcast_engine_to_floor_readers": _floor_ratio(handoff, floor_readers),
        # Every question's passes (the first is the one above), and their median's ratios:
        # the median of several broadcasts against the floor's median of five loops.
        "broadcast_engine_handoffs": handoffs, "broadcast_median_handoff": typical,
        "broadcast_median_to_floor": _floor_ratio(typical, floor),
        "broadcast_median_to_floor_readers": _floor_ratio(typical, floor_readers),
        "send_floor_engine_connections": floor_own,
        "broadcast_median_to_floor_engine_connections": _floor_ratio(typical, floor_own),
        "question_frames_received": sum(r.count for r in receipts.values()),
    }
    rows: list[Row] = [
        ("one question to all: engine write passes", f"{handoff['passes']} passes, "
         f"{fmt(handoff['seconds_total'] * 1000, 'ms')} in all",
         "< 100 ms handed to the kernel (DESIGN 9): first write to last send(), as the engine "
         "sees it; the first question"),
        ("  slowest pass: time, frames", f"{fmt(handoff['slowest_ms'], 'ms')}, "
         f"{handoff['slowest_frames']:,}" if handoff["slowest_ms"] is not None else "-",
         "one pass per scheduler batch: a session's broadcast is one"),
        ("  write-behind commits in that window", f"{handoff['write_behind_batches']}",
         "a step's frames leave when its records commit: one pass per commit"),
        ("every question: write passes' time", ", ".join(
            fmt(h["seconds_total"] * 1000, "ms") for h in handoffs),
         f"median {fmt(typical['seconds_total'] * 1000, 'ms')}, CPU "
         f"{fmt((typical['cpu_seconds_total'] or 0) * 1000, 'ms')}: the ratios below"),
        *_floor_rows(typical, floor, n),
        *_floor_rows(typical, floor_readers, n, "readers"),
        *_floor_rows(typical, floor_own, n, "engine"),
        ("  the first question alone / floor, / floor with readers",
         _ratio_text(_floor_ratio(handoff, floor)) + ", "
         + _ratio_text(_floor_ratio(handoff, floor_readers)), "wall time against wall time"),
        ("one question to all: start -> last player", fmt(all_ms, "ms"),
         "measured at the clients (includes their reading)"),
        ("  per session p50 / max", f"{fmt(per_session['p50'], 'ms')} / "
         f"{fmt(per_session['max'], 'ms')}", f"{per} players each"),
    ]
    return _Broadcasts(figures, rows)


# --- fanout ------------------------------------------------------------------------------------


async def fanout(ctx: Context, p: dict[str, Any]) -> Outcome:
    """S sessions x P players; every host runs ``rounds`` questions (start/next, close,
    reveal). Delivered messages/s at the players and broadcast latency of ``question``; with
    ``answer``, every player answers every question at once (as the baselines' clients do).
    Then the same-run baselines at N = S x P members."""
    out = Outcome()
    s, per, rounds = p["sessions"], p["players"], p["rounds"]
    n = s * per
    answer = bool(p.get("answer"))
    replies_per_round = 1 if answer else 0
    addresses = loopback_addresses(address_count(n, p["addresses"]))
    lockstep = p["pace"] == "lockstep"
    if answer and p["client"] != "node":
        raise ValueError("--answer needs --client node")
    async with engine_process(ctx.plan, ctx.work_dir / "engine",
                              ack_mode=p.get("ack_mode", "durable")) as engine:
        sessions = await create_sessions(engine.url, s, quiz=bench_quiz(rounds), mode="solo",
                                         options={"max_participants": max(per, 1)})
        players = [(sessions[i % s][0], f"p{i}", None) for i in range(n)]
        async with hosts_for(engine.url, sessions) as hosts, \
                open_loadgen(ctx.plan, port=engine.port, players=players, workers=p["workers"],
                             addresses=addresses, client=p["client"],
                             answer_each=answer) as lg:
            ready = await lg.go(timeout=60 + n / 50)
            joined = sum(r["joined"] for r in ready)
            failed: Counter[str] = Counter()
            for r in ready:
                failed.update(r["failed"])
            before = merge_reports(await lg.report())
            sent: dict[tuple[str, int], float] = {}
            step_timeout = 30 + n / 100

            async def drive(host: Client, code: str) -> None:
                for q in range(rounds):
                    sent[(code, q)] = now()
                    await host.request(m.Start if q == 0 else m.Next)
                    if lockstep:
                        await lg.wait_question(code, q, timeout=step_timeout)
                    await host.request(m.Close)
                    await host.request(m.Reveal)

            cpu = CpuWindow(engine, lg)
            cpu.start()
            t0 = now()
            with trio.fail_after(step_timeout * rounds):
                async with trio.open_nursery() as nursery:
                    for host, (code, _) in zip(hosts, sessions, strict=True):
                        nursery.start_soon(drive, host, code)
                for code, _ in sessions:
                    for q in range(rounds):
                        await lg.wait_question(code, q, timeout=step_timeout)
                # The last closed and reveal frames (and replies) are still on their way.
                # Each round: question, closed, reveal and every player's own result (SPEC:
                # every scoring participant gets one, "answered: false" without an answer),
                # and with answering one reply per answer.
                expected = before["frames"] + joined * rounds * (4 + replies_per_round)
                await lg.wait_counts(frames=expected, no_pending=answer, timeout=10)
            cpu.stop()
            merged = merge_reports(await lg.report())
            latencies = [ms(lg.receipts[key].last - t) for key, t in sent.items()]
            firsts = [ms(lg.receipts[key].first - t) for key, t in sent.items()]
        # Answers that reach the engine after the host's close are refused: the game's rule.
        check_clean(out, merged, joined=joined, expected=n, failed=dict(failed),
                    expected_errors=frozenset({"question_closed"}))
    frames = merged["frames"] - before["frames"]
    replies = (merged["types"].get("answer_ack", 0) + merged["types"].get("error", 0)
               - before["types"].get("answer_ack", 0) - before["types"].get("error", 0))
    events = frames - replies
    window = (merged["last_frame"] or t0) - t0
    lat = summarize(latencies)
    first = summarize(firsts)
    bases = await run_baselines(p["baselines"], ctx.plan, n=n) if p["baselines"] else []
    delivered = rate(events, window)
    # On a shared machine the engine may not get its whole core: delivered/s divided by the
    # share of a core it used estimates what one core would carry (as for each baseline).
    capacity = _capacity(delivered, cpu.figures["engine_cpu_pct"])
    for b in bases:
        b["capacity_per_s"] = _capacity(b.get("delivered_per_s"), b.get("server_cpu_pct"))
    out.figures = {
        "sessions": s, "players_per_session": per, "rounds": rounds, "pace": p["pace"],
        "ack_mode": p.get("ack_mode", "durable"), "client": p["client"], "answer": answer,
        "workers": p["workers"], "joined": joined, "frames_delivered": frames,
        "event_frames_delivered": events, "replies_delivered": replies,
        "answers_acked": merged["types"].get("answer_ack", 0)
        - before["types"].get("answer_ack", 0),
        "expected_frames": joined * rounds * (4 + replies_per_round),
        "window_s": round(window, 3),
        "delivered_per_s": delivered, "all_frames_per_s": rate(frames, window),
        "broadcast_last_ms": lat,
        "broadcast_first_ms": first, "cpu": cpu.figures, "types": merged["types"],
        "engine_exit_code": engine.exit_code, "baselines": bases,
        "ratio_to_baselines": {b["name"]: ratio(delivered, b.get("delivered_per_s"))
                               for b in bases},
        "engine_capacity_per_s": capacity,
        "capacity_ratio_to_baselines": {b["name"]: ratio(capacity, b.get("capacity_per_s"))
                                        for b in bases},
    }
    out.rows = [
        ("players (sessions x players)", f"{joined:,} ({s} x {per})",
         f"{rounds} questions each, pace {p['pace']}, client {p['client']}"
         + (f" ({p.get('ws_client', 'lean')} WebSocket client)" if p["client"] == "node" else "")
         + (", every player answers every question" if answer else "")),
        ("frames delivered to players", f"{frames:,}", f"expected "
         f"{joined * rounds * (4 + replies_per_round):,} (question, closed, reveal, result"
         + (", answer reply)" if answer else ")")),
        ("delivered messages/s (question, closed, reveal, result)", fmt(delivered),
         "DESIGN 9: >= bare Node ws in the same run"),
        *baseline_rows(bases, key="delivered_per_s", ours=delivered,
                       label="delivered broadcast msgs/s"),
        ("one-core capacity estimate (msgs/s / engine CPU share)", fmt(capacity),
         "robust to a shared machine"),
        *baseline_rows(bases, key="capacity_per_s", ours=capacity,
                       label="one-core capacity estimate"),
        ("question broadcast: request -> last player p50 / p99",
         f"{fmt(lat['p50'], 'ms')} / {fmt(lat['p99'], 'ms')}", f"max {fmt(lat['max'], 'ms')}"),
        ("question broadcast: request -> first player p50",
         fmt(first["p50"], "ms"), ""),
        cpu_row(cpu.figures, ctx.plan.describe()),
    ]
    if not lockstep:
        out.rows.append(("note", "flood pace", "hosts do not wait for the players: latencies "
                         "include queueing behind earlier rounds"))
    return out


# --- answers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def database_for(store: str, work_dir: Path) -> Any:
    if store == "postgres":
        with private_postgres() as url:
            yield url
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{work_dir / 'pubquiz.sqlite3'}"


async def _answers_once(ctx: Context, p: dict[str, Any], ack_mode: str, store: str,
                        out: Outcome) -> dict[str, Any]:
    per = p["players"]
    work = ctx.work_dir / f"answers-{store}-{ack_mode}"
    addresses = loopback_addresses(address_count(per, p["addresses"]))
    with database_for(store, work) as url:
        async with engine_process(ctx.plan, work, ack_mode=ack_mode, database_url=url) as engine:
            sessions = await create_sessions(engine.url, 1, quiz=bench_quiz(1), mode="solo",
                                             options={"max_participants": per})
            code = sessions[0][0]
            players = [(code, f"p{i}", None) for i in range(per)]
            async with hosts_for(engine.url, sessions) as hosts, \
                    open_loadgen(ctx.plan, port=engine.port, players=players,
                                 workers=p["workers"], addresses=addresses,
                                 client=p["client"]) as lg:
                ready = await lg.go(timeout=60 + per / 50)
                joined = sum(r["joined"] for r in ready)
                await hosts[0].request(m.Start)
                await lg.wait_question(code, 0, timeout=30)
                cpu = CpuWindow(engine, lg)
                share = p["rate"] / len(lg.workers)
                acks_before = await engine.histogram(ACK_HISTOGRAM)
                start_at = now() + 0.5
                cpu.start()
                await lg.command_all({"cmd": "answer_load", "q": 0, "rate": share,
                                      "duration": p["duration"], "start_at": start_at,
                                      "ack_timeout": 10.0})
                done = await lg.collect("answer_load_done", timeout=p["duration"] + 30)
                cpu.stop()
                health = await engine.health()
                acks_after = await engine.histogram(ACK_HISTOGRAM)
                merged = merge_reports(await lg.report())
    lat = summarize(x for d in done for x in d["lat_ms"])
    sent = sum(d["sent"] for d in done)
    acked = sum(d["acked"] for d in done)
    errors: Counter[str] = Counter()
    for d in done:
        errors.update(d["errors"])
    window = max(d["sent_done"] for d in done) - start_at
    if acked != sent:
        out.problems.append(f"answers {store}/{ack_mode}: {sent - acked} of {sent} not acked "
                            f"({dict(errors)})")
    if merged["closes"]:
        out.problems.append(f"answers {store}/{ack_mode}: closes {merged['closes']}")
    return {
        "store": store, "ack_mode": ack_mode, "players": per, "joined": joined,
        "offered_rate": p["rate"], "duration_s": p["duration"], "sent": sent, "acked": acked,
        "achieved_send_rate": rate(sent, window), "errors": dict(errors),
        "ack_ms": lat, "loadgen_lag_ms_p99": max((d["lag_ms_p99"] or 0) for d in done),
        "loadgen_lag_ms_max": max((d["lag_ms_max"] or 0) for d in done), "cpu": cpu.figures,
        "write_behind": health.get("write_behind"), "engine_exit_code": engine.exit_code,
        "engine_ack_within": _shares_within(acks_before, acks_after),
    }


#: The engine's own ack latency (/metrics): an answer's submission in the reader's pass to
#: its ``answer_ack`` queued, so without the load generator, the kernel, or the write pass.
ACK_HISTOGRAM = "pubquiz_ack_latency_seconds"


def _shares_within(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Of the acks between two readings of a histogram: the share within each bucket's bound
    (key: the bound in ms, as text), up to the first bound that holds them all."""
    total = after.get(math.inf, 0.0) - before.get(math.inf, 0.0)
    shares: dict[str, float] = {}
    if total <= 0:
        return shares
    for bound in sorted(after):
        share = (after[bound] - before.get(bound, 0.0)) / total
        shares["inf" if bound == math.inf else f"{bound * 1000:g}"] = round(share, 5)
        if share >= 1.0:
            break
    return shares


def _within_text(shares: dict[str, float]) -> str:
    if not shares:
        return "no acks counted"
    p99 = next((bound for bound, share in shares.items() if share >= 0.99), "inf")
    listed = ", ".join(f"<= {bound} ms {share:.1%}" for bound, share in shares.items()
                       if bound != "inf")
    return f"p99 <= {p99} ms ({listed})"


async def answers(ctx: Context, p: dict[str, Any]) -> Outcome:
    """P players answer one open question at an offered rate (open loop); ack latency for
    each ack mode on each store."""
    out = Outcome()
    runs = []
    for store in p["stores"]:
        for ack_mode in p["ack_modes"]:
            runs.append(await _answers_once(ctx, p, ack_mode, store, out))
    out.figures = {"runs": runs}
    for r in runs:
        lat = r["ack_ms"]
        target = "p99 < 25 ms at 1,000/s" if r["ack_mode"] == "durable" else "p99 < 5 ms"
        out.rows.append((f"ack latency {r['store']} {r['ack_mode']} p50 / p99 / max",
                         f"{fmt(lat['p50'], 'ms')} / {fmt(lat['p99'], 'ms')} / "
                         f"{fmt(lat['max'], 'ms')}", f"{target} (DESIGN 9)"))
        out.rows.append((f"  acked / sent at {fmt(r['offered_rate'])}/s offered",
                         f"{r['acked']:,} / {r['sent']:,}",
                         f"CPU engine {r['cpu']['engine_cpu_pct']}%, load gen "
                         f"{r['cpu']['loadgen_cpu_pct']}%, others "
                         f"{r['cpu']['other_processes_cpu_pct']}%; send lag p99 "
                         f"{fmt(r['loadgen_lag_ms_p99'], 'ms')}"))
        out.rows.append(("  the engine's own: submitted -> ack queued",
                         _within_text(r["engine_ack_within"]),
                         "its /metrics histogram (pubquiz_ack_latency_seconds) over the window: "
                         "no load generator, kernel or write pass in it"))
    return out


# --- quiz night --------------------------------------------------------------------------------


async def _export(database_url: str, code: str) -> dict[str, Any]:
    """The engine's own export of a session (``pubquiz-engine export CODE --format json``)."""
    result = await trio.run_process(
        [sys.executable, "-m", "pubquiz_engine.cli", "export", code, "--format", "json",
         "--database-url", database_url], capture_stdout=True, capture_stderr=True)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


async def quiz_night(ctx: Context, p: dict[str, Any]) -> Outcome:
    """S sessions x 20 players in teams play the sample quiz end to end (host per session);
    per-question latency, and every acked answer is in the store exactly once."""
    out = Outcome()
    s, per, teams = p["sessions"], p["players"], p["teams"]
    n = s * per
    addresses = loopback_addresses(address_count(n, p["addresses"]))
    broadcast_ms: list[float] = []
    open_ms: list[float] = []
    questions_played = Counter[str]()
    with database_for(p["store"], ctx.work_dir / "quiz-night") as url:
        async with engine_process(ctx.plan, ctx.work_dir / "quiz-night", database_url=url,
                                  ack_mode=p["ack_mode"]) as engine:
            sessions = await create_sessions(
                engine.url, s, quiz_path="sample", mode="team",
                options={"close_when_all_answered": True, "max_team_size": per})
            players = [(sessions[i % s][0], f"p{i}", f"Team {(i // s) % teams + 1}")
                       for i in range(n)]
            async with hosts_for(engine.url, sessions) as hosts, \
                    open_loadgen(ctx.plan, port=engine.port, players=players,
                                 workers=p["workers"], addresses=addresses,
                                 client=p["client"], validate=True, auto_answer=True,
                                 answer_delay=(0.0, p["answer_delay"])) as lg:
                ready = await lg.go(timeout=60 + n / 50)
                joined = sum(r["joined"] for r in ready)
                failed: Counter[str] = Counter()
                for r in ready:
                    failed.update(r["failed"])

                async def drive(host: Client, code: str) -> None:
                    asked = now()
                    await host.request(m.Start)
                    while True:
                        event = await host.next_event(timeout=120)
                        if isinstance(event, m.Slide | m.RoundSummary):
                            asked = now()
                            await host.request(m.Next)
                        elif isinstance(event, m.Question):
                            receipt = await lg.wait_question(code, event.q, timeout=60)
                            broadcast_ms.append(ms(receipt.last - asked))
                            closed = await host.next_event(m.Closed, timeout=120)
                            open_ms.append(ms(now() - receipt.first))
                            assert closed.q == event.q
                            questions_played[code] += 1
                            await host.request(m.Reveal)
                            await host.next_event(m.Revealed)
                            asked = now()
                            await host.request(m.Next)
                        elif isinstance(event, m.Ended):
                            return

                cpu = CpuWindow(engine, lg)
                cpu.start()
                with trio.fail_after(p["timeout"]):
                    async with trio.open_nursery() as nursery:
                        for host, (code, _) in zip(hosts, sessions, strict=True):
                            nursery.start_soon(drive, host, code)
                cpu.stop()
                # The players' 'ended' frames, and replies to answers sent at the last moment,
                # may still be on their way when the hosts have 'ended'.
                # Bounded by the slowest ack seen so far (a saturated load generator lags).
                slowest = max(merge_reports(await lg.report())["ack_ms"], default=0.0) / 1000
                await lg.wait_counts(ended=joined, no_pending=True, timeout=10 + 2 * slowest)
                merged = merge_reports(await lg.report())
                # Durable acks were sent after their commit: the store must hold every one now.
                exports: dict[str, dict[str, Any]] = {}
                limit = trio.CapacityLimiter(4)  # one CLI process per session: a few at once

                async def export(code: str) -> None:
                    async with limit:
                        exports[code] = await _export(url, code)

                async with trio.open_nursery() as nursery:
                    for code, _ in sessions:
                        nursery.start_soon(export, code)
    # A team's first answer can close the question (close_when_all_answered): its other
    # members' answers then meet 'question_closed', or 'session_ended' after the last question,
    # and the session's end closes everyone with 4001 (an answer still in flight then gets no
    # reply). Those are the game's rules, not faults.
    refusals = frozenset({"question_closed", "session_ended", "no_reply_before_close_4001"})
    check_clean(out, merged, joined=joined, expected=n, failed=dict(failed),
                expected_closes=frozenset({"4001"}),
                # A delayed answer whose connection the session's end already closed.
                expected_errors=refusals | {"not_connected", "send_on_closed"})
    refused = sum(v for k, v in merged["errors"].items() if k in refusals)
    acked = Counter((a[0], a[1], a[2], a[3]) for a in merged["acked"])
    stored: Counter[tuple[str, int, int, int]] = Counter()
    for code, doc in exports.items():
        for a in doc["answers"]:
            stored[(code, a["participant_id"], a["question"], a["request_id"])] += 1
    missing = sum(1 for k in acked if k not in stored)
    duplicates = sum(c - 1 for c in stored.values() if c > 1) + sum(
        c - 1 for c in acked.values() if c > 1)
    unacked_stored = sum(1 for k in stored if k not in acked)
    if missing or duplicates:
        out.problems.append(f"store check: {missing} acked answers missing, "
                            f"{duplicates} duplicates")
    if merged["sent"] != len(merged["acked"]) + refused:
        out.problems.append(f"{merged['sent'] - len(merged['acked']) - refused} answers sent "
                            "but neither acked nor refused")
    if merged["ended"] != joined:
        out.problems.append(f"{joined - merged['ended']} players never saw 'ended'")
    lat = summarize(broadcast_ms)
    opened = summarize(open_ms)
    ack = summarize(merged["ack_ms"])
    out.figures = {
        "sessions": s, "players_per_session": per, "teams": teams, "store": p["store"],
        "ack_mode": p["ack_mode"], "joined": joined, "questions_per_session":
        dict(questions_played), "broadcast_ms": lat, "question_open_ms": opened,
        "ack_ms": ack, "answers_sent": merged["sent"], "answers_acked": len(merged["acked"]),
        "answers_refused": refused,
        "answers_stored": sum(stored.values()), "acked_missing_from_store": missing,
        "duplicates": duplicates, "stored_not_acked": unacked_stored,
        "errors": merged["errors"], "closes": merged["closes"], "ended_seen": merged["ended"],
        "cpu": cpu.figures, "frames": merged["frames"], "engine_exit_code": engine.exit_code,
        "client": p["client"], "frames_validated": p["client"] == "python",
    }
    q_per = sorted(set(questions_played.values()))
    out.rows = [
        ("players (sessions x players, teams)", f"{joined:,} ({s} x {per}, {teams} teams)",
         f"sample quiz, {p['store']}, {p['ack_mode']}"),
        ("questions played per session", ",".join(str(x) for x in q_per), "all sessions"),
        ("wall time, whole quiz", fmt(cpu.figures["wall_s"], "s"), ""),
        ("question broadcast: host request -> last player p50 / p99",
         f"{fmt(lat['p50'], 'ms')} / {fmt(lat['p99'], 'ms')}", f"max {fmt(lat['max'], 'ms')}"),
        ("question open -> closed (all teams answered) p50 / p99",
         f"{fmt(opened['p50'], 'ms')} / {fmt(opened['p99'], 'ms')}",
         f"players answer after 0..{p['answer_delay']} s"),
        ("answer ack latency p50 / p99 / max",
         f"{fmt(ack['p50'], 'ms')} / {fmt(ack['p99'], 'ms')} / {fmt(ack['max'], 'ms')}",
         f"{ack['n']:,} answers"),
        ("answers sent / acked / refused / stored",
         f"{merged['sent']:,} / {len(merged['acked']):,} / {refused:,} / "
         f"{sum(stored.values()):,}", "refused: question already closed by the team's answer; "
         "stored: pubquiz-engine export --format json"),
        ("acked but missing / duplicated / stored unacked",
         f"{missing} / {duplicates} / {unacked_stored}", "must be 0 / 0 / 0"),
        cpu_row(cpu.figures, ctx.plan.describe()),
    ]
    return out


# --- rapid -------------------------------------------------------------------------------------


async def rapid(ctx: Context, p: dict[str, Any]) -> Outcome:
    """Connect-join-leave churn for ``duration`` seconds: cycles per second, cycle latency, and
    the engine's RSS, file descriptors and connection count before and after (a leak shows)."""
    out = Outcome()
    s = p["sessions"]
    lanes = p["concurrency"] * p["workers"]
    addresses = loopback_addresses(address_count(lanes, p["addresses"]))
    async with engine_process(ctx.plan, ctx.work_dir / "engine") as engine:
        sessions = await create_sessions(engine.url, s, quiz=bench_quiz(1), mode="solo",
                                         options={"max_participants": 10_000})
        # The workers need the session codes only: one placeholder player spec per session.
        specs: list[PlayerSpec] = [(code, f"x{i}", None) for i, (code, _) in enumerate(sessions)]
        async with hosts_for(engine.url, sessions), \
                open_loadgen(ctx.plan, port=engine.port, players=specs * p["workers"],
                             workers=p["workers"], addresses=addresses, client="node") as lg:
            await trio.sleep(0.5)
            rss_before, fds_before = engine.rss_kib(), engine.fd_count()
            health_before = await engine.health()
            cpu = CpuWindow(engine, lg)
            cpu.start()
            await lg.command_all({"cmd": "churn", "duration": p["duration"],
                                  "concurrency": p["concurrency"], "timeout": 10})
            done = await lg.collect("churn_done", timeout=p["duration"] + 60)
            cpu.stop()
            await trio.sleep(1.0)  # let the engine finish closing the last connections
            rss_after, fds_after = engine.rss_kib(), engine.fd_count()
            health_after = await engine.health()
    cycles = sum(d["cycles"] for d in done)
    failed: Counter[str] = Counter()
    for d in done:
        failed.update(d["failed"])
    window = max(d["finished"] for d in done) - min(d["started"] for d in done)
    lat = summarize(x for d in done for x in d["cycle_ms"])
    if failed:
        out.problems.append(f"rapid: {sum(failed.values())} cycles failed: {dict(failed)}")
    leaked = health_after["connections"] - health_before["connections"]
    if leaked:
        out.problems.append(f"rapid: /health counts {leaked} more connections after the churn")
    bases = await run_baselines(p["baselines"], ctx.plan, n=p["baseline_n"], conc=lanes) \
        if p["baselines"] else []
    per_s = rate(cycles, window)
    out.figures = {
        "sessions": s, "workers": p["workers"], "lanes": lanes, "duration_s": p["duration"],
        "cycles": cycles, "failed": dict(failed), "window_s": round(window, 3),
        "cycles_per_s": per_s, "cycle_ms": lat,
        "engine_rss_kib": [rss_before, rss_after], "engine_fds": [fds_before, fds_after],
        "health_before": health_before, "health_after": health_after, "cpu": cpu.figures,
        "baselines": bases, "engine_exit_code": engine.exit_code,
        "ratio_to_baselines": {b["name"]: ratio(per_s, b.get("joins_per_s")) for b in bases},
    }
    out.rows = [
        ("connect-join-leave cycles", f"{cycles:,} in {fmt(window, 's', 2)}",
         f"{lanes} lanes ({p['workers']} workers x {p['concurrency']}), {s} sessions"),
        ("cycles per second", fmt(per_s), "each: handshake, join -> welcome, leave -> ok, "
         "close 1000"),
        *baseline_rows(bases, key="joins_per_s", ours=per_s,
                       label=f"connect+join rate (no leave, {lanes} in flight)", unit="/s"),
        ("cycle latency p50 / p99 / max", f"{fmt(lat['p50'], 'ms')} / "
         f"{fmt(lat['p99'], 'ms')} / {fmt(lat['max'], 'ms')}", ""),
        ("failed cycles", f"{sum(failed.values())}", str(dict(failed)) if failed else ""),
        ("engine RSS before -> after", f"{rss_before / 1024:,.1f} -> {rss_after / 1024:,.1f} "
         "MiB", f"{fmt((rss_after - rss_before) / max(cycles, 1) * 1024, 'bytes')} per cycle"),
        ("engine fds before -> after", f"{fds_before} -> {fds_after}", "must not grow"),
        ("engine /health connections before -> after",
         f"{health_before['connections']} -> {health_after['connections']}", "hosts only"),
        cpu_row(cpu.figures, ctx.plan.describe()),
    ]
    return out


# --- sustained ---------------------------------------------------------------------------------


async def sustained(ctx: Context, p: dict[str, Any]) -> Outcome:
    """A long run at a steady answer rate, the host moving to a new question every
    ``interval`` seconds, optionally with connect-join-leave churn beside it. Quizzes of
    ``quiz_questions`` questions run back to back, as on a real engine: each is a new session
    that the players join, played, then ended (and archived after the engine's linger), so the
    state held is one quiz's, not the whole run's. Every interval: engine RSS, file
    descriptors, tasks and the interval's ack latency (leaks and drift show as a slope)."""
    out = Outcome()
    per, interval, duration = p["players"], p["interval"], p["duration"]
    steps = max(1, math.ceil(duration / interval))
    if steps > 500:
        raise ValueError("duration / interval must be at most 500 questions")
    per_quiz = p.get("quiz_questions") or steps
    addresses = loopback_addresses(address_count(per, p["addresses"]))
    samples: list[dict[str, Any]] = []
    churned: list[dict[str, Any]] = []
    windows: list[dict[str, Any]] = []
    joined = 0
    quizzes = 0
    linger = max(2.0, interval)  # ended quizzes leave memory soon after (default 600 s)
    with database_for(p["store"], ctx.work_dir / "sustained") as url:
        async with engine_process(ctx.plan, ctx.work_dir / "sustained", database_url=url,
                                  ack_mode=p["ack_mode"],
                                  settings={"session_finished_linger": linger}) as engine:
            lobby = await create_sessions(engine.url, 1, quiz=bench_quiz(1), mode="solo",
                                          options={"max_participants": 10_000})
            async with open_loadgen(ctx.plan, port=engine.port,
                                    players=[(lobby[0][0], "x", None)], workers=1,
                                    addresses=addresses, client="node",
                                    lifetime=duration + 600) as churner:
                t_start = now()

                async def sample(q: int, lat: Sequence[float], sent: int, acked: int) -> None:
                    health = await engine.health()
                    samples.append({
                        "t_s": round(now() - t_start, 1), "q": q, "sent": sent,
                        "acked": acked, "ack_ms": summarize(lat),
                        "rss_kib": engine.rss_kib(), "fds": engine.fd_count(),
                        "tasks": health.get("tasks"), "sessions": health.get("sessions")})

                await sample(-1, [], 0, 0)
                if p["churn"]:
                    await churner.command_all({"cmd": "churn", "duration": duration,
                                               "concurrency": p["churn"], "timeout": 10})
                q = 0
                while q < steps:
                    count = min(per_quiz, steps - q)
                    sessions = await create_sessions(engine.url, 1, quiz=bench_quiz(count),
                                                     mode="solo",
                                                     options={"max_participants": 10_000})
                    code = sessions[0][0]
                    players = [(code, f"p{i}", None) for i in range(per)]
                    async with hosts_for(engine.url, sessions) as hosts, \
                            open_loadgen(ctx.plan, port=engine.port, players=players,
                                         workers=p["workers"], addresses=addresses,
                                         client="node", lifetime=duration + 600) as lg:
                        ready = await lg.go(timeout=60 + per / 50)
                        joined = max(joined, sum(r["joined"] for r in ready))
                        cpu = CpuWindow(engine, lg)
                        cpu.start()
                        share = p["rate"] / len(lg.workers)
                        for i in range(count):
                            await hosts[0].request(m.Start if i == 0 else m.Next)
                            await lg.wait_question(code, i, timeout=30)
                            start_at = now() + 0.05
                            await lg.command_all({"cmd": "answer_load", "q": i, "rate": share,
                                                  "duration": interval, "start_at": start_at,
                                                  "ack_timeout": 10.0})
                            done = await lg.collect("answer_load_done", timeout=interval + 30)
                            await hosts[0].request(m.Close)
                            await hosts[0].request(m.Reveal)
                            await sample(q, [x for d in done for x in d["lat_ms"]],
                                         sum(d["sent"] for d in done),
                                         sum(d["acked"] for d in done))
                            q += 1
                        await hosts[0].request(m.End)
                        windows.append(cpu.stop())
                        merged = merge_reports(await lg.report())
                        if merged["closes"]:
                            # The end of the quiz closes everyone with 4100 (session ended).
                            unexpected = {k: v for k, v in merged["closes"].items()
                                          if k != str(int(CloseCode.SESSION_ENDED))}
                            if unexpected:
                                out.problems.append(f"sustained: closes {unexpected}")
                    quizzes += 1
                if p["churn"]:
                    churned = await churner.collect("churn_done", timeout=120)
                health = await engine.health()
    sent = sum(x["sent"] for x in samples)
    acked = sum(x["acked"] for x in samples)
    if acked != sent:
        out.problems.append(f"sustained: {sent - acked} of {sent} answers not acked")
    churn_cycles = sum(d["cycles"] for d in churned)
    churn_failed: Counter[str] = Counter()
    for d in churned:
        churn_failed.update(d["failed"])
    if churn_failed:
        out.problems.append(f"sustained: churn failures {dict(churn_failed)}")
    load = samples[1:]
    half = load[len(load) // 2:] or load
    slope = _slope([x["t_s"] for x in half], [x["rss_kib"] for x in half])
    p99s = [x["ack_ms"]["p99"] for x in load if x["ack_ms"]["p99"] is not None]
    out.figures = {
        "players": per, "joined": joined, "rate": p["rate"], "interval_s": interval,
        "duration_s": duration, "store": p["store"], "ack_mode": p["ack_mode"],
        "churn_lanes": p["churn"], "churn_cycles": churn_cycles,
        "churn_failed": dict(churn_failed), "sent": sent, "acked": acked,
        "samples": samples, "rss_slope_kib_per_min_second_half": slope,
        "ack_p99_ms_first_last": [p99s[0], p99s[-1]] if p99s else None,
        "ack_p99_ms_max_interval": max(p99s) if p99s else None,
        "quiz_questions": per_quiz, "quizzes": quizzes,
        "cpu": _combined(windows), "health_after": health, "engine_exit_code": engine.exit_code,
    }
    first, last = samples[0], samples[-1]
    out.rows = [
        ("load", f"{fmt(p['rate'])} answers/s for {fmt(duration)} s",
         f"{per} players, a new question every {fmt(interval)} s, {p['store']} "
         f"{p['ack_mode']}, churn {p['churn']} lanes"),
        ("answers acked / sent", f"{acked:,} / {sent:,}", ""),
        ("churn cycles (connect-join-leave) beside it", f"{churn_cycles:,}",
         f"failed {sum(churn_failed.values())}"),
        ("engine RSS start -> end", f"{first['rss_kib'] / 1024:,.1f} -> "
         f"{last['rss_kib'] / 1024:,.1f} MiB", f"second-half slope {fmt(slope)} KiB/min"),
        ("engine fds start -> end", f"{first['fds']} -> {last['fds']}", ""),
        ("engine tasks start -> end", f"{first['tasks']} -> {last['tasks']}",
         f"sessions {first['sessions']} -> {last['sessions']}"),
        ("ack p99 first -> last interval", f"{fmt(p99s[0] if p99s else None, 'ms')} -> "
         f"{fmt(p99s[-1] if p99s else None, 'ms')}", f"worst interval "
         f"{fmt(max(p99s) if p99s else None, 'ms')}"),
        cpu_row(_combined(windows), ctx.plan.describe()),
    ]
    for x in load:
        out.rows.append((f"  t={x['t_s']:>6} s q{x['q']}", f"p50 {fmt(x['ack_ms']['p50'], 'ms')}"
                         f" p99 {fmt(x['ack_ms']['p99'], 'ms')}",
                         f"RSS {x['rss_kib'] / 1024:,.1f} MiB, fds {x['fds']}, "
                         f"tasks {x['tasks']}, acked {x['acked']}/{x['sent']}"))
    return out


def _combined(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """CPU windows (one per quiz) as one: each percentage weighted by its window's length."""
    wall = sum(w["wall_s"] for w in windows)
    if not wall:
        return {"wall_s": 0.0, "engine_cpu_pct": None, "loadgen_cpu_pct": None,
                "other_processes_cpu_pct": None}
    keys = [k for k in windows[0] if k.endswith("_pct")]
    return {"wall_s": round(wall, 3), **{
        k: round(sum(w[k] * w["wall_s"] for w in windows) / wall, 1) for k in keys}}


def _handoff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The engine's write passes between two /health readings: how many, their total time,
    and the slowest (when it is one of them: the max is since the engine started)."""
    slowest = after["slowest_seconds"] > before["slowest_seconds"]
    return {
        "passes": after["count"] - before["count"],
        "seconds_total": round(after["seconds_total"] - before["seconds_total"], 6),
        # (older engines do not report it: None)
        "cpu_seconds_total": round(after["cpu_seconds_total"] - before["cpu_seconds_total"], 6)
        if "cpu_seconds_total" in after else None,
        "slowest_ms": round(after["slowest_seconds"] * 1000, 3) if slowest else None,
        "slowest_frames": after["slowest_frames"] if slowest else None,
    }


def _median_handoff(handoffs: list[dict[str, Any]]) -> dict[str, Any]:
    """The typical broadcast of several: the median of their times and, on its own, of their
    CPU times (each a median over the broadcasts, as the floor's are over its loops)."""
    cpu = [h["cpu_seconds_total"] for h in handoffs if h["cpu_seconds_total"] is not None]
    return {
        "broadcasts": len(handoffs),
        "passes": statistics.median(h["passes"] for h in handoffs),
        "seconds_total": statistics.median(h["seconds_total"] for h in handoffs),
        "cpu_seconds_total": statistics.median(cpu) if cpu else None,
    }


def _ratio_text(ratio: dict[str, Any] | None) -> str:
    return "-" if ratio is None else f"{ratio['median']:.2f}x"


def _batches(health: dict[str, Any]) -> int:
    return int(health["write_behind"].get("batches", 0))  # (older engines: not reported)


#: ``bench/broadcast_floor.py``: the bare ``send()`` loop the engine's broadcast is held to.
FLOOR_SCRIPT = Path(__file__).resolve().parents[1] / "broadcast_floor.py"


async def send_floor(plan: CorePlan, n: int, out: Outcome, *, readers: bool = False,
                     engine: EngineProcess | None = None) -> dict[str, Any] | None:
    """``bench/broadcast_floor.py --json`` pinned to the engine's core over ``n`` loopback
    sockets (it raises its open-files limit to fit them where it may; if it cannot, over as
    many as fit, its per-send times scaled to ``n``). ``readers``: with a process waiting in
    epoll on the client sides (``--readers``), as the load generator waits on the engine's.
    ``engine``: over that engine's own connections instead (``--engine PID:PORT``), their
    peers the readers. None (and a problem noted) if it fails."""
    options = (["--engine", f"{engine.pid}:{engine.port}"] if engine is not None
               else ["--readers"] if readers else [])
    command = [*plan.prefix(plan.engine), sys.executable, str(FLOOR_SCRIPT), "--json",
               *options, str(n)]
    try:
        with trio.fail_after(120):
            done = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
        r: dict[str, Any] = json.loads(done.stdout)
    except (OSError, subprocess.CalledProcessError, trio.TooSlowError, ValueError) as exc:
        what = (" over the engine's connections" if engine is not None
                else " with readers" if readers else "")
        out.problems.append(f"send() floor{what} not measured: {exc!r}")
        return None
    if "unavailable" in r:
        return r  # the floor over the engine's connections cannot be taken here: not a problem
    r["scaled_to"] = n
    r["scaled_best_ms"] = round(r["per_send_us_best"] * n / 1000, 3)
    r["scaled_median_ms"] = round(r["per_send_us_median"] * n / 1000, 3)
    r["scaled_cpu_median_ms"] = round(r["per_send_cpu_us_median"] * n / 1000, 3)
    return r


def _floor_ratio(handoff: dict[str, Any], floor: dict[str, Any] | None) -> dict[str, Any] | None:
    """The engine's write passes of the broadcast over the floor for the same N."""
    if floor is None or "unavailable" in floor or not handoff["passes"]:
        return None
    engine_ms = handoff["seconds_total"] * 1000
    cpu_ms = handoff["cpu_seconds_total"] * 1000 if handoff["cpu_seconds_total"] else None
    return {"engine_ms": round(engine_ms, 3),
            "median": round(engine_ms / floor["scaled_median_ms"], 3),
            "best": round(engine_ms / floor["scaled_best_ms"], 3),
            # CPU time against CPU time: what neither side lost to other processes
            "engine_cpu_ms": round(cpu_ms, 3) if cpu_ms is not None else None,
            "cpu_median": round(cpu_ms / floor["scaled_cpu_median_ms"], 3)
            if cpu_ms is not None and floor["scaled_cpu_median_ms"] else None}


#: The three floors of a ``connections`` run: what each row calls it, the option of
#: ``bench/broadcast_floor.py`` that takes it, and what the engine's ratio to it means.
_FLOORS: Final = {
    "bare": ("no reader waiting", "", "<= 1.3x (issue 18)"),
    "readers": ("with a reader waiting", " --readers",
                "what each send() pays when the peer waits in epoll, as the load generator's do"),
    "engine": ("over the engine's own connections", " --engine PID:PORT",
               "the engine's own part of its broadcast: the same sockets, the same readers"),
}


def _floor_rows(handoff: dict[str, Any], floor: dict[str, Any] | None, n: int,
                kind: str = "bare") -> list[Row]:
    what, option, target = _FLOORS[kind]
    if floor is None:
        return [(f"  send() floor ({what}), same run", "-", "not measured (see problems)")]
    if "unavailable" in floor:
        return [(f"  send() floor ({what}), same run", "-",
                 f"not measured on this machine: {floor['unavailable']}")]
    ratio = _floor_ratio(handoff, floor)
    scaled = "" if floor["sockets"] == n else f", scaled to {n:,}"
    return [
        (f"  send() floor ({what}), same run: median (best)",
         f"{fmt(floor['scaled_median_ms'], 'ms')} ({fmt(floor['scaled_best_ms'], 'ms')})",
         f"bench/broadcast_floor.py{option} on the engine's core right "
         f"after: {floor['sockets']:,} sockets, {floor['per_send_us_median']} us per send() "
         f"median{scaled}"),
        ("    engine / floor", f"{ratio['median']:.2f}x (best floor: {ratio['best']:.2f}x)"
         if ratio is not None else "-", f"{target}; wall time against wall time"),
        ("    engine / floor in CPU time", f"{ratio['cpu_median']:.2f}x: "
         f"{fmt(ratio['engine_cpu_ms'], 'ms')} / {fmt(floor['scaled_cpu_median_ms'], 'ms')}"
         if ratio is not None and ratio["cpu_median"] is not None else "-",
         "the passes' CPU time (trio thread) / the floor loop's, scaled: neither counts "
         "time other processes held the core"),
    ]


def _capacity(per_s: float | None, cpu_pct: float | None) -> float | None:
    """``per_s`` scaled to a whole core: what the process would do at 100% of one core,
    assuming its cost per message stays the same (None when either figure is missing)."""
    if not per_s or not cpu_pct:
        return None
    return round(per_s * 100 / cpu_pct, 1)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` against ``xs`` (seconds), per minute."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return round(60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 1)
