"""Failover for the server: leases, snapshots, takeover and redirects, when Redis is configured.

Rules this module keeps:

1. **One owner per session, proven by its lease.** A session is created only under a lease
   (``SET NX PX`` with a fencing epoch); the keeper renews it, and a node that loses it stops
   serving the session (4104). The database refuses writes carrying an older epoch, so a node
   that wakes up after a pause cannot count anything twice.
2. **Takeover is snapshot + replay.** A node asked for a session it does not hold, whose lease is
   free, takes the lease with a higher epoch (at least the database's epoch + 1), claims the
   session in the database, restores the snapshot, then replays from the database the players
   who joined and the answers accepted after the snapshot's watermark, in seq order, each at its
   original time. The question keeps its original (wall-clock) deadline.
3. **Nothing shown or acked is missing from the snapshot + replay.** No event leaves the old
   owner before the snapshot covering it is stored (``LiveSession``'s outbox, fenced by epoch),
   and the snapshot is read again once the new epoch is taken, so the new owner starts from at
   least the last event any client saw; a durable answer ack waits for the same, so a replayed
   answer always finds its question open in the restored state.
4. **Redis trouble never stops a session.** Snapshot writes and lease renewals are retried in the
   background and counted; only the takeover path (a session this node does not hold) needs
   Redis to answer.
5. **No session stays orphaned.** A takeover normally starts when a member reconnects; besides,
   every node scans the database's live sessions every ``orphan_scan_interval`` and takes over
   those whose lease is free, so a dead node's question still closes at its deadline and an
   abandoned session still ends (and is marked finished) after its idle timeout.
6. **An outage on the takeover path is a retryable answer, never half a takeover.** Redis not
   answering is ``unavailable`` (``retry_after_ms``); a database failure propagates as
   ``StoreError`` for the connection to answer ``unavailable``, and a takeover that takes more
   than half the client's ``join_timeout`` (a database that does not answer at all) is
   abandoned as ``unavailable`` too. A takeover that fails or is abandoned after taking the
   lease releases it (``_take_over``), so the next attempt starts clean. A snapshot that cannot
   be read (the record, or the session state in it: ``read_state``) is ``SnapshotCorrupt``,
   answered ``unavailable`` like the rest, and logged as an error: it never takes the node
   down nor leaves the lease held.
7. **Routing converges in one redirect.** Every node registers its own public address
   (``public_url``: through nginx, ``/ws/node/<name>``). A node asked for a session another
   node holds redirects to that node's address only while its registration is live; once the
   registration lapsed (it lapses before the lease: ``registration_ttl_ms``) it answers the
   retryable ``unavailable`` with ``retry_after_ms`` = the lease's remaining time, and the
   first request after that takes the session over. So a client that follows redirects
   reaches a live owner in one hop, or waits for the takeover. (In the first half-TTL after a
   node dies its registration may still be live: a client sent there finds nothing and comes
   back to the entry point, which then answers ``unavailable``.)
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from pubquiz_engine.errors import CloseCode, CorruptData, ErrorCode, Rejected, StoreError
from pubquiz_engine.game import GameSession, commands
from pubquiz_engine.game.events import ParticipantJoined
from pubquiz_engine.protocol.codec import unpack_stored
from pubquiz_engine.server import credentials
from pubquiz_engine.server.ports import SessionHost
from pubquiz_engine.server.session import SNAPSHOT_FORMAT, LiveSession
from pubquiz_engine.snapshot import (
    CoordinationError,
    LeaseKeeper,
    NodeRegistry,
    SnapshotCorrupt,
    Snapshotter,
    open_redis_store,
)

if TYPE_CHECKING:
    from pubquiz_engine.snapshot import RedisStore
    from pubquiz_engine.snapshot.redis_store import SessionRoute

log = logging.getLogger(__name__)

#: What ``unavailable`` asks a client to wait before it retries (rule 6): about one back-off
#: step of the write-behind and the lease keeper, which retry the store and Redis meanwhile.
#: Clients add their own jitter on top, so that a whole pub does not come back in step.
OUTAGE_RETRY_AFTER_MS = 1000


class SessionState(NamedTuple):
    """The session state a snapshot carries (``LiveSession.snapshot``), read back."""

    seq: int
    created_at: float
    host_token_hash: str
    resume_hashes: dict[int, str]
    game: GameSession


def read_state(raw: bytes) -> SessionState:
    """Read the session state in a snapshot; ``SnapshotCorrupt`` if it is not one (rule 6).

    The bytes go through the codec's stored-data limits; the game restores its own part
    (``GameSession.from_snapshot``, which raises ``CorruptData`` for what it cannot read)."""
    try:
        data = unpack_stored(raw)
        if not isinstance(data, dict):
            raise CorruptData(f"session state is a {type(data).__name__}, not a map")
        if data.get("format") != SNAPSHOT_FORMAT:
            raise CorruptData(f"unknown session state format {data.get('format')!r}")
        seq, created_at, host_hash = data.get("seq"), data.get("created_at"), data.get(
            "host_token_hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise CorruptData(f"session state seq is {seq!r}")
        if not isinstance(created_at, int | float) or isinstance(created_at, bool):
            raise CorruptData(f"session state created_at is {created_at!r}")
        if not isinstance(host_hash, str):
            raise CorruptData("session state host_token_hash is not a string")
        rows = data.get("resume_hashes")
        if not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                and isinstance(r[1], str) for r in rows):
            raise CorruptData("session state resume_hashes are not [id, hash] pairs")
        game_data = data.get("game")
        if not isinstance(game_data, dict):
            raise CorruptData("session state has no game map")
        game = GameSession.from_snapshot(game_data)
    except CorruptData as exc:
        raise SnapshotCorrupt(f"snapshot session state unreadable: {exc}") from exc
    return SessionState(seq, float(created_at), host_hash, {pid: h for pid, h in rows}, game)


def registration_ttl_ms(lease_ttl_ms: int) -> int:
    """How long a node's registration outlives its last heartbeat: half the lease TTL.

    Both are refreshed every third of their TTL, so when a node dies its leases have at least
    2/3 of ``lease_ttl_ms`` left and its registration at most 1/2: the registration always
    lapses first, and from then on peers answer ``unavailable`` (rule 7) instead of redirecting
    to the dead node."""
    return max(30, lease_ttl_ms // 2)


class Moved(Rejected):
    """The session lives on another node: the client is redirected there."""

    def __init__(self, code: str, url: str) -> None:
        super().__init__(ErrorCode.MOVED, f"session {code} is served at {url}")
        self.session_code = code
        self.url = url


class _Attempt:
    """A takeover under way: ``done`` is set when it ends either way; ``no_session`` says it
    found no live session to take (its waiters answer the same)."""

    __slots__ = ("done", "no_session")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.no_session = False


class Coordination:
    """The engine's Redis side: lease keeper, snapshotter, node registry and takeover.

    ``engine`` is what it needs of the engine (``ports.SessionHost``): this node's sessions,
    the store it replays from, and ``adopt_session`` to serve a session it restored."""

    def __init__(self, engine: SessionHost, redis: RedisStore, node: str, url: str) -> None:
        cfg = engine.config
        self.engine = engine
        self.redis = redis
        self.node = node
        self.url = url
        self.keeper = LeaseKeeper(redis, node, on_lost=self._lost, ttl_ms=cfg.lease_ttl_ms,
                                  reclaim=True)
        self.snapshotter = Snapshotter(redis, interval=cfg.snapshot_interval,
                                       concurrency=cfg.snapshot_concurrency,
                                       on_fenced=self._snapshot_fenced, on_written=self._written,
                                       durable=self._durable)
        # The registration lapses before the lease of a node that dies (rule 7).
        self.registry = NodeRegistry(redis, node, url,
                                     ttl_ms=registration_ttl_ms(cfg.lease_ttl_ms))
        self.takeovers = 0
        # Live sessions in the database that cannot be taken over (no snapshot: e.g. from a
        # run without Redis): the orphan scan does not ask again. Bounded.
        self._unadoptable: set[str] = set()
        self._adopted = trio.Event()  # set (then replaced) whenever the scan adopts a session
        # Takeovers under way on this node, by code (see ``_take_over``).
        self._taking: dict[str, _Attempt] = {}

    @classmethod
    def open(cls, engine: SessionHost, host: str, port: int) -> Coordination:
        cfg = engine.config
        assert cfg.redis_url is not None
        redis = open_redis_store(cfg.redis_url, prefix=cfg.redis_prefix)
        node = cfg.node_id or f"{socket.gethostname()}:{port}"
        url = cfg.public_url or f"ws://{host}:{port}/"
        return cls(engine, redis, node, url)

    # --- callbacks (sync, from the keeper's and snapshotter's tasks) ------------------------------

    def _lost(self, code: str) -> None:
        # Counted by the keeper (pubquiz_leases_lost_total).
        session = self.engine.sessions.get(code)
        if session is not None:
            session.fenced()

    def _snapshot_fenced(self, code: str) -> None:
        self.engine.metrics.lease_event("fenced")
        self._lost(code)

    def _written(self, code: str, seq: int) -> None:
        # Counted by the snapshotter (pubquiz_snapshot_writes_total).
        session = self.engine.sessions.get(code)
        if session is not None:
            session.snapshot_written(seq)

    async def _durable(self, code: str) -> bool:
        session = self.engine.sessions.get(code)
        return session is None or await session.snapshot_durable()

    def changed(self, session: LiveSession, urgent: bool) -> None:
        self.snapshotter.request(session.code, session.epoch, session.snapshot, urgent)

    # --- life cycle of a session ----------------------------------------------------------------

    async def reserve(self) -> tuple[str, int]:
        """A fresh join code and the epoch of the lease taken on it."""
        for _ in range(8):
            code = credentials.new_join_code()
            if code in self.engine.sessions:
                continue
            lease = await self.keeper.acquire(code)
            if lease is not None:
                self.engine.metrics.lease_event("acquired")
                return code, lease.epoch
        raise Rejected(ErrorCode.INTERNAL, "could not reserve a join code; retry")

    async def ended(self, session: LiveSession) -> None:
        """The session left this node: hand its lease back unless another node holds it.

        A snapshot write of the session already in flight is waited for first: stored after
        the delete below, it would leave a free lease with a snapshot, an orphan to adopt."""
        if session.closing_code == CloseCode.FENCED:
            self.snapshotter.forget(session.code)
            self.keeper.drop(session.code)
            return
        await self.snapshotter.settle(session.code)
        try:
            if session.closing_code == CloseCode.SESSION_ENDED:
                # Before the lease goes: a free lease with a snapshot is an orphan to adopt.
                await self.redis.delete_snapshot(session.code)
            await self.keeper.release(session.code)
        except CoordinationError as exc:
            log.warning("session %s: lease not released: %s", session.code, exc)

    async def flush(self, sessions: list[LiveSession]) -> None:
        """Final snapshots before a graceful stop (bounded by the caller)."""
        for session in sessions:
            self.snapshotter.request(session.code, session.epoch, session.snapshot, True)
        await self.snapshotter.flush()

    # --- orphans --------------------------------------------------------------------------------

    async def adopt_orphans(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        """Every ``orphan_scan_interval`` seconds, ``scan_orphans`` (rule 5). Runs until
        cancelled; returns at once when the interval is 0."""
        interval = self.engine.config.orphan_scan_interval
        task_status.started()
        if interval <= 0:
            return
        while True:
            await trio.sleep(interval)  # a period, not a wait for a condition
            await self.scan_orphans()

    async def scan_orphans(self, *, limit: int = 20) -> int:
        """Take over (at most ``limit``) live sessions that no node holds; returns how many.

        Whatever goes wrong with one session (another node won the race, Redis or the
        database away, a snapshot that cannot be read) is logged and left to the next scan:
        this runs in the engine's root nursery and must never take the engine down.
        """
        engine = self.engine
        if engine.stopping:
            return 0
        try:
            rows = await engine.store.list_sessions(status="live")
        except StoreError as exc:
            log.warning("orphan scan: sessions not listed: %s", exc)
            return 0
        adopted = 0
        for row in rows:
            code = row.code
            if adopted >= limit or engine.stopping:
                break
            if code in engine.sessions or code in self._unadoptable:
                continue
            try:
                if await self.redis.owner(code) is not None:
                    continue  # held: alive, or its lease has not lapsed yet
                session = await self.find(code)
            except (Rejected, CoordinationError, StoreError) as exc:
                log.debug("orphan scan: session %s not taken now: %s", code, exc)
                continue
            except Exception:
                log.exception("orphan scan: session %s could not be taken over", code)
                session = None
            if session is None:
                if len(self._unadoptable) >= 10_000:
                    self._unadoptable.clear()
                self._unadoptable.add(code)
                continue
            adopted += 1
            log.info("session %s adopted by the orphan scan", code)
            self._adopted.set()
            self._adopted = trio.Event()
        return adopted

    async def wait_adopted(self) -> None:
        """Return once the orphan scan adopts its next session."""
        await self._adopted.wait()

    # --- finding a session that is not here -------------------------------------------------------

    async def find(self, code: str) -> LiveSession | None:
        """The live session ``code``: redirect (``Moved``) if another node holds it, take it
        over if its owner is gone and a snapshot exists, None if there is no such session.

        The members of a session arrive together (a whole pub reconnecting after its node
        stopped): while this node takes the session over, the others wait for that takeover
        instead of racing it for the lease (which they would lose, and be refused)."""
        return await self._find(code)

    async def _find(self, code: str) -> LiveSession | None:
        try:
            route = await self.redis.route(code)
            if route.owner is not None:
                if route.owner.node == self.node:
                    # Ours: a takeover of this node finished while we asked Redis, or is
                    # still running (wait for it). Only a lease no task here holds is left
                    # to ``_refuse_or_redirect``: a previous run's.
                    session = self.engine.sessions.get(code)
                    if session is not None:
                        return session
                    running = self._taking.get(code)
                    if running is not None:
                        await running.done.wait()
                        session = self.engine.sessions.get(code)
                        if session is not None:
                            return session
                        raise Rejected(ErrorCode.UNAVAILABLE, "the takeover of this session did "
                                       "not complete; retry",
                                       retry_after_ms=OUTAGE_RETRY_AFTER_MS)
                self._refuse_or_redirect(code, route)
            snapshot = await self.redis.load_snapshot(code)
        except CoordinationError:
            raise Rejected(ErrorCode.UNAVAILABLE, "session directory unavailable; retry",
                           retry_after_ms=OUTAGE_RETRY_AFTER_MS) from None
        if snapshot is None:
            return None
        # Bounded, so that a database that does not answer (a black hole: no error, just
        # silence) is ``unavailable`` well within the client's join timeout, not a handshake
        # timeout. A cancelled takeover hands its lease back like a failed one.
        with trio.move_on_after(self.engine.config.join_timeout / 2) as bound:
            try:
                return await self._take_over(code, snapshot)
            except SnapshotCorrupt as exc:
                # Its lease is released already (``_take_over_now``); an operator must look.
                log.error("session %s: not taken over, its snapshot is unreadable: %s", code, exc)
                raise Rejected(ErrorCode.UNAVAILABLE, "the session's snapshot is unreadable; "
                               "retry", retry_after_ms=OUTAGE_RETRY_AFTER_MS) from None
        assert bound.cancelled_caught
        raise Rejected(ErrorCode.UNAVAILABLE, "the database did not answer in time; retry",
                       retry_after_ms=OUTAGE_RETRY_AFTER_MS)

    def _refuse_or_redirect(self, code: str, route: SessionRoute) -> None:
        """The lease of ``code`` is held and the session is not here: redirect to its owner's
        own address (rule 7), or refuse with ``unavailable`` for as long as its lease runs."""
        owner = route.owner
        assert owner is not None
        if owner.node != self.node and route.url is not None and route.url != self.url:
            self.engine.metrics.route_event("redirect")
            raise Moved(code, route.url)
        if owner.node != self.node and route.url is not None:
            # Two nodes registered one URL: a redirect would point at ourselves. A deployment
            # error (docs/operations.md: every node has its own address); never loop on it.
            log.error("session %s: its owner %s has our public URL %s; give every node its own",
                      code, owner.node, self.url)
        # The owner's registration lapsed (it died, or lost Redis), or the owner is a previous
        # run of this very node (killed, restarted under its name): nobody serves the session
        # until its lease lapses, then the next request takes it over here.
        self.engine.metrics.route_event("lease_wait")
        raise Rejected(ErrorCode.UNAVAILABLE,
                       f"session {code} is moving: its node is gone, its lease lapses in "
                       f"{route.ttl_ms} ms; retry then", retry_after_ms=route.ttl_ms)

    async def _take_over(self, code: str, snapshot: Any) -> LiveSession | None:
        """Take ``code`` over (rule 2), or raise and leave nothing half done (rule 6).

        One takeover per session at a time on this node: a concurrent caller (a whole pub
        resumes at once) waits for the one under way and gets its session (or None, if it found
        none), or ``unavailable`` if that one failed. A step that fails (the database or Redis
        away, a snapshot that cannot be read, the engine stopping) releases the lease taken for
        it, so the next attempt starts clean with a higher epoch and no epoch ever has two
        owners. The database's epoch may have been raised already (``claim_session`` committed):
        that only fences the old owner sooner, and the next attempt claims above it.
        """
        running = self._taking.get(code)
        if running is not None:
            await running.done.wait()
            if code in self.engine.sessions:
                return self.engine.sessions[code]
            if running.no_session:
                return None
            raise Rejected(ErrorCode.UNAVAILABLE, "the takeover of this session did not "
                           "complete; retry", retry_after_ms=OUTAGE_RETRY_AFTER_MS)
        attempt = self._taking[code] = _Attempt()
        try:
            session = await self._take_over_now(code, snapshot)
            attempt.no_session = session is None
            return session
        finally:
            del self._taking[code]
            attempt.done.set()

    async def _take_over_now(self, code: str, snapshot: Any) -> LiveSession | None:
        engine = self.engine
        if code in engine.sessions:  # another connection finished the takeover meanwhile
            return engine.sessions[code]
        started = engine.clock()
        row = await engine.store.load_session(code)
        if row is None or row.status != "live":
            return None
        lease = await self.keeper.acquire(code, at_least=max(row.epoch, snapshot.epoch) + 1)
        if lease is None:
            raise Rejected(ErrorCode.BUSY, "another node is taking this session over; retry")
        try:
            # Read again now that our epoch is taken: a paused owner may have stored a newer
            # snapshot (and shown its events) until that moment, never after it (output
            # commit: its writes are fenced from here on).
            snapshot = await self.redis.load_snapshot(code) or snapshot
            await engine.store.claim_session(code, lease.epoch, owner=self.node)
            state = read_state(snapshot.data)
            game, resume = state.game, state.resume_hashes
            joins, answers = await self._replay(code, game, resume, snapshot.watermark)
            # Above anything the old owner stored, also after its last snapshot: our events
            # must not collide with its rows, nor our score rows lose to its newer seqs.
            stored_seq = await engine.store.last_seq(code)
            seq = max([state.seq, stored_seq, *(a.seq for a in answers)]) + 1
            # Synchronous from here on: once adopted, nothing can fail half way.
            session = engine.adopt_session(
                code=code, game=game, host_token_hash=state.host_token_hash,
                epoch=lease.epoch, seq=seq, created_at=state.created_at,
                resume_hashes=resume)
        except BaseException as exc:
            log.warning("session %s: takeover at epoch %d abandoned, lease released: %r",
                        code, lease.epoch, exc)
            # Shielded and bounded: a cancelled caller still hands the lease back (if Redis
            # does not answer, the keeper has stopped renewing it and it lapses).
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.keeper.release(code)
            raise
        self.takeovers += 1
        engine.metrics.lease_event("taken_over")
        engine.metrics.snapshot_event("loaded")
        log.info("session %s taken over at epoch %d: %d joins and %d answers replayed in %.3fs",
                 code, lease.epoch, joins, len(answers), engine.clock() - started)
        return session

    async def _replay(self, code: str, game: GameSession, resume: dict[int, str],
                      watermark: int) -> tuple[int, list[Any]]:
        store = self.engine.store
        joins = 0
        for row in await store.load_participants(code):
            if row.participant_id < game.next_participant_id:
                continue  # in the snapshot, or forgotten (left the lobby) before it
            events = game.apply(commands.Join(name=row.name, team=row.team), row.joined_at)
            joined = [e.participant for e in events if isinstance(e, ParticipantJoined)]
            if joined != [row.participant_id]:
                log.error("session %s: replayed join of %d got another id", code,
                          row.participant_id)
            resume[row.participant_id] = row.resume_token_hash
            joins += 1
        answers = await store.load_answers(code, after_seq=watermark)
        for answer in answers:
            try:
                game.apply(commands.SubmitAnswer(participant=answer.participant_id,
                                                 question=answer.question, value=answer.value,
                                                 request_id=answer.request_id),
                           answer.submitted_at)
            except Rejected as exc:
                log.error("session %s: replayed answer %d/%d refused: %s", code,
                          answer.participant_id, answer.request_id, exc)
        # Then who left or was removed after the snapshot (nobody answers after leaving, so
        # after the answers is their order too). A leave in the lobby forgets the player again.
        departures = await store.load_events(code, after_seq=watermark,
                                             types=("participant_left", "participant_kicked"))
        for event in departures:
            pid = event.payload.get("participant")
            if not isinstance(pid, int):
                continue
            who = game.participants.get(pid)
            if who is None or not who.active:
                continue
            command: commands.Command = (commands.Leave(participant=pid)
                                         if event.type == "participant_left"
                                         else commands.Kick(participant=pid))
            try:
                game.apply(command, event.at)
            except Rejected as exc:
                log.error("session %s: replayed %s of %d refused: %s", code, event.type, pid,
                          exc)
            if pid not in game.participants:
                resume.pop(pid, None)  # forgotten: its token no longer resumes
        return joins, answers
