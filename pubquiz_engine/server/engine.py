"""The engine: the root nursery that holds the transport, the persister and every session.

```
engine (root nursery)
├── websocket server      transport.serve (a task per connection)
├── admin HTTP (optional) the same routes on a second port
├── write-behind persister
├── loop watcher          measures event-loop lag (metrics)
├── heartbeat             under systemd: WATCHDOG=1 and STATUS= from this event loop
└── sessions nursery      one LiveSession.run per live session
```

Rules this module keeps:

1. ``Engine.run`` reports readiness with ``task_status.started(address)`` only once the port
   listens and the persister runs, so a caller (systemd, a test) never races the start.
2. Graceful stop (``shutdown``), in this order, each step waiting for the one before:
   (a) stop intake: new connections are closed with 1012 and, in every session, answers,
   joins and commands get a retryable ``shutting_down`` (new sessions too) and the timers stop
   closing questions, so nothing adds work to the queue any more; a session nobody will carry
   on (no Redis, or a finished game) is recorded as ``interrupted`` (or ``finished``) with its
   end time; (b) drain the write-behind queue to empty (it only shrinks now; bounded by
   ``drain_timeout`` for a database that is away); (c) with Redis, write the final snapshots,
   so another node resumes each live session from its last state; (d) let the replies that
   waited on (b) and (c) go out (each session's durable acks: ``wait_acks_sent``); (e) close
   every member with 1012 and the ports. Nothing acked is lost in either ack mode: intake
   stopped before the drain, so every acked answer is in the queue the drain empties.
3. Sessions are created synchronously (``create_session``), so a caller gets the join code and
   host token at once; the session's nursery is started in the sessions nursery. Creating one
   is new work: refused (``busy``) before anything happens when the write-behind queue is at
   its bound, and with Redis before its lease is taken (a lease taken for a session that could
   not be created is released).
4. Under systemd (``Notifier``): READY=1 once every port listens, STOPPING=1 with a timeout
   extension when the drain begins, WATCHDOG=1 from a task of this event loop, so that a
   stalled loop is noticed. Without systemd the notifier does nothing.
5. Every log line a connection's task writes carries its ``conn`` id and, once it joined, its
   ``session`` code (``logs.log_fields``); a session's own task carries its code. Host tokens
   are registered with the log redactor while their session lives.
6. **The one place that composes the server.** This module imports the parts (connections,
   web routes, failover, generation, sessions, transport, store) and hands each the engine
   typed as the port it declares in ``server/ports.py`` (``ConnectionHost``,
   ``ResultsSource``, ``SessionHost``); none of them imports this module, so the imports run
   one way (``docs/architecture.md``, checked by ``tests/test_architecture.py``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.lowlevel

import pubquiz_engine
from pubquiz_engine.errors import CloseCode, ErrorCode, QuizFileError, Rejected, StoreError
from pubquiz_engine.game import (
    GameSession,
    Mode,
    Quiz,
    SessionOptions,
    load_quiz,
    load_quiz_data,
    sample_quiz_path,
)
from pubquiz_engine.logs import add_secret, bind_log_fields, discard_secret, log_fields
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.protocol.limits import Limits
from pubquiz_engine.server import credentials
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.connection import Connection, client_address
from pubquiz_engine.server.failover import Coordination
from pubquiz_engine.server.generation import generate_round
from pubquiz_engine.server.http import HttpHandler, HttpRequest, HttpResponse, Router
from pubquiz_engine.server.metrics import CONTENT_TYPE, EngineSample, Metrics
from pubquiz_engine.server.ratelimit import AddressLimiter, address_key
from pubquiz_engine.server.sdnotify import Notifier
from pubquiz_engine.server.session import LiveSession, SessionSettings
from pubquiz_engine.server.timeouts import TimeoutQueue
from pubquiz_engine.server.transport import (
    ListenerInfo,
    TransportConfig,
    TransportStatistics,
    WebSocket,
    serve,
)
from pubquiz_engine.store import Results, Store, WriteBehind, open_store
from pubquiz_engine.web import web_routes

log = logging.getLogger(__name__)

#: The loop watcher sleeps this long and measures how late it wakes up.
LOOP_LAG_INTERVAL = 0.1
#: Seconds between STATUS= lines to systemd (more often when the watchdog asks for it).
STATUS_INTERVAL = 5.0
#: Beyond ``drain_timeout``, what a graceful stop may still take (closing members, cancelling
#: tasks, the CLI's own margin): the EXTEND_TIMEOUT_USEC sent with STOPPING=1 covers both.
STOP_MARGIN = 10.0


def _json(status: int, data: Mapping[str, Any]) -> HttpResponse:
    body = json.dumps(data, sort_keys=True).encode()
    return HttpResponse(status, (("content-type", "application/json"),), body)


def transport_config(config: ServerConfig) -> TransportConfig:
    return TransportConfig(
        # The transport lets the biggest legal message through; the codec then holds every
        # type but create_session to max_frame_bytes (and answers 1009 past it).
        max_message_size=max(config.max_frame_bytes, config.max_operator_frame_bytes),
        max_backlog_bytes=config.max_backlog_bytes,
        send_buffer_bytes=config.socket_send_buffer,
        reader=config.transport_reader,
        handshake_timeout=config.handshake_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        # attrs' converter=tuple is typed as a generic Iterable by mypy's attrs plugin.
        allowed_origins=config.allowed_origins,  # type: ignore[arg-type]
    )


@attrs.frozen
class EngineAddress:
    host: str
    port: int
    admin_port: int | None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"ws://{host}:{self.port}/"


class Engine:
    """See the module docstring."""

    def __init__(self, config: ServerConfig, store: Store, *,
                 clock: Any = time.time,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.store = store
        self.persister = WriteBehind(store, max_queue=config.write_queue,
                                     max_batch=config.write_batch,
                                     linger=config.write_linger, on_stale=self._fenced)
        self.sessions: dict[str, LiveSession] = {}
        self.metrics = Metrics()
        self.metrics.watch(self._sample)
        self.notifier = notifier if notifier is not None else Notifier()
        self._admin_port: int | None = None
        self.join_limiter = AddressLimiter(config.join_rate, config.join_burst)
        #: Wrong operator keys per address (a right key costs nothing).
        self.operator_limiter = AddressLimiter(config.operator_attempt_rate,
                                               config.operator_attempt_burst)
        self._per_address: Counter[str] = Counter()
        #: Wall-clock time (seconds): the sessions' clock too, so a test can move both.
        self.clock = clock
        self._stopped = trio.Event()  # set once a graceful stop has finished
        # Requests whose reply waits on a commit or a snapshot (durable acks): a graceful stop
        # lets them answer before it closes their connections.
        self._flushed = False
        #: The Redis side (leases, snapshots, takeover), when ``redis_url`` is set.
        self.coord: Coordination | None = None
        # Set once ``run`` has opened ``coord`` (or given up starting). The game port listens
        # before that (its port names the node), so a lookup or a new session in between
        # waits for it rather than answering as a node without Redis would (``bad_code``).
        self._directory_opened = trio.Event()
        self._started_at = time.time()
        self._sessions_nursery: trio.Nursery | None = None
        self._serve_scopes: list[trio.CancelScope] = []
        #: Connections' join deadlines (``Connection`` rule 3), kept by one task.
        self.join_timeouts: TimeoutQueue[Connection] = TimeoutQueue(
            config.join_timeout, Connection._join_timed_out)
        self._listener: ListenerInfo | None = None
        self.stopping = False
        self.ready = False
        #: This node's name (``node_id``, or host:port once listening), the sessions' owner.
        self.node: str | None = None
        #: The codec's limits for client frames, shared by every connection.
        self.frame_limits = Limits(
            max_frame_bytes=config.max_frame_bytes,
            max_operator_frame_bytes=max(config.max_frame_bytes,
                                         config.max_operator_frame_bytes),
        )
        self._settings = SessionSettings(
            replay_events=config.replay_events,
            max_members=config.max_members_per_session,
            idle_timeout=config.session_idle_timeout,
            finished_linger=config.session_finished_linger,
            hold_limit=config.snapshot_wait,
        )

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[EngineAddress] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled (or ``shutdown``). Reports the bound address when ready."""
        coord: Coordination | None = None
        try:
            async with trio.open_nursery() as root:
                root.start_soon(self._watch_loop)
                await root.start(self.join_timeouts.run)
                await root.start(self.persister.run)
                if not self.config.redis_url:
                    await self._interrupt_leftovers()  # before any session of this run exists
                self._sessions_nursery = await root.start(_hold_nursery)
                scope = trio.CancelScope()
                self._serve_scopes.append(scope)
                self._listener = await root.start(self._serve, scope, self.config.host,
                                                  self.config.port, True)
                self.node = self.config.node_id or _node_name(self._listener.port)
                admin_port = None
                if self.config.admin_port is not None:
                    admin_scope = trio.CancelScope()
                    self._serve_scopes.append(admin_scope)
                    admin = await root.start(self._serve, admin_scope, self.config.admin_host,
                                             self.config.admin_port, False)
                    admin_port = admin.port
                self._admin_port = admin_port
                if self.config.redis_url:
                    self.coord = coord = Coordination.open(self, self._listener.host,
                                                           self._listener.port)
                    await root.start(self.coord.keeper.run)
                    await root.start(self.coord.snapshotter.run)
                    await root.start(self.coord.registry.run)
                    await root.start(self.coord.adopt_orphans)
                self._directory_opened.set()
                self.ready = True
                assert self._listener is not None
                self.notifier.ready(self.status_line())
                if self.notifier.enabled:
                    root.start_soon(self._heartbeat)
                task_status.started(EngineAddress(self._listener.host, self._listener.port,
                                                  admin_port))
        finally:
            self._directory_opened.set()  # nobody waits for a directory that never opens
            # Redis connections are ours to close, also when a test's crash() dropped
            # ``self.coord`` (a killed process would have them closed by the kernel).
            if coord is not None:
                coord.redis.close()

    async def _interrupt_leftovers(self) -> None:
        """Without Redis, the live sessions a previous run of this node left in the database
        (it was killed: a graceful stop records them itself) died with it: nobody can carry
        them on. Record them ``interrupted``. The node is known before listening only by its
        ``node_id`` or a fixed port; with neither there is nothing of ours to find."""
        node = self.config.node_id or (_node_name(self.config.port) if self.config.port
                                       else None)
        if node is None:
            return
        now = self.clock()
        try:
            codes = await self.store.interrupt_sessions(node, created_before=now, ended_at=now)
        except StoreError as exc:  # the database may be away at start: the next start retries
            log.warning("sessions left live by a previous run not checked: %s", exc)
            return
        if codes:
            log.warning("%d sessions left live by a previous run of node %s recorded "
                        "interrupted: %s", len(codes), node, ", ".join(codes[:20]))

    async def _serve(self, scope: trio.CancelScope, host: str, port: int, websockets: bool,
                     *, task_status: trio.TaskStatus[ListenerInfo] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        with scope:
            handler = self._handle_ws if websockets else _refuse_ws
            # /metrics is for operators: with an admin port it is served there only.
            metrics = not websockets or self.config.admin_port is None
            await serve(handler, host=host, port=port, config=transport_config(self.config),
                        http_handler=self._router(metrics=metrics), task_status=task_status)

    async def _watch_loop(self) -> None:
        """Event-loop lag: how late a short sleep wakes up is how long the loop was busy."""
        while True:
            start = trio.current_time()
            await trio.sleep(LOOP_LAG_INTERVAL)
            self.metrics.loop_lag(max(0.0, trio.current_time() - start - LOOP_LAG_INTERVAL))

    async def _heartbeat(self) -> None:
        """WATCHDOG=1 (when systemd asks for it) and STATUS=, from this event loop: if the loop
        stalls, the pings stop and systemd restarts the process."""
        watchdog = self.notifier.watchdog_interval
        interval = min(watchdog, STATUS_INTERVAL) if watchdog is not None else STATUS_INTERVAL
        while True:
            await trio.sleep(interval)
            if watchdog is not None:
                self.notifier.watchdog(self.status_line())
            else:
                self.notifier.status(self.status_line())

    def log_state(self) -> None:
        """Log every session and each member's connection (``kill -USR1``: the CLI calls
        this), then ``state logged`` with the count."""
        sessions = list(self.sessions.values())
        for session in sessions:
            _log_session(session, "state", logging.INFO)
        log.info("state logged: %d sessions", len(sessions))

    def transport_statistics(self) -> TransportStatistics | None:
        """The game port's transport counters (None before it listens)."""
        return self._listener.statistics() if self._listener is not None else None

    def status_line(self) -> str:
        """One line on what the engine is doing (systemd's STATUS=, ``systemctl status``)."""
        transport = self.transport_statistics()
        connections = transport.connections_open if transport is not None else 0
        stats = self.persister.stats()
        counts = (f"{len(self.sessions)} sessions, "
                  f"{sum(s.member_count for s in self.sessions.values())} members, "
                  f"{connections} connections, write-behind depth {stats.depth}")
        if self.stopping:
            return f"draining: {counts}"
        if self._listener is None:
            return "starting"
        admin = f" (admin {self._admin_port})" if self._admin_port is not None else ""
        return f"serving {self._listener.host}:{self._listener.port}{admin}: {counts}"

    async def shutdown(self, *, reason: str = "server restarting") -> bool:
        """Graceful stop: returns whether every queued record was committed in time.

        Order matters: new connections are refused first (``stopping``), then the queue is
        flushed while connections are still open, so that durable acks waiting on a commit
        still reach their players; only then are members told (1012) and the ports closed.
        """
        if self.stopping:  # the CLI, then running_engine's exit, both call this
            # The drain already ran (or is running): never wait for it a second time, so a
            # stop with the database away takes one drain_timeout, not two.
            await self._stopped.wait()
            return self._flushed
        self.stopping = True
        self.ready = False
        self.notifier.stopping(self.status_line(),
                               extend_timeout=self.config.drain_timeout + STOP_MARGIN)
        try:
            self._flushed = await self._shutdown(reason)
        finally:
            self._stopped.set()
        return self._flushed

    async def _shutdown(self, reason: str) -> bool:
        # (a) Intake stops (``stopping`` already refuses new connections and sessions): from
        # here on nothing adds work to the queue, so the drain below can only shrink it.
        for session in list(self.sessions.values()):
            _log_session(session, "shutdown", logging.DEBUG)
            session.stop_intake()
        # (b) Drain to empty.
        flushed = await self.persister.drain(timeout=self.config.drain_timeout)
        if not flushed:
            log.error("shutdown: %d records not committed within %.1fs",
                      self.persister.stats().depth, self.config.drain_timeout)
        else:
            log.info("shutdown: write-behind queue flushed; closing %d sessions",
                     len(self.sessions))
        if self.coord is not None and self.sessions:
            # (c) Final snapshots of the final states, so that another node can take each
            # session over at once (the leases are handed back as the sessions close).
            with trio.move_on_after(min(2.0, self.config.drain_timeout)):
                await self.coord.flush(list(self.sessions.values()))
        # (d) The replies waiting on (b) and (c) are runnable now: let them go out before their
        # connections close (a durable ack waits on a snapshot at most snapshot_wait). If the
        # drain did not finish, the ones still waiting wait on records that were not committed:
        # they cannot be acked, so there is nothing to wait for.
        if flushed:
            with trio.move_on_after(self.config.snapshot_wait + 1.0):
                for session in list(self.sessions.values()):
                    await session.wait_acks_sent()
        # (e) Tell everyone.
        members = [mb for session in self.sessions.values() for mb in session.members()]
        for session in list(self.sessions.values()):
            session.close(reason, CloseCode.SERVICE_RESTART)
        # The close frames went out eagerly; give slow members' backlogs and the close
        # handshakes a moment before the connection tasks are cancelled.
        with trio.move_on_after(2.0):
            for member in members:
                await member.ws.wait_closed()
        for scope in self._serve_scopes:
            scope.cancel()
        return flushed

    # --- connections --------------------------------------------------------------------------

    def _handle_ws(self, ws: WebSocket) -> Awaitable[None]:
        """The transport's handler: a plain function returning the connection's coroutine,
        one coroutine frame less per idle connection (each is ~0.3 KiB)."""
        address = client_address(ws, self.config.trust_forwarded_for)
        conn = Connection(self, ws, address)
        # For every line this task logs, here or in any module it calls. Bound for the rest of
        # the task, not a block: the transport logs a handler's crash after we return.
        bind_log_fields(conn=conn.id, session=conn.session_code)
        return conn.handle()

    def admit(self, address: str) -> bool:
        """Count a connection from ``address`` in (False: over the per-address cap; IPv6
        clients are counted by their /64, see ``address_key``)."""
        address = address_key(address)
        if self._per_address[address] >= self.config.max_connections_per_address:
            return False
        self._per_address[address] += 1
        return True

    def release(self, address: str) -> None:
        """The connection counted in by ``admit`` ended."""
        address = address_key(address)
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]

    # --- sessions -----------------------------------------------------------------------------

    def create_session(self, quiz: Quiz, *, mode: str = "team",
                       options: Mapping[str, Any] | None = None, code: str | None = None,
                       epoch: int = 1) -> tuple[LiveSession, str]:
        """Start a live session for ``quiz``; returns it and its host token.

        Without Redis this is all there is. With Redis, use ``open_session``: it takes the
        session's lease first and passes its ``code`` and ``epoch`` here.
        """
        if self._sessions_nursery is None or self.stopping:
            raise Rejected(ErrorCode.SHUTTING_DOWN, "the engine is not accepting sessions")
        self._admit_session()
        try:
            session_options = SessionOptions(mode=Mode(mode), **dict(options or {}))
        except (TypeError, ValueError) as exc:
            raise Rejected(ErrorCode.INVALID_COMMAND, f"bad session options: {exc}") from None
        if code is None:
            code = credentials.new_join_code()
            while code in self.sessions:
                code = credentials.new_join_code()
        host_token = credentials.new_secret()
        session = self._new_session(code=code, game=GameSession(quiz, session_options),
                                    host_token_hash=credentials.token_hash(host_token),
                                    epoch=epoch)
        # Admitted above. Its owner is this node: without Redis, our next start finds it.
        # Nothing of the session reaches anyone before this record (and, with Redis, its
        # first snapshot) is stored: see ``LiveSession.hold``.
        session.hold(self.persister.record(
            [attrs.evolve(session.created_record(quiz), owner=self.node)]))
        self._start_session(session, host_token)
        log.info("session created", extra={"session": code, "quiz": quiz.title})
        if self.coord is not None:
            self.coord.changed(session, True)
        return session, host_token

    async def open_session(self, quiz: Quiz, *, mode: str = "team",
                           options: Mapping[str, Any] | None = None) -> tuple[LiveSession, str]:
        """``create_session`` under a fresh lease when this engine coordinates through Redis."""
        if self.coord is None and self._opening_directory:
            await self._directory_opened.wait()  # a session is only created under a lease
        if self.coord is None:
            return self.create_session(quiz, mode=mode, options=options)
        self._admit_session()  # before a lease is taken for it
        code, epoch = await self.coord.reserve()
        try:
            return self.create_session(quiz, mode=mode, options=options, code=code,
                                       epoch=epoch)
        except BaseException:
            # Refused after all (the queue filled or the engine began stopping while the
            # lease was taken): never hold a lease for a session that does not exist.
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.coord.keeper.release(code)
            raise

    def _admit_session(self) -> None:
        if not self.persister.has_room(1):
            raise Rejected(ErrorCode.BUSY, "the engine is saving answers; retry shortly")

    def adopt_session(self, *, code: str, game: GameSession, host_token_hash: str, epoch: int,
                      seq: int, created_at: float, resume_hashes: dict[int, str]
                      ) -> LiveSession:
        """Serve a session restored by a takeover (see ``failover``)."""
        if self._sessions_nursery is None or self.stopping:
            raise Rejected(ErrorCode.SHUTTING_DOWN, "the engine is not accepting sessions")
        session = self._new_session(code=code, game=game, host_token_hash=host_token_hash,
                                    epoch=epoch, seq=seq, created_at=created_at,
                                    resume_hashes=resume_hashes)
        self._start_session(session, None)
        # The score rows as the restored game has them: the old owner may have died before
        # its last ones were committed (they are write-behind), and an export must be right.
        session.rewrite_scores()
        if self.coord is not None:
            self.coord.changed(session, True)
        return session

    def local_session(self, code: str) -> LiveSession | None:
        """The session ``code`` on this node, live or ended; None if it is not here."""
        session = self.sessions.get(code)
        if (session is not None and session.end_reason is not None
                and session.closing_code != CloseCode.SESSION_ENDED):
            # Fenced here a moment ago and not yet gone (its clients are reconnecting right
            # now): not an ended session (that is ``bad_token``), one that lives elsewhere.
            return None
        return session

    async def find_session(self, code: str) -> LiveSession | None:
        """The live session ``code`` on this node, taken over from a dead node if need be."""
        session = self.local_session(code)
        if session is not None or not self.asks_directory:
            return session
        if self.coord is None:
            # Starting: listening already, the directory not open yet. Wait for it (the
            # caller bounds the wait: a connection's join deadline).
            await self._directory_opened.wait()
            if self.coord is None or self.stopping:
                return self.local_session(code)
        return await self.coord.find(code)

    @property
    def asks_directory(self) -> bool:
        """A session not here is looked up in the session directory (Redis; not while
        stopping): ``find_session`` may wait, also for the directory to open while the
        engine starts."""
        return not self.stopping and (self.coord is not None or self._opening_directory)

    @property
    def _opening_directory(self) -> bool:
        """Redis is configured and ``run`` has not opened ``coord`` yet."""
        return bool(self.config.redis_url) and not self._directory_opened.is_set()

    def _new_session(self, **kwargs: Any) -> LiveSession:
        return LiveSession(persister=self.persister, settings=self._settings, clock=self.clock,
                           on_change=self.coord.changed if self.coord is not None else None,
                           **kwargs)

    def _start_session(self, session: LiveSession, host_token: str | None) -> None:
        assert self._sessions_nursery is not None
        self.sessions[session.code] = session
        self.metrics.session_created()
        if host_token is not None:
            add_secret(host_token)  # redacted from logs while the session lives
        self._sessions_nursery.start_soon(self._run_session, session, host_token)

    async def create_session_from_request(self, *, quiz_path: str | None,
                                    quiz_data: Mapping[str, Any] | None, mode: str,
                                    options: Mapping[str, Any] | None
                                    ) -> tuple[LiveSession, str]:
        if (quiz_path is None) == (quiz_data is None):
            raise Rejected(ErrorCode.INVALID_COMMAND, "give exactly one of quiz_path and quiz")
        if quiz_data is not None:
            quiz = load_quiz_data(quiz_data, source="create_session")
        else:
            assert quiz_path is not None
            quiz = load_quiz(self._quiz_file(quiz_path))
        return await self.open_session(quiz, mode=mode, options=options)

    async def generate_round(self, session: LiveSession, msg: m.Generate) -> m.Generated:
        """An operator's ``generate`` for ``session`` (``server/generation.py``)."""
        return await generate_round(self.config, self.store, session, msg)

    def _quiz_file(self, name: str) -> Path:
        """A quiz file operators may name: the sample, or a file inside ``quiz_dir``."""
        if name == "sample":
            return sample_quiz_path()
        if not self.config.quiz_dir:
            raise QuizFileError([f"{name}: no quiz directory is configured on this engine"])
        base = Path(self.config.quiz_dir).resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            raise QuizFileError([f"{name}: no such quiz file in the quiz directory"])
        return path

    async def _run_session(self, session: LiveSession, host_token: str | None) -> None:
        # This task was spawned from the creating connection's task and inherited its log
        # fields: its lines are the session's, not that connection's.
        with log_fields(conn=None, session=session.code):
            try:
                await session.run()
            finally:
                if host_token is not None:
                    discard_secret(host_token)
                if self.coord is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(2):
                        await self.coord.ended(session)
                self.metrics.session_ended()
                log.info("session ended (%s)", session.end_reason or "cancelled")
                if self.sessions.get(session.code) is session:
                    del self.sessions[session.code]

    def _fenced(self, code: str) -> None:
        self.metrics.lease_event("fenced")
        session = self.sessions.get(code)
        if session is not None:
            session.fenced()

    # --- HTTP ---------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        stats = self.persister.stats()
        transport = self.transport_statistics()
        return {
            "status": "stopping" if self.stopping else "ok",
            "version": pubquiz_engine.__version__,
            "uptime_seconds": round(time.time() - self._started_at, 3),
            "connections": transport.connections_open if transport is not None else 0,
            "sessions": len(self.sessions),
            "members": sum(s.member_count for s in self.sessions.values()),
            "write_behind": {
                "depth": stats.depth,
                "lag_seconds": round(stats.lag_seconds, 4),
                "last_flush_at": stats.last_flush_at,
                "last_flush_seconds": round(stats.last_flush_seconds, 4),
                "failures": stats.failures,
                "max_queue": stats.max_queue,
                "batches": stats.batches,
            },
            "ack_mode": self.config.ack_mode,
            "tasks": _task_count(),
            "write_passes": _write_passes(transport),
            # The cyclic GC's thresholds (``serve`` spaces full collections out) and its
            # collections per generation since start: a full one pauses the whole loop.
            "gc": {"thresholds": list(gc.get_threshold()),
                   "collections": [g["collections"] for g in gc.get_stats()]},
            "event_loop_lag_seconds": round(
                self.metrics.value("pubquiz_event_loop_lag_last_seconds"), 4),
            **self._coordination_health(),
        }

    def _coordination_health(self) -> dict[str, Any]:
        """With Redis: this node's name and address, its leases, snapshots and registration
        (DESIGN section 8). Nothing without Redis."""
        coord = self.coord
        if coord is None:
            return {}
        leases = coord.keeper.stats()
        snaps = coord.snapshotter.stats()
        registry = coord.registry.stats()
        return {
            "node": {"id": coord.node, "url": coord.url, "registered": registry.redis_up,
                     "heartbeat_failures": registry.failures},
            "leases": {"held": leases.held, "overdue": leases.overdue,
                       "renewals": leases.renewals, "renewals_failed": leases.failures,
                       "lost": leases.lost, "redis_up": leases.redis_up,
                       "takeovers": coord.takeovers},
            "snapshots": {"pending": snaps.pending, "in_flight": snaps.in_flight,
                          "lag_events": self._snapshot_lag(),
                          "writes": snaps.writes, "failures": snaps.failures,
                          "stale": snaps.stale, "redis_up": snaps.redis_up},
        }

    def _snapshot_lag(self) -> int:
        """The most events a live session is ahead of its last stored snapshot (0 without
        Redis): how much a takeover would have to replay from the database."""
        if self.coord is None:
            return 0
        return max((s.seq - s.snapshot_seq for s in self.sessions.values()
                    if s.end_reason is None), default=0)

    def _sample(self) -> EngineSample:
        return EngineSample(
            sessions=len(self.sessions),
            members=sum(s.member_count for s in self.sessions.values()),
            ready=self.ready,
            stopping=self.stopping,
            transport=self.transport_statistics(),
            write_behind=self.persister.stats(),
            now=time.time(),
            snapshots=self.coord.snapshotter.stats() if self.coord is not None else None,
            leases=self.coord.keeper.stats() if self.coord is not None else None,
            snapshot_lag_events=self._snapshot_lag(),
        )

    def _router(self, *, metrics: bool) -> Router:
        async def health(_req: HttpRequest) -> HttpResponse:
            return _json(200, self.health())

        async def ready(_req: HttpRequest) -> HttpResponse:
            ok = self.ready and not self.stopping
            return _json(200 if ok else 503, {"ready": ok})

        async def render_metrics(_req: HttpRequest) -> HttpResponse:
            return HttpResponse(200, (("content-type", CONTENT_TYPE),), self.metrics.render())

        routes: dict[str, Mapping[str, HttpHandler]] = {
            "/health": {"GET": health}, "/ready": {"GET": ready}}
        if metrics:
            routes["/metrics"] = {"GET": render_metrics}
        routes.update(web_routes(self))  # the browser clients and /results
        return Router(routes)

    # --- what the web routes need (ports.ResultsSource) ------------------------------------

    async def drain_writes(self, *, timeout: float) -> bool:
        return await self.persister.drain(timeout=timeout)

    async def session_results(self, code: str) -> Results:
        return await self.store.session_results(code)


