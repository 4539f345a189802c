"""The checker's clients: players and a host speaking pubquiz.v1 as SPEC describes it.

They are written from ``protocol/SPEC.md``, not from the engine's own client: frames are plain
msgpack maps over trio-websocket, so the history shows exactly the wire. Each client keeps a
``History`` of everything it sent and received, and a small ``View`` (phase, open question,
epoch, last seq) to decide its next step.

A player joins once, then, until the host has finished the quiz, does seeded random steps:
answer the open question, change its answer (a new rid), resend its last answer with the same
rid, answer a question it saw close (a late answer, which must be refused), reconnect (a new
connection, ``resume`` with ``last_seq``) or reload (a new connection that kept only the token:
``last_seq`` 0; with ``rid_restart`` its rid counter starts again at 1, as clients of today's
``main`` do). An answer whose reply never came is resent with the same rid once the player is
back (SPEC 13.6). Requests time out (a frozen engine answers nothing) and the player moves to
another node, with a bounded, jittered back-off, following redirects. At the end every player
resumes once more on a fresh connection.

The host drives the quiz: start, hold each question open for a seeded time (sometimes past its
deadline), reveal, sometimes the leaderboard, next, until the end. It acts on what it has seen
(host commands are not idempotent: SPEC 13.6); a stale view is refreshed by re-attaching.

Rules: every loop is bounded in steps and every wait in time; randomness comes only from the
``random.Random`` each client is given (derived from the run's seed).
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import msgpack
import trio
import trio_websocket

from checker.history import CLOSED, CONNECT, IN, LOST, NOTE, OUT, History

SUBPROTOCOL = "pubquiz.v1"
#: How long a request may wait for its reply before the connection is given up (a paused
#: engine answers nothing; a phone's app would time out too).
REQUEST_TIMEOUT = 3.0
CONNECT_TIMEOUT = 2.0
#: Bounds of every client loop.
MAX_CONNECTIONS = 300
MAX_STEPS = 2000
#: Codes after which a player stops for good.
TERMINAL = frozenset({"bad_token", "kicked", "session_ended", "bad_code", "invalid_name",
                      "session_full"})


class Lost(Exception):
    """The connection ended, or a reply did not come in time."""


@attrs.define
class View:
    """What a client knows of the session, from what it received."""

    phase: str | None = None
    q: int | None = None
    epoch: int | None = None
    last_seq: int = 0
    changed: trio.Event = attrs.Factory(trio.Event)

    def update(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        before = (self.phase, self.q)
        seq = frame.get("seq")
        if kind == "welcome":
            self.epoch = int(frame["epoch"])
            return
        if kind == "state":
            state = frame.get("state") or {}
            self.phase = state.get("phase")
            question = state.get("question")
            self.q = int(question["q"]) if isinstance(question, dict) else None
            self.last_seq = int(frame["seq"])  # a new epoch may number lower (SPEC 13.4)
        elif isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)
            phase = {"question": "question_open", "closed": "question_closed",
                     "reveal": "revealed", "leaderboard": "leaderboard", "slide": "slide",
                     "round_summary": "round_summary", "ended": "finished",
                     "paused": "paused", "unpaused": "question_open"}.get(str(kind))
            if phase is not None:
                self.phase = phase
            if kind == "question":
                self.q = int(frame["q"])
        if (self.phase, self.q) != before:
            self.changed.set()
            self.changed = trio.Event()


class Link:
    """One WebSocket connection of a client: a reader task and request/reply by rid."""

    def __init__(self, client: Client, ws: trio_websocket.WebSocketConnection, conn: int
                 ) -> None:
        self.client = client
        self.ws = ws
        self.conn = conn
        self.closed = trio.Event()
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}

    async def reader(self) -> None:
        client = self.client
        try:
            while True:
                data = await self.ws.get_message()
                if isinstance(data, str):
                    client.record(self.conn, NOTE, {"text_frame": data[:60]})
                    continue
                frame = msgpack.unpackb(data)
                client.record(self.conn, IN, frame)
                client.view.update(frame)
                rid = frame.get("rid")
                if isinstance(rid, int) and rid in self._waiting:  # events carry no rid
                    done, slot = self._waiting.pop(rid)
                    slot.append(frame)
                    done.set()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            code = getattr(reason, "code", None)
            client.record(self.conn, CLOSED, {"code": None if code is None else int(code),
                                              "reason": getattr(reason, "reason", None)})
        finally:
            self.closed.set()
            for done, _ in self._waiting.values():
                done.set()

    async def request(self, frame: dict[str, Any], timeout: float = REQUEST_TIMEOUT
                      ) -> dict[str, Any]:
        """Send ``frame`` (it carries its rid) and return its reply; ``Lost`` if none came."""
        if self.closed.is_set():
            raise Lost("closed")
        rid = int(frame["rid"])
        done = trio.Event()
        slot: list[dict[str, Any]] = []
        self._waiting[rid] = (done, slot)
        self.client.record(self.conn, OUT, frame)
        try:
            await self.ws.send_message(msgpack.packb(frame))
        except trio_websocket.ConnectionClosed:
            raise Lost("closed while sending") from None
        with trio.move_on_after(timeout):
            await done.wait()
        self._waiting.pop(rid, None)
        if slot:
            return slot[0]
        if not self.closed.is_set():
            self.client.record(self.conn, LOST, {"why": f"no reply in {timeout:g} s"})
        raise Lost("no reply")


class Client:
    """What players and the host share: a history, a view, rids, a way to connect."""

    def __init__(self, name: str, rng: random.Random, urls: Callable[[], list[str]],
                 started: float) -> None:
        self.history = History(name)
        self.rng = rng
        self.urls = urls
        self.started = started
        self.view = View()
        self.rids = itertools.count(1)
        self.redirect: str | None = None
        self.conns = 0
        self.counts: dict[str, int] = {}

    def record(self, conn: int, kind: str, frame: dict[str, Any]) -> None:
        self.history.add(round(trio.current_time() - self.started, 4), conn, kind, frame)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def rid(self) -> int:
        return next(self.rids)

    async def backoff(self, attempt: int) -> None:
        """Back off before the next connection attempt (bounded, jittered: SPEC 12)."""
        await trio.sleep(min(0.5, 0.03 * 2 ** min(attempt, 5)) * self.rng.uniform(0.5, 1.0))

    async def over_connection(self, body: Callable[[Link], Awaitable[None]]) -> bool:
        """Open one connection (to the redirect target, or a live node picked at random), run
        ``body`` on it, close it. False when no connection could be made."""
        url = self.redirect
        self.redirect = None
        if url is None:
            urls = self.urls()
            if not urls:
                return False
            url = self.rng.choice(urls)
        self.conns += 1
        conn = self.conns
        self.record(conn, CONNECT, {"url": url})
        ws: trio_websocket.WebSocketConnection | None = None
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await trio_websocket.connect_websocket_url(
                        nursery, url, subprotocols=[SUBPROTOCOL], message_queue_size=4096,
                        max_message_size=8 * 1024 * 1024)
                link = Link(self, ws, conn)
                nursery.start_soon(link.reader)
                try:
                    await body(link)
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            leaf = _only(group)
            if not isinstance(leaf, Lost | OSError | trio.TooSlowError
                              | trio_websocket.HandshakeError
                              | trio_websocket.ConnectionClosed):
                raise
            self._lost(conn, leaf)
            return ws is not None
        except (Lost, OSError, trio.TooSlowError, trio_websocket.HandshakeError,
                trio_websocket.ConnectionClosed) as exc:
            self._lost(conn, exc)
            return ws is not None
        finally:
            if ws is not None:
                # trio-websocket leaves the stream open when the server closed first.
                with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await ws._stream.aclose()
        return True

    def _lost(self, conn: int, exc: BaseException) -> None:
        if not isinstance(exc, Lost):
            self.record(conn, LOST, {"why": type(exc).__name__})

    def follow(self, reply: dict[str, Any]) -> None:
        if reply.get("t") == "redirect":
            self.redirect = str(reply["url"])


def _only(group: BaseExceptionGroup[Any]) -> BaseException:
    """The single leaf of a nested exception group (the group itself if there are several)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


