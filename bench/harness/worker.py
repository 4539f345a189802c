"""One load generator process: many lean pubquiz.v1 players in one trio run.

Started by ``bench.harness.loadgen`` as ``python -m bench.harness.worker`` (pinned to the load
generator's cores), it talks to the coordinator in JSON lines: the first line on standard input
is the spec, later lines are commands; every line it writes to standard output is an event.

```
coordinator -> worker                      worker -> coordinator
spec {url, players, ...}          ->       {"ev": "hello"}
{"cmd": "go"}                     ->       {"ev": "ready", joined, failed, connect window}
                                           {"ev": "got", code, q, first, last}  (as they happen)
{"cmd": "answer_load", q, rate,   ->       {"ev": "answer_load_done", latencies, errors}
 duration, start_at}
{"cmd": "count"}                  ->       {"ev": "count", frames, ended, pending}
{"cmd": "report"}                 ->       {"ev": "report", frames, questions, acks, closes}
{"cmd": "close"}                  ->       {"ev": "closed"}, then the process exits
```

Rules this module keeps:

1. **Lean players.** A player is a trio-websocket connection and one reader loop: no event
   queue, no per-message objects kept. Frames are sent with the engine's own codec
   (``codec.encode`` of ``messages`` classes); received frames are read with ``msgpack`` (the
   type and a few fields), or fully decoded and validated with ``codec.decode`` when the spec
   says ``validate`` (quiz night checks correctness, fan-out measures throughput).
2. **One clock.** Every timestamp is ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all
   processes of the machine), so a latency can start in the coordinator and end here.
3. **Bounded.** Connecting has a per-player timeout and a concurrency cap; an answer load has
   a fixed count (rate x duration) and waits for its acks at most ``ack_timeout``; the whole
   process ends after ``lifetime`` seconds whatever happens.
4. Connections are spread over the loopback source addresses in the spec (round-robin), so
   that the engine's per-address cap and the ephemeral port range are not the limit.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgpack
import trio
import trio.lowlevel
import trio_websocket

from bench.harness.quizzes import answer_for
from bench.harness.system import raise_nofile_limit
from pubquiz_engine.errors import ProtocolError
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m

SUBPROTOCOL = "pubquiz.v1"
#: A join refused with a retryable error is sent again, up to this many attempts in all.
JOIN_ATTEMPTS = 5
_unpackb = msgpack.unpackb
now = time.monotonic


class Player:
    """One simulated phone: its connection and what the worker needs to know about it."""

    __slots__ = ("code", "index", "name", "next_rid", "participant", "pending", "team", "ws")

    def __init__(self, index: int, code: str, name: str, team: str | None) -> None:
        self.index = index
        self.code = code
        self.name = name
        self.team = team
        self.ws: trio_websocket.WebSocketConnection | None = None
        self.participant: int | None = None
        self.next_rid = JOIN_ATTEMPTS + 1  # rids 1..JOIN_ATTEMPTS are the join's attempts
        #: rid -> (send time, question) of answers waiting for their ack.
        self.pending: dict[int, tuple[float, int]] = {}


class Worker:
    """The players of one process, their counters, and the command loop."""

    def __init__(self, spec: dict[str, Any], out: trio.lowlevel.FdStream) -> None:
        self.spec = spec
        self.out = out
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.addresses: list[str] = spec["local_addresses"]
        self.validate: bool = spec.get("validate", False)
        self.auto_answer: bool = spec.get("auto_answer", False)
        self.answer_delay: tuple[float, float] = tuple(spec.get("answer_delay", (0.0, 0.0)))
        self.rng = random.Random(spec.get("seed", 0))
        self.players = [Player(i, code, name, team)
                        for i, (code, name, team) in enumerate(spec["players"])]
        self.per_session: Counter[str] = Counter(p.code for p in self.players)
        # Counters.
        self.frames = 0
        self.frame_bytes = 0
        self.first_frame: float | None = None
        self.last_frame: float | None = None
        self.types: Counter[str] = Counter()
        #: (code, q) -> [count, first receipt, last receipt] of ``question`` frames.
        self.questions: dict[tuple[str, int], list[Any]] = {}
        self.ack_ms: list[float] = []
        self.acked: list[tuple[str, int | None, int, int]] = []
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.ended = 0
        self.sent = 0
        #: Answers sent and not yet acked or refused; ``all_answered`` is set when it hits 0.
        self.outstanding = 0
        #: Answers scheduled (``auto_answer``) and not sent yet.
        self.scheduled = 0
        self.all_answered = trio.Event()
        self.closing = False
        self.lock = trio.Lock()
        self.nursery: trio.Nursery | None = None
        #: Per player: TCP connect + WebSocket handshake, then join -> welcome (ms).
        self.handshake_ms: list[float] = []
        self.join_ms: list[float] = []
        #: Retryable join refusals retried, by code.
        self.join_retries: Counter[str] = Counter()

    # --- output -------------------------------------------------------------------------------

    async def emit(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        async with self.lock:
            await self.out.send_all(line)

    # --- connecting ---------------------------------------------------------------------------

    async def connect_all(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        limit = trio.CapacityLimiter(self.spec.get("connect_concurrency", 100))
        timeout: float = self.spec.get("connect_timeout", 30.0)
        failures: Counter[str] = Counter()
        connect_ms: list[float] = []
        started = now()

        async def one(p: Player) -> None:
            async with limit:
                t0 = now()
                try:
                    with trio.fail_after(timeout):
                        await nursery.start(self._player, p)
                except trio.TooSlowError:
                    failures["timeout"] += 1
                    return
                except (OSError, trio_websocket.HandshakeError,
                        trio_websocket.ConnectionClosed, _JoinRefused) as exc:
                    failures[_describe(exc)] += 1
                    return
                except ExceptionGroup as group:  # from the player's own nursery
                    failures[_describe(_first_leaf(group))] += 1
                    return
                connect_ms.append((now() - t0) * 1000)

        async with trio.open_nursery() as connecting:
            for p in self.players:
                connecting.start_soon(one, p)
        finished = now()
        connect_ms.sort()
        await self.emit({
            "ev": "ready", "joined": len(connect_ms), "failed": dict(failures),
            "started": started, "finished": finished,
            "connect_ms_p50": connect_ms[len(connect_ms) // 2] if connect_ms else None,
            "connect_ms_max": connect_ms[-1] if connect_ms else None,
            "handshake_ms": self.handshake_ms, "join_ms": self.join_ms,
            "join_retries": dict(self.join_retries),
        })

    async def _player(self, p: Player, *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and join (failures go to the caller of ``start``), then read until closed.

        Each player has its own nursery for trio-websocket's reader task, so that a fault
        inside the library (0.12 answers a server ping with a pong even while closing, which
        wsproto refuses with LocalProtocolError) ends that one player, counted, and not the
        whole worker.
        """
        started = False
        try:
            async with trio.open_nursery() as own:
                await self._connect(own, p)
                task_status.started()
                started = True
                await self._reader(p)
                own.cancel_scope.cancel()
        except ExceptionGroup as group:
            if not started:
                raise
            if not self.closing:
                self.errors[f"client_fault:{_describe(_first_leaf(group))}"] += 1

    async def _connect(self, nursery: trio.Nursery, p: Player) -> None:
        t0 = now()
        address = self.addresses[p.index % len(self.addresses)]
        stream = await trio.open_tcp_stream(self.host, self.port, local_address=address)
        try:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, self.host, "/", subprotocols=[SUBPROTOCOL],
                message_queue_size=64, max_message_size=4 * 1024 * 1024)
        except BaseException:
            await stream.aclose()
            raise
        p.ws = ws
        self.handshake_ms.append((now() - t0) * 1000)
        t1 = now()
        # A retryable refusal (SPEC: ``retryable``, ``retry_after_ms``; e.g. ``unavailable``
        # while the session's last change waits for its commit under load) is retried as a
        # client must, with the next rid, up to JOIN_ATTEMPTS in all (worker.js does the same).
        rid = 1
        await ws.send_message(codec.encode(m.Join(rid=rid, code=p.code, name=p.name,
                                                  team=p.team)))
        for _ in range(100):  # the welcome is the first reply; skip at most a few events
            frame = _unpackb(await ws.get_message())
            if frame.get("rid") != rid:
                continue
            if frame.get("t") == "welcome":
                p.participant = frame.get("participant")
                self.join_ms.append((now() - t1) * 1000)
                return
            if frame.get("t") == "error":
                if frame.get("retryable") and rid < JOIN_ATTEMPTS:
                    self.join_retries[str(frame.get("code"))] += 1
                    await trio.sleep(max(1, frame.get("retry_after_ms") or 100) / 1000)
                    rid += 1
                    await ws.send_message(codec.encode(m.Join(
                        rid=rid, code=p.code, name=p.name, team=p.team)))
                    continue
                await ws.aclose()
                raise _JoinRefused(f"join refused: {frame.get('code')}")
        raise _JoinRefused("join: no welcome in the first 100 frames")

    # --- receiving ----------------------------------------------------------------------------

    async def _reader(self, p: Player) -> None:
        ws = p.ws
        assert ws is not None
        questions = self.questions
        try:
            while True:
                data = await ws.get_message()
                t = now()
                self.frames += 1
                self.frame_bytes += len(data)
                if self.first_frame is None:
                    self.first_frame = t
                self.last_frame = t
                if isinstance(data, str):
                    self.errors["text_frame"] += 1
                    continue
                if self.validate:
                    try:
                        codec.decode(data, direction=m.Direction.SERVER_TO_CLIENT)
                    except ProtocolError as exc:
                        self.errors[f"invalid_frame:{exc.code}"] += 1
                frame = _unpackb(data)
                kind = frame.get("t")
                self.types[kind] += 1
                if kind == "answer_ack":
                    sent = p.pending.pop(frame["rid"], None)
                    if sent is not None:
                        self.ack_ms.append((t - sent[0]) * 1000)
                        self.acked.append((p.code, p.participant, sent[1], frame["rid"]))
                        self._settled()
                elif kind == "error":
                    self.errors[str(frame.get("code"))] += 1
                    if p.pending.pop(frame.get("rid"), None) is not None:
                        self._settled()
                elif kind == "question":
                    q = frame["q"]
                    entry = questions.get((p.code, q))
                    if entry is None:
                        entry = questions[(p.code, q)] = [0, t, t]
                    entry[0] += 1
                    entry[2] = t
                    if entry[0] == self.per_session[p.code]:
                        await self.emit({"ev": "got", "code": p.code, "q": q,
                                         "first": entry[1], "last": t, "count": entry[0]})
                    if self.auto_answer:
                        assert self.nursery is not None
                        self.nursery.start_soon(
                            self._answer_later, p, q, frame["kind"], frame.get("choices"))
                elif kind == "ended":
                    self.ended += 1
        except trio_websocket.ConnectionClosed as exc:
            code = str(getattr(exc.reason, "code", None))
            if not self.closing:
                self.closes[code] += 1
            if p.pending:
                # Answers in flight when the connection closed never get a reply: count them
                # (by close code) so that sent = acked + refused + these always adds up.
                self.errors[f"no_reply_before_close_{code}"] += len(p.pending)
                for _ in range(len(p.pending)):
                    self._settled()
                p.pending.clear()

    # --- answering ----------------------------------------------------------------------------

    def _settled(self) -> None:
        """One sent answer got its ack or its refusal."""
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_answered.set()

    async def send_answer(self, p: Player, q: int, value: Any, at: float | None = None) -> None:
        """Send one answer; its latency counts from ``at`` (when the open loop's schedule
        wanted it sent) when given, so the generator's own lag is not hidden (coordinated
        omission)."""
        ws = p.ws
        if ws is None or ws.closed:
            self.errors["not_connected"] += 1
            return
        rid = p.next_rid
        p.next_rid += 1
        frame = codec.encode(m.Answer(rid=rid, q=q, value=value))
        p.pending[rid] = (now() if at is None else min(at, now()), q)
        self.outstanding += 1
        try:
            await ws.send_message(frame)
        except trio_websocket.ConnectionClosed:
            if p.pending.pop(rid, None) is not None:
                self._settled()
            self.errors["send_on_closed"] += 1
            return
        self.sent += 1

    async def _answer_later(self, p: Player, q: int, kind: str,
                            choices: Sequence[str] | None) -> None:
        lo, hi = self.answer_delay
        self.scheduled += 1  # counts as pending until sent: the coordinator waits for it
        try:
            await trio.sleep(self.rng.uniform(lo, hi))
            await self.send_answer(p, q, answer_for(kind, choices, salt=p.index))
        finally:
            self.scheduled -= 1

    async def answer_load(self, cmd: dict[str, Any]) -> None:
        """Open loop: answer ``i`` leaves at ``start_at + i / rate`` whatever the acks do."""
        q: int = cmd["q"]
        rate: float = cmd["rate"]
        count = int(rate * cmd["duration"])
        start_at: float = cmd["start_at"]
        live = [p for p in self.players if p.ws is not None]
        acks_before = len(self.ack_ms)
        errors_before = Counter(self.errors)
        lag_ms: list[float] = []
        if live:
            for i in range(count):
                target = start_at + i / rate
                # Not trio.sleep_until: trio's clock has its own (random) offset from
                # time.monotonic, the clock shared with the coordinator.
                delay = target - now()
                if delay > 0:
                    await trio.sleep(delay)
                lag_ms.append((now() - target) * 1000)
                p = live[i % len(live)]
                await self.send_answer(p, q, i % 4, target)
        sent_done = now()
        # Wait (bounded) for the outstanding acks.
        with trio.move_on_after(cmd.get("ack_timeout", 10.0)):
            if self.outstanding:
                self.all_answered = trio.Event()
                await self.all_answered.wait()
        lag_ms.sort()
        await self.emit({
            "ev": "answer_load_done", "sent": count if live else 0,
            "acked": len(self.ack_ms) - acks_before,
            "lat_ms": self.ack_ms[acks_before:],
            "unacked": sum(len(p.pending) for p in live),
            "errors": dict(self.errors - errors_before),
            "lag_ms_p99": lag_ms[min(len(lag_ms) - 1, int(len(lag_ms) * 0.99))] if lag_ms else None,
            "lag_ms_max": lag_ms[-1] if lag_ms else None,
            "start_at": start_at, "sent_done": sent_done,
        })

    # --- reports and the command loop ---------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {
            "ev": "report", "frames": self.frames, "frame_bytes": self.frame_bytes,
            "first_frame": self.first_frame, "last_frame": self.last_frame,
            "types": dict(self.types),
            "questions": [[code, q, *entry] for (code, q), entry in self.questions.items()],
            "sent": self.sent, "ack_ms": self.ack_ms, "acked": self.acked,
            "errors": dict(self.errors),
            "closes": dict(self.closes), "ended": self.ended,
            "connected": sum(1 for p in self.players if p.ws is not None and not p.ws.closed),
            "pending": sum(len(p.pending) for p in self.players),
        }

    async def close_all(self) -> None:
        self.closing = True
        limit = trio.CapacityLimiter(200)

        async def one(ws: trio_websocket.WebSocketConnection) -> None:
            async with limit:
                with trio.move_on_after(5):
                    await ws.aclose()

        with trio.move_on_after(30):
            async with trio.open_nursery() as nursery:
                for p in self.players:
                    if p.ws is not None:
                        nursery.start_soon(one, p.ws)


