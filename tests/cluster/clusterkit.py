"""Three engines and nginx on loopback (``LocalCluster``), and thin clients that play a quiz
through nginx and survive what happens to the engines.

A ``Player`` joins once through the entry point (``/ws?code=``), then answers every question
it sees open, a seeded choice, and remembers what was acked. Whenever its connection ends it
comes back through the entry point with its resume token, following redirects and waiting
out ``unavailable`` refusals as long as their ``retry_after_ms`` says (SPEC 13.7): each
``Reconnect`` records how long it was away, how many redirects it followed and how many
refusals it got, and what the first ``state`` after the resume showed (identity, score, the
open question's deadline and the answer the engine holds for it).

The ``Host`` drives the quiz one command at a time from the test, re-attaching after a lost
connection (host commands are not idempotent: a command whose reply was lost is checked
against the state before it is sent again).

Rules: every loop is bounded in attempts and every wait in time (``fail_after`` caps);
randomness comes from a seeded ``random.Random``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest
import trio
import trio_websocket

from pubquiz_engine.client import (
    Client,
    ClientClosed,
    ConnectFailed,
    Redirected,
    TooManyRedirects,
    open_client,
    open_session_client,
)
from pubquiz_engine.cluster import LocalCluster
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.snapshot import open_redis_store
from pubquiz_engine.store import Store, open_store

OPERATOR_KEY = "cluster-test-operator-key"
CHOICES = ["A", "B", "C", "D"]
FORCE_STATE = 2**31 - 1


def quiz(questions: int) -> dict[str, Any]:
    """Single-choice questions, 1 point each, no speed bonus (a recount is a count of right
    answers), long time limits (the host closes them)."""
    return {
        "format": 1, "title": "Cluster night",
        "rounds": [{"title": "All", "items": [
            {"kind": "single", "prompt": f"Question {i + 1}?", "choices": CHOICES,
             "answer": CHOICES[i % len(CHOICES)], "time_limit": 600, "points": 1}
            for i in range(questions)]}],
    }


def right_choice(q: int) -> int:
    return q % len(CHOICES)


#: What a connection can end with that a client recovers from by reconnecting.
LOST = (ClientClosed, ConnectFailed, trio_websocket.ConnectionClosed,
        trio.BrokenResourceError, trio.ClosedResourceError, TooManyRedirects)


@attrs.define
class Reconnect:
    """One way back after a lost connection."""

    lost_at: float
    back_at: float = 0.0
    redirects: int = 0
    refusals: int = 0  # retryable refusals (unavailable, busy) before it got in
    connect_failures: int = 0
    retry_after_ms: list[int] = attrs.Factory(list)
    #: From the first state after the resume.
    participant: int | None = None
    name: str | None = None
    score: int | None = None
    answer: Any = None
    question: int | None = None
    deadline_ms: int | None = None
    epoch: int | None = None

    @property
    def seconds(self) -> float:
        return self.back_at - self.lost_at


@contextlib.asynccontextmanager
async def session(entry: str, code: str, identify: Callable[[Client], Awaitable[m.Welcome]],
                  record: Reconnect | None, *, first_rid: int | None = None,
                  attempts: int = 60) -> AsyncIterator[Client]:
    """A connection to session ``code``'s owner through ``entry``, identified; retried after
    lost connections and retryable refusals (waiting ``retry_after_ms`` when given, else a
    short back-off), at most ``attempts`` times. Counts redirects (followed, or
    to a node found gone), refusals and failed connects in ``record``."""
    rng = random.Random()
    for attempt in range(attempts):
        redirects = 0

        async def counted(client: Client) -> m.Welcome:
            nonlocal redirects
            try:
                return await identify(client)
            except Redirected:
                redirects += 1
                raise

        entered = False
        try:
            async with open_session_client(entry, code, counted, first_rid=first_rid,
                                           connect_timeout=5) as client:
                if record is not None:
                    record.redirects += redirects
                entered = True
                yield client
                return
        except RemoteError as exc:
            if entered:
                raise
            if isinstance(exc, Redirected) or not exc.retryable:
                raise
            if record is not None:
                record.redirects += redirects
                record.refusals += 1
                if exc.retry_after_ms is not None:
                    record.retry_after_ms.append(exc.retry_after_ms)
            delay = (exc.retry_after_ms / 1000 if exc.retry_after_ms is not None
                     else 0.05 * 2 ** min(attempt, 3))
        except LOST:
            if entered:
                raise
            if record is not None:
                record.redirects += redirects
                record.connect_failures += 1
            delay = 0.05 * 2 ** min(attempt, 3) * (0.5 + rng.random() / 2)
        # The server's own delay (retry_after_ms), or a short back-off after a lost connect.
        await trio.sleep(delay)
    raise AssertionError(f"session {code}: no way back in {attempts} attempts")


@attrs.define(eq=False)
class Player:
    """A player (see the module docstring)."""

    entry: str
    code: str
    name: str
    rng: random.Random
    on_ack: Callable[[], None]
    on_back: Callable[[], None] = lambda: None
    token: str | None = None
    participant: int | None = None
    next_rid: int | None = None
    score: int = 0
    #: q -> (rid, value) of the last acked answer.
    acked: dict[int, tuple[int, int]] = attrs.Factory(dict)
    #: q -> (rid, value) sent, reply not seen yet (resent with the same rid, SPEC 13.6).
    pending: dict[int, tuple[int, int]] = attrs.Factory(dict)
    deadlines: dict[int, int] = attrs.Factory(dict)
    reconnects: list[Reconnect] = attrs.Factory(list)
    joins: Reconnect = attrs.Factory(lambda: Reconnect(lost_at=trio.current_time()))
    ended: trio.Event = attrs.Factory(trio.Event)
    final_score: int | None = None
    last_state: dict[str, Any] | None = None
    #: What the player waits for now (for a failed test's report).
    waiting: str = "not started"

    async def run(self) -> None:
        """Join, then play until the session ends; come back after every lost connection."""
        record: Reconnect | None = self.joins
        for _life in range(100):
            self.waiting = f"its way in (life {_life})"
            try:
                async with session(self.entry, self.code, self._identify, record,
                                   first_rid=self.next_rid) as client:
                    await self._play(client, record)
                    return
            except LOST:
                pass
            except RemoteError as exc:  # e.g. shutting_down from a draining engine
                if not exc.retryable or isinstance(exc, Redirected):
                    raise
            record = Reconnect(lost_at=trio.current_time())
            self.reconnects.append(record)
        raise AssertionError(f"{self.name}: lost its connection 100 times")

    async def _identify(self, client: Client) -> m.Welcome:
        if self.token is None:
            welcome = await client.join(self.code, self.name)
            self.token = welcome.token
            self.participant = welcome.participant
        else:
            # A last_seq above any seq asks for the whole state (SPEC 13.3): what it shows
            # is what the checks read.
            welcome = await client.resume(self.token, FORCE_STATE)
        return welcome

    async def _play(self, client: Client, record: Reconnect | None) -> None:
        """Answer what opens until the session ends. The first ``state`` after the join or
        resume marks the player back (``record``, ``on_back``)."""
        fresh = record is not None
        try:
            # Answers whose reply was lost: the same rid and value again (SPEC 13.6).
            while True:
                self.waiting = "the next event"
                message = await client.next_event(timeout=3600)
                self.next_rid = client.next_rid
                if isinstance(message, m.State):
                    self._saw_state(message.state, record if fresh else None)
                    if fresh and record is not None:
                        record.back_at = trio.current_time()
                        self.on_back()
                    fresh = False
                    question = message.state.get("question")
                    # Back into an open question it may not have answered (its ``question``
                    # was broadcast while it was away): answer it now. The phase is
                    # ``question_open`` (SPEC 11); the check read "question" and never matched,
                    # which left a player that came back after the host's ``next`` waiting.
                    if message.state.get("phase") == "question_open" and question is not None:
                        await self._answer(client, int(question["q"]))
                    if message.state.get("phase") == "finished":
                        self._finish(message.state)
                        return
                elif isinstance(message, m.Question):
                    self.deadlines[message.q] = message.deadline_ms
                    await self._answer(client, message.q)
                elif isinstance(message, m.You):
                    self.score = message.score
                elif isinstance(message, m.Ended):
                    self.ended.set()
                    return
        finally:
            self.next_rid = client.next_rid

    def _saw_state(self, state: dict[str, Any], record: Reconnect | None) -> None:
        self.last_state = state
        you = state.get("you") or {}
        question = state.get("question")
        if record is not None:
            record.participant = you.get("participant")
            record.name = you.get("name")
            record.score = you.get("score")
            record.answer = you.get("answer")
            record.question = question["q"] if question is not None else None
            record.deadline_ms = question["deadline_ms"] if question is not None else None
        if question is not None and question["q"] not in self.deadlines:
            self.deadlines[question["q"]] = question["deadline_ms"]
        if isinstance(you.get("score"), int):
            self.score = you["score"]

    def _finish(self, state: dict[str, Any]) -> None:
        self.final_score = (state.get("you") or {}).get("score")
        self.ended.set()

    async def _answer(self, client: Client, q: int) -> None:
        if q in self.acked:
            return
        rid, value = self.pending.get(q) or (client.next_rid, self.rng.randrange(len(CHOICES)))
        if q not in self.pending:
            client.next_rid += 1
            self.pending[q] = (rid, value)
        self.next_rid = client.next_rid
        self.waiting = f"the reply to answer q={q} rid={rid}"
        ack = await client.answer(q, value, rid=rid)
        assert ack.q == q
        del self.pending[q]
        self.acked[q] = (rid, value)
        self.on_ack()


@attrs.define(eq=False)
class Host:
    """The quiz master: one command at a time, re-attaching after a lost connection."""

    entry: str
    code: str
    token: str
    client: Client | None = None
    reconnects: list[Reconnect] = attrs.Factory(list)
    _stack: contextlib.AsyncExitStack | None = None

    async def attach(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack
        self.client = await stack.enter_async_context(
            session(self.entry, self.code, lambda c: c.host(self.code, self.token), None))

    async def state(self) -> dict[str, Any]:
        """The session's state as the host sees it now (a fresh connection)."""
        assert self._stack is not None
        record = Reconnect(lost_at=trio.current_time())
        self.reconnects.append(record)
        self.client = await self._stack.enter_async_context(
            session(self.entry, self.code, lambda c: c.host(self.code, self.token), record))
        record.back_at = trio.current_time()
        state = await self.client.next_event(m.State, timeout=10)
        return state.state

    async def command(self, cls: type[m.Message], done: Callable[[dict[str, Any]], bool]
                      ) -> None:
        """Send ``cls``; after a lost connection, re-attach and send again only if the state
        does not show it applied (``done(state)``)."""
        for _attempt in range(20):
            assert self.client is not None
            try:
                await self.client.request(cls)
                return
            except LOST:
                pass
            except RemoteError as exc:
                if not exc.retryable:
                    raise
            if done(await self.state()):
                return
        raise AssertionError(f"host: {cls.__name__} not applied in 20 attempts")


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    return (f"n={len(seconds)} p50={percentile(seconds, 50):.3f}s "
            f"p99={percentile(seconds, 99):.3f}s max={max(seconds):.3f}s "
            f"mean={statistics.fmean(seconds):.3f}s")