@attrs.define
class Pending:
    """An answer whose reply never came: resent with the same rid once back (SPEC 13.6)."""

    rid: int
    q: int
    value: int


class Player(Client):
    """See the module docstring. ``done`` is set by the host when the quiz is over."""

    def __init__(self, name: str, rng: random.Random, urls: Callable[[], list[str]],
                 started: float, *, code: str, choices: int, rid_restart: bool,
                 done: trio.Event, max_ops: int) -> None:
        super().__init__(name, rng, urls, started)
        self.code = code
        self.choices = choices
        self.rid_restart = rid_restart
        self.done = done
        self.max_ops = max_ops
        self.token: str | None = None
        self.joined = trio.Event()
        self.gave_up: str | None = None
        self.resumed_at_end = False
        self.pending: Pending | None = None
        self.last: Pending | None = None  # the last answer sent (for a same-rid resend)
        self.reload_next = False
        self.ops = 0
        self.join_tries = 0

    async def run(self) -> None:
        for attempt in range(MAX_CONNECTIONS):
            if self.gave_up is not None or self.resumed_at_end:
                break
            final = self.done.is_set()
            made = await self.over_connection(self._final if final else self._connection)
            if self.gave_up is not None or self.resumed_at_end:
                break
            if not made or self.redirect is None:
                await self.backoff(attempt)
        else:
            self.gave_up = self.gave_up or "too many connections"
        self.joined.set()  # never leave the host waiting on a player that gave up

    async def _identify(self, link: Link) -> bool:
        if self.token is None:
            self.join_tries += 1
            name = self.history.client + ("" if self.join_tries == 1 else f"-{self.join_tries}")
            reply = await link.request({"t": "join", "rid": self.rid(), "code": self.code,
                                        "name": name, "team": None})
        else:
            reload, self.reload_next = self.reload_next, False
            if reload:
                self.record(link.conn, NOTE, {"reload": True})
                self.count("reloads")
                if self.rid_restart:
                    self.rids = itertools.count(1)
            reply = await link.request({"t": "resume", "rid": self.rid(), "token": self.token,
                                        "last_seq": 0 if reload else self.view.last_seq})
        if reply.get("t") == "welcome":
            if reply.get("token"):
                self.token = str(reply["token"])
            if self.history.participant is None:
                self.history.participant = reply.get("participant")
            self.joined.set()
            return True
        self.follow(reply)
        if reply.get("t") == "error" and reply.get("code") in TERMINAL:
            self.gave_up = f"{reply.get('code')}"
        return False

    async def _final(self, link: Link) -> None:
        if self.token is None:
            self.gave_up = "never joined"
            return
        if await self._identify(link):
            self.resumed_at_end = True

    async def _connection(self, link: Link) -> None:
        if not await self._identify(link):
            return
        self.count("connections")
        if self.pending is not None:  # resend what may not have arrived, same rid
            p = self.pending
            if self.view.phase == "question_open" and self.view.q == p.q:
                await self._answer(link, p.rid, p.q, p.value, "resend_after_reconnect")
            else:
                self.pending = None
        while self.ops < self.max_ops and not self.done.is_set():
            self.ops += 1
            with trio.move_on_after(self.rng.uniform(0.02, 0.25)):
                await self.done.wait()  # pacing between steps; the end interrupts it
            if link.closed.is_set() or self.done.is_set():
                return
            roll = self.rng.random()
            view = self.view
            if roll < 0.05:
                self.count("reconnects")
                return  # a new connection, resume with last_seq
            if roll < 0.08:
                self.reload_next = True
                return
            if view.phase == "question_open" and view.q is not None:
                if roll < 0.2 and self.last is not None and self.last.q == view.q:
                    last = self.last
                    await self._answer(link, last.rid, last.q, last.value, "resend")
                elif roll < 0.75:
                    await self._answer(link, self.rid(), view.q,
                                       self.rng.randrange(self.choices), "answer")
            elif (view.phase in ("question_closed", "revealed") and view.q is not None
                  and roll < 0.15):
                await self._answer(link, self.rid(), view.q, self.rng.randrange(self.choices),
                                   "late")
        if not self.done.is_set():  # out of steps: wait for the end, then resume once more
            with trio.move_on_after(120):
                await self.done.wait()

    async def _answer(self, link: Link, rid: int, q: int, value: int, why: str) -> None:
        self.count(why)
        self.last = Pending(rid, q, value)
        for attempt in range(4):
            try:
                reply = await link.request({"t": "answer", "rid": rid, "q": q, "value": value})
            except Lost:
                self.pending = Pending(rid, q, value)
                raise
            self.pending = None
            if reply.get("t") == "answer_ack":
                self.count("acked")
                return
            self.count(f"refused:{reply.get('code')}")
            if not reply.get("retryable"):
                return
            if reply.get("code") in ("fenced", "shutting_down"):
                self.pending = Pending(rid, q, value)
                raise Lost("retry elsewhere")
            await self.backoff(attempt)