class _JoinRefused(Exception):
    """The engine answered the join with an error (its code is the message)."""


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _JoinRefused) else type(exc).__name__


async def _lines(stream: trio.lowlevel.FdStream) -> Any:
    buffer = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


async def main() -> None:
    raise_nofile_limit()
    stdin = trio.lowlevel.FdStream(0)
    stdout = trio.lowlevel.FdStream(1)
    commands = _lines(stdin)
    spec = await commands.__anext__()
    worker = Worker(spec, stdout)
    with trio.move_on_after(spec.get("lifetime", 600)):
        async with trio.open_nursery() as nursery:
            await worker.emit({"ev": "hello"})
            async for cmd in commands:
                name = cmd["cmd"]
                if name == "go":
                    nursery.start_soon(worker.connect_all, nursery)
                elif name == "answer_load":
                    nursery.start_soon(worker.answer_load, cmd)
                elif name == "report":
                    await worker.emit(worker.report())
                elif name == "count":
                    pending = worker.scheduled + sum(len(p.pending) for p in worker.players)
                    await worker.emit({"ev": "count", "frames": worker.frames,
                                       "ended": worker.ended, "last_frame": worker.last_frame,
                                       "pending": pending})
                elif name == "close":
                    await worker.close_all()
                    await worker.emit({"ev": "closed"})
                    break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