async def wait_count(counter: Callable[[], int], target: int, changed: Callable[[], trio.Event],
                     *, timeout: float) -> None:
    """Wait until ``counter() >= target``, woken by ``changed()`` (no polling)."""
    with trio.fail_after(timeout):
        while counter() < target:
            await changed().wait()


class Signal:
    """A counter with an event that fires on every increment."""

    def __init__(self) -> None:
        self.count = 0
        self.event = trio.Event()

    def bump(self) -> None:
        self.count += 1
        self.event.set()
        self.event = trio.Event()

    async def wait_for(self, target: int, *, timeout: float) -> None:
        await wait_count(lambda: self.count, target, lambda: self.event, timeout=timeout)


# --- the cluster ---------------------------------------------------------------------------

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Short leases keep a kill -9's wait short (the protocol bound is this TTL, not a timing).
LEASE_TTL_MS = 3000

ENGINE_ARGS = (
    "--snapshot-interval", "0.2", "--orphan-scan-interval", "1", "--drain-timeout", "5",
    "--join-rate", "10000", "--join-burst", "10000", "--message-rate", "1000",
    "--message-burst", "1000", "--max-connections-per-address", "5000",
    # Each connection's way in (entered, redirected, refused) and each member's connection
    # state at the stop, in the nodes' log files: what a failed run left each client with.
    "--log-level", "debug",
)