class Host(Client):
    """Drives the quiz (see the module docstring). ``ready()`` returns when it may start;
    ``may_finish`` is set when it may end the quiz (the nemesis is done)."""

    def __init__(self, rng: random.Random, urls: Callable[[], list[str]], started: float, *,
                 code: str, token: str, time_limit: float, last_q: int,
                 ready: Callable[[], Awaitable[None]], may_finish: trio.Event) -> None:
        super().__init__("host", rng, urls, started)
        self.code = code
        self.token = token
        self.time_limit = time_limit
        self.last_q = last_q
        self.ready = ready
        self.may_finish = may_finish
        self.attached = False
        self.finished = False
        self.steps = 0
        self.holds: dict[int, float] = {}
        self.opened_at: dict[int, float] = {}
        self.quiz_started = trio.Event()

    async def run(self) -> None:
        for attempt in range(MAX_CONNECTIONS):
            if self.finished or self.steps >= MAX_STEPS:
                return
            made = await self.over_connection(self._connection)
            if not made or self.redirect is None:
                await self.backoff(attempt)

    async def _connection(self, link: Link) -> None:
        reply = await link.request({"t": "host", "rid": self.rid(), "code": self.code,
                                    "token": self.token,
                                    "last_seq": self.view.last_seq if self.attached else None})
        if reply.get("t") != "welcome":
            self.follow(reply)
            return
        self.attached = True
        while self.steps < MAX_STEPS:
            self.steps += 1
            phase, q = self.view.phase, self.view.q
            if phase is None:  # the state has not arrived yet
                with trio.move_on_after(1):
                    await self.view.changed.wait()
                continue
            if phase != "lobby":
                self.quiz_started.set()
            if phase == "finished":
                self.finished = True
                return
            if phase == "lobby":
                await self.ready()
                command = "start"
            elif phase == "question_open" and q is not None:
                now = trio.current_time()
                opened = self.opened_at.setdefault(q, now)
                hold = self.holds.setdefault(q, self.rng.uniform(0.5, self.time_limit + 0.6))
                if now < opened + hold:
                    with trio.move_on_after(opened + hold - now):
                        await self.view.changed.wait()  # the deadline may close it first
                    continue
                command = "reveal"
            elif phase == "question_closed":
                command = "reveal"
            elif phase == "paused":
                command = "unpause"
            else:  # revealed, leaderboard, round_summary, slide
                if q == self.last_q:
                    # The quiz ends only once the nemesis is done (bounded all the same).
                    with trio.move_on_after(60):
                        await self.may_finish.wait()
                command = ("show_leaderboard" if phase == "revealed" and self.rng.random() < 0.3
                           else "next")
            frame: dict[str, Any] = {"t": command, "rid": self.rid()}
            if command == "show_leaderboard":
                frame["round"] = None
            before = self.view.changed
            reply = await link.request(frame)
            self.count(f"host:{command}")
            if command == "start" and reply.get("t") == "ok":
                self.quiz_started.set()
            if reply.get("t") == "error":
                if reply.get("code") in ("wrong_phase",):
                    # Our view is behind: wait for the event, else re-attach for a whole state
                    # (last_seq nil: after a takeover an `events` replay may bring nothing).
                    with trio.move_on_after(1) as waited:
                        await before.wait()
                    if waited.cancelled_caught:
                        self.attached = False
                        return
                    continue
                if reply.get("retryable"):
                    if reply.get("code") in ("fenced", "shutting_down"):
                        return
                    await self.backoff(1)
                    continue
                return