def _log_session(session: LiveSession, what: str, member_level: int) -> None:
    """One line on ``session`` (info), and one per member with its connection's state (at
    ``member_level``): what an operator or a failed test reads to know what each client has."""
    members = session.members()
    log.info("%s: session %s at seq %d (epoch %d): %d members, %d outbox chunks held",
             what, session.code, session.seq, session.epoch, len(members),
             session.outbox_depth)
    if log.isEnabledFor(member_level):
        for member in members:
            log.log(member_level, "%s: session %s: %s %s conn %d: %s", what, session.code,
                    member.role, member.participant, member.conn_id, member.ws.describe())


def _node_name(port: int) -> str:
    """A node's default name: the same one the failover coordination uses."""
    return f"{socket.gethostname()}:{port}"


async def _hold_nursery(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
                        ) -> None:
    """Open a nursery, hand it to the caller, and keep it open until cancelled."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


async def _refuse_ws(ws: WebSocket) -> None:
    ws.close(CloseCode.POLICY_VIOLATION, "the admin port serves HTTP only")


@contextlib.asynccontextmanager
async def running_engine(config: ServerConfig, *, store: Store | None = None,
                         notifier: Notifier | None = None
                         ) -> AsyncIterator[tuple[Engine, EngineAddress]]:
    """Open the store, run an engine, yield it with its address; graceful stop on exit.

    ``notifier``: systemd's (``Notifier.from_environ()``, as ``serve`` passes); none by default,
    so that an engine inside a test never talks to a systemd that runs the test."""
    own_store = store is None
    if store is None:
        url = config.resolved_database_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        store = await open_store(url)
    try:
        engine = Engine(config, store, notifier=notifier)
        try:
            async with trio.open_nursery() as nursery:
                address = await nursery.start(engine.run)
                try:
                    yield engine, address
                finally:
                    with trio.CancelScope(shield=True):
                        await engine.shutdown()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # the caller's own error, not a group around it
                raise group.exceptions[0] from None
            raise
    finally:
        if own_store:
            with trio.CancelScope(shield=True):
                await store.aclose()


def _write_passes(t: TransportStatistics | None) -> dict[str, Any]:
    """The transport's coalesced write passes for /health (zeros before it listens)."""
    if t is None:
        return {"count": 0, "seconds_total": 0.0, "cpu_seconds_total": 0.0,
                "slowest_seconds": 0.0, "slowest_frames": 0}
    return {"count": t.write_passes, "seconds_total": round(t.write_pass_seconds_total, 6),
            "cpu_seconds_total": round(t.write_pass_cpu_seconds_total, 6),
            "slowest_seconds": round(t.write_pass_seconds_max, 6),
            "slowest_frames": t.write_pass_frames_at_max}


def _task_count() -> int:
    """Live trio tasks in this run (a leak of tasks shows here first). O(tasks)."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count