def need_nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                     else None)
    if path is None:
        if IN_CI:
            pytest.fail("nginx is not installed (CI=true: the cluster tests never skip)")
        pytest.skip("nginx is not installed")
    return path


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path, postgres_url: str, redis_url: str, prefix: str
                          ) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", database_url=postgres_url,
                           redis_url=redis_url, redis_prefix=prefix, nginx=need_nginx(),
                           lease_ttl_ms=LEASE_TTL_MS, operator_key=OPERATOR_KEY,
                           engine_args=ENGINE_ARGS, stop_timeout=20, log_files=True)
    async with trio.open_nursery() as nursery:
        try:
            await cluster.start(nursery)
            yield cluster
        except BaseException:
            failure_report(cluster)
            raise
        finally:
            await cluster.aclose()
            nursery.cancel_scope.cancel()


#: Debug lines a failure report keeps: how each connection entered a session, or why not.
_REPORTED_DEBUG = ('"msg": "entered ', ' refused: ', ' redirected to ')
#: Lines of a failure report per engine (its log file's important lines) and of nginx's log.
REPORT_LINES = 400


def failure_report(cluster: LocalCluster) -> None:
    """Print what a failed cluster test needs to be explained from its output alone (a CI
    run's files are gone with its machine): each engine's lines at info and above, which hold
    the state ``state_on_failure`` had it log (each session, each member's connection),
    takeovers, leases and warnings, with the debug lines that say how each connection entered
    a session or why it did not; then its last lines at any level; and nginx's access log
    (each connection's node and duration)."""
    for node in cluster.nodes:
        path = cluster.workdir / f"{node.name}.log"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines() \
            if path.exists() else []
        important = [line for line in lines if '"level": "debug"' not in line
                     or any(mark in line for mark in _REPORTED_DEBUG)]
        print(f"--- engine {node.name}: info and above, entries and refusals "
              f"({len(important)} of {len(lines)} lines; the last {REPORT_LINES})")
        print("\n".join(important[-REPORT_LINES:]))
        print(f"--- engine {node.name} (last lines)\n" + "\n".join(list(node.output)[-30:]))
    access = cluster.workdir / "nginx-access.log"
    if access.exists():
        lines = access.read_text(encoding="utf-8", errors="replace").splitlines()
        print(f"--- nginx access log ({len(lines)} lines; the last {REPORT_LINES})")
        print("\n".join(lines[-REPORT_LINES:]))


def players_report(players: Sequence[Player]) -> None:
    """Print each player's side: what it waits for, what it had acked, its ways back in."""
    print(f"--- players ({len(players)})")
    for p in players:
        last = p.reconnects[-1] if p.reconnects else p.joins
        state = p.last_state or {}
        question = state.get("question")
        print(f"{p.name} {p.code} participant {p.participant}: waiting for {p.waiting}; acked "
              f"{sorted(p.acked)} pending {p.pending}; ended {p.ended.is_set()}; "
              f"{len(p.reconnects)} reconnects, the last lost at {last.lost_at:.3f} back at "
              f"{last.back_at:.3f} (redirects {last.redirects}, refusals {last.refusals}, "
              f"failed connects {last.connect_failures}); last state: phase "
              f"{state.get('phase')} question {question.get('q') if question else None}")


@contextlib.asynccontextmanager
async def state_on_failure(cluster: LocalCluster, players: Sequence[Player] = ()
                           ) -> AsyncIterator[None]:
    """On a failure inside, the engines log their sessions and each member's connection
    (``LocalCluster.log_state``) while the clients are still connected: the nodes' log files
    then say what each stuck client had; and each of ``players`` (a list the test may fill
    after entering) says what it waits for. Innermost, so it runs before the clients unwind."""
    try:
        yield
    except BaseException:
        with trio.CancelScope(shield=True):
            print(f"--- failed at {trio.current_time():.3f} (trio clock)")
            players_report(players)
            await cluster.log_state()
        raise


async def http_get(cluster: LocalCluster, path: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` through nginx (plain HTTP/1.0 on a trio socket: no client library):
    (status, lower-cased headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", cluster.nginx_port)
    fields = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.0\r\nHost: localhost\r\n{fields}\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    return int(status_line.split()[1]), parsed, body


async def http_json(cluster: LocalCluster, path: str) -> Any:
    status, _headers, body = await http_get(cluster, path)
    assert status == 200, (status, body[:200])
    return json.loads(body)


async def results_through_nginx(cluster: LocalCluster, code: str, token: str
                                ) -> tuple[int, dict[str, Any]]:
    """The host's results download through nginx, following the engine's redirect to the
    node holding the session: (redirects followed, the JSON)."""
    path = f"/results?code={code}&format=json"
    auth = {"Authorization": f"Bearer {token}"}
    for hops in range(3):
        status, headers, body = await http_get(cluster, path, auth)
        if status == 307:
            location = urlsplit(headers["location"])
            path = f"{location.path}?{location.query}"
            continue
        assert status == 200, (status, body[:200])
        return hops, json.loads(body)
    raise AssertionError(f"/results for {code}: more than 2 redirects")


async def routed_node(cluster: LocalCluster, code: str) -> str:
    """The engine nginx's hash sends ``code`` to (its /health names the node)."""
    health = await http_json(cluster, f"/health?code={code}")
    return str(health["node"]["id"])


async def sessions_on_two_nodes(cluster: LocalCluster, questions: int
                                ) -> list[tuple[str, str]]:
    """Two sessions ((code, host token) each) whose codes nginx hashes to different nodes."""
    found: dict[str, tuple[str, str]] = {}
    async with open_client(cluster.entry_url) as operator:
        for _ in range(30):
            created = await operator.create_session(OPERATOR_KEY, quiz=quiz(questions),
                                                    mode="solo")
            node = await routed_node(cluster, created.code)
            found.setdefault(node, (created.code, created.host_token))
            if len(found) == 2:
                return list(found.values())
    raise AssertionError("30 sessions all hashed to one node")


async def owner_of(redis_url: str, prefix: str, code: str) -> str | None:
    redis = open_redis_store(redis_url, prefix=prefix)
    try:
        owner = await redis.owner(code)
    finally:
        redis.close()
    return None if owner is None else owner.node


@contextlib.asynccontextmanager
async def store_at(url: str) -> AsyncIterator[Store]:
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.aclose()
