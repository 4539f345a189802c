"""One client connection: handshake, identity, rate limits, and dispatch to its session.

Rules this module keeps:

1. **Identity comes from the connection.** A connection becomes a player, host or display
   only through ``join``/``resume``/``host``/``watch``; the participant id of every later
   command is the one bound to the connection, never a field the client sends.
2. **Bad input costs the sender, nobody else.** A frame that does not decode, a message the
   role may not send, a refused command: each gets an ``error`` with a stable code and the
   connection stays open, unless the code says to close (oversize, text frames, a wrong
   operator key) or the client keeps flooding (rate-limited past ``flood_strikes``, which decay
   one per ``flood_strike_decay`` seconds: close 1008).
3. **Every wait has a deadline.** A connection that does not identify itself within
   ``join_timeout`` is closed (``handshake_timeout``); a wrong join code looks the same whether
   or not the code exists, and guesses are rate limited per address. The deadline is kept
   by the engine's ``join_timeouts`` queue (``server/timeouts.py``: one task for every
   connection, no cancel scope each), which answers and closes a connection still waiting
   for its join frame; a wait other than for a frame (a lookup in the session directory, a
   takeover) runs under a cancel scope at the same deadline, entered only for that wait.
4. **A refused frame is never built.** The message rate is charged before a frame is decoded,
   and a frame over ``max_frame_bytes`` must carry the right operator key (read by a bounded
   skim, ``codec.peek``) before its body is decoded; wrong operator keys are limited per
   address. What an unauthenticated peer can make the engine build is one ``max_frame_bytes``
   frame per message the rate allows.
5. **An outage is an answer, never a crash.** A database or Redis call that a client's frame
   needs (finding or taking over a session, creating one, a durable ack) and that fails is
   answered ``unavailable`` with ``retry_after_ms``; the connection stays open. The errors are
   mapped here, at the boundary, once: ``StoreError`` and ``CoordinationError`` (the store's and
   the Redis module's translations of their drivers' exceptions), never a bare ``Exception``.
   The callers below leave nothing half done when they raise (see ``failover``).
6. **Frames are handled in order, answers a pass at a time.** A connection's frames are
   handled in the order they arrived. An answer is handed to the session's intake
   (``LiveSession.submit_answer``) without waiting, so the answers of one scheduler pass are
   applied together (session rule 8); any other frame that follows an answer of the same
   connection waits until that answer's outcome is decided (its error or its ack sent), and
   so does the refusal of a frame that does not decode (or is throttled), so replies keep the
   order of the requests. A connection has at most ``ANSWERS_PER_PASS`` answers submitted and
   unanswered; at the bound it waits for their replies, so one flooding socket adds at most
   that many answers to a pass and cannot starve the others.
7. **An answer, a join and a resume cost no task switch.** With the Linux reader, a
   connection gives its WebSocket a consumer: before it joins, ``_take_entry_now`` handles a
   ``join`` or ``resume`` for a session on this node in the reader's pass; a player's
   ``_take_answers_now`` submits the answers at the head of what the reader read. Each works
   while the connection's task waits, and the task is woken only for what is left (any other
   message, a frame to refuse, an entry that needs the session directory, an answer over the
   bound). What a consumer takes is checked as ``_decode`` and ``_identify`` / ``_dispatch``
   would check it, in the same order, so the outcome of every frame, and the order of the
   replies, is the same either way; its log lines carry the connection's fields explicitly
   (they are logged from the reader's task). (The portable reader has no pass to hook: its
   task takes every frame.)
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from typing import Any, Final

import trio

from pubquiz_engine.errors import (
    CloseCode,
    ErrorCode,
    ProtocolError,
    QuizFileError,
    Rejected,
    RemoteError,
    StoreError,
)
from pubquiz_engine.game import commands
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server import credentials
from pubquiz_engine.server.failover import OUTAGE_RETRY_AFTER_MS, Moved
from pubquiz_engine.server.ports import ConnectionHost
from pubquiz_engine.server.ratelimit import TokenBucket
from pubquiz_engine.server.session import AnswerSubmission, LiveSession, Member
from pubquiz_engine.server.timeouts import Timeout
from pubquiz_engine.server.transport import ConnectionClosed, WebSocket
from pubquiz_engine.snapshot.records import CoordinationError

log = logging.getLogger(__name__)
_conn_ids = itertools.count(1)

#: What joins a session with a join code (a tuple: ``A | B`` builds a union at every call).
_ENTRIES: Final = (m.Join, m.Host, m.Watch)

#: Answers one connection may have submitted and not yet answered (rule 6).
ANSWERS_PER_PASS: Final = 16

#: A connection's own frames are encoded on the trio thread only: one reused packer.
_encoder = codec.Encoder()
_encode = _encoder.encode
_encode_error = _encoder.encode_error

# Host commands without arguments, from wire type to game command.
_HOST_SIMPLE: dict[type[m.Message], Callable[[], commands.Command]] = {
    m.Start: commands.Start,
    m.Next: commands.Next,
    m.Close: commands.CloseQuestion,
    m.Pause: commands.Pause,
    m.Unpause: commands.Unpause,
    m.Reveal: commands.Reveal,
    m.Skip: commands.Skip,
}


def _host_command(msg: m.Message) -> commands.Command | None:
    simple = _HOST_SIMPLE.get(type(msg))
    if simple is not None:
        return simple()
    if isinstance(msg, m.Extend):
        return commands.Extend(seconds=float(msg.seconds))
    if isinstance(msg, m.ShowLeaderboard):
        return commands.ShowLeaderboard(round=msg.round)
    if isinstance(msg, m.Mark):
        return commands.Mark(question=msg.q, participant=msg.participant, correct=msg.correct)
    if isinstance(msg, m.Adjust):
        return commands.AdjustScore(participant=msg.participant, delta=msg.delta,
                                    reason=msg.reason)
    if isinstance(msg, m.Kick):
        return commands.Kick(participant=msg.participant)
    if isinstance(msg, m.End):
        return commands.End()
    return None


def _player_command(msg: m.Message, participant: int) -> commands.Command | None:
    if isinstance(msg, m.Joker):
        return commands.PlayJoker(participant=participant, round=msg.round)
    if isinstance(msg, m.Wager):
        return commands.PlaceWager(participant=participant, round=msg.round, amount=msg.amount)
    if isinstance(msg, m.Leave):
        return commands.Leave(participant=participant)
    return None


def _comparable_seq(last_seq: int | None, epoch: int | None, current: int) -> int | None:
    """``last_seq`` if it counts in the session's ``current`` epoch, else None (a full
    ``state``, SPEC 13.4). Seqs compare only within one epoch: after a takeover the new owner
    may reuse a seq the old one broadcast and never stored, and an ``events`` replay from it
    would leave the client on a view that never happened. A client that names no epoch
    (nil) is trusted only while the session has had no takeover (epoch 1: every session
    starts there, and each takeover raises it)."""
    if epoch is None:
        return last_seq if current == 1 else None
    return last_seq if epoch == current else None


class _OperatorLockout(Rejected):
    """An address out of operator-key attempts: ``rate_limited``, and the connection closed."""

    @property
    def close_code(self) -> CloseCode | None:
        return CloseCode.POLICY_VIOLATION


class Connection:
    """The handler of one WebSocket (the engine runs ``handle`` for each).

    ``engine`` is what the connection needs from the engine (``ports.ConnectionHost``): it
    admits the address, finds or creates the session, and holds the shared limits."""

    # Rule 6: answers submitted and not yet answered, and the event their last reply sets.
    # Class-level defaults: an idle connection's instance dict does not hold them.
    _unanswered: int = 0
    _answered: trio.Event | None = None
    # Errors ``_decode`` refused a frame with while answers were unanswered: they go out
    # after those answers' replies (rule 6).
    _held: list[tuple[Any, ...]] | None = None
    # Rule 3: the join deadline (None once met, or for an operator's connection); in a
    # lookup, which keeps that deadline with a scope of its own; the deadline passed during
    # one; the connection met its deadline with a timeout.
    _join_timer: Timeout[Connection] | None = None
    _looking_up: bool = False
    _overdue: bool = False
    _timed_out: bool = False

    def __init__(self, engine: ConnectionHost, ws: WebSocket, address: str) -> None:
        self.engine = engine
        self.ws = ws
        self.address = address
        self.id = next(_conn_ids)
        self.member: Member | None = None
        self.session: LiveSession | None = None
        cfg = engine.config
        self._limits = engine.frame_limits
        now = trio.current_time()
        self._bucket = TokenBucket(cfg.message_rate, cfg.message_burst, stamp=now)
        # Strikes as a bucket too: flood_strikes - 1 are forgiven (with a warning), the next one
        # closes; one comes back every flood_strike_decay seconds, so an old burst is forgotten.
        self._strikes = TokenBucket(1.0 / cfg.flood_strike_decay, cfg.flood_strikes - 1,
                                    stamp=now)

    # --- plumbing -----------------------------------------------------------------------------

    def _send(self, message: m.Message) -> None:
        self.ws.send(_encode(message))

    def _error(self, rid: int | None, code: ErrorCode, message: str, *,
               close: CloseCode | None = None, retry_after_ms: int | None = None) -> None:
        """Answer ``error{rid, code}``; then close with ``close``, or the code's own close code
        if it has one."""
        if self._held is not None:
            self._held.append((rid, code, message, close, retry_after_ms))
            return
        # ``code._value_``: the plain str (measured per call: ``str()`` of a StrEnum member
        # 0.56 us, an f-string of one 1.48 us, ``.value`` 0.50 us, ``._value_`` 0.17 us; a
        # refused answer needs it three times). The ``ErrorReply`` is not built: its bytes are
        # encoded directly (``encode_error``, ~4 us less).
        self.ws.send(_encode_error(rid, code._value_, message[:1000], code.retryable,
                                   retry_after_ms))
        self.engine.metrics.frame_error(code._value_)
        close = close if close is not None else code.close_code
        if close is not None:
            self.ws.close(close, f"{code._value_}: {message}"[:120])

    def session_code(self) -> str | None:
        """The code of the session this connection is in (for log lines)."""
        return self.session.code if self.session is not None else None

    def _decode(self, data: bytes | str) -> m.Message | None:
        """The client message in ``data``, or None after answering an undecodable one (or a
        throttled one). Synchronous: the receive happens in ``handle`` itself, one coroutine
        frame less per idle connection.

        Order (issue 16): the token bucket is charged *before* anything is built, and a frame
        over ``max_frame_bytes`` (only an operator's ``create_session`` may be) must show the
        operator key before its body is decoded. A refused frame costs a bounded skim of its
        top-level map (``codec.peek``) for its ``rid``, never a decode; a frame that passes both
        is at most ``max_frame_bytes`` unless its sender holds the operator key.
        """
        self.engine.metrics.message_in()
        if isinstance(data, str):
            # The transport takes text as RFC 6455 says; pubquiz.v1 is binary only (SPEC
            # section 2): error{rid: nil, code: text_frame}, then close 1003.
            self._error(None, ErrorCode.TEXT_FRAME, "pubquiz.v1 accepts binary messages only")
            return None
        now = trio.current_time()
        if not self._bucket.take(now):
            # The rid from the skim, so that a client waiting on it learns it must retry.
            self._throttled(codec.peek(data, limits=self._limits).rid, now)
            return None
        if len(data) > self._limits.max_frame_bytes:
            envelope = codec.peek(data, limits=self._limits)
            # Anything but a create_session is refused by decode on its size alone, unbuilt.
            if envelope.type == m.CreateSession.TYPE:
                try:
                    self._check_operator(envelope.key)
                except RemoteError as exc:
                    self._error(envelope.rid, exc.code, exc.message, close=exc.close_code)
                    return None
        try:
            return codec.decode(data, limits=self._limits)
        except ProtocolError as exc:
            self._error(getattr(exc, "rid", None), exc.code, exc.message)
            return None

    async def _decode_in_order(self, data: bytes | str) -> m.Message | None:
        """``_decode`` while answers wait for their replies: a refusal of this frame goes out
        after them (rule 6), the message itself is dispatched in order by ``_dispatch``."""
        self._held = []
        try:
            msg = self._decode(data)
        finally:
            held, self._held = self._held, None
        if held:
            await self._wait_answered()
            for rid, code, message, close, retry_after_ms in held:
                self._error(rid, code, message, close=close, retry_after_ms=retry_after_ms)
        return msg

    def _throttled(self, rid: int | None, now: float) -> None:
        """Answer a rate-limited message: a strike, and the connection closed when the strikes
        run out (they come back one per ``flood_strike_decay`` seconds)."""
        if self._strikes.take(now):
            self._error(rid, ErrorCode.RATE_LIMITED, "too many messages; slow down")
        else:
            self._error(rid, ErrorCode.RATE_LIMITED, "too many messages",
                        close=CloseCode.POLICY_VIOLATION)

    # --- the life of a connection -------------------------------------------------------------

    async def handle(self) -> None:
        engine = self.engine
        if engine.stopping:
            self.ws.close(CloseCode.SERVICE_RESTART, "server restarting")
            return
        if not engine.admit(self.address):
            self._error(None, ErrorCode.TOO_MANY_CONNECTIONS,
                        "too many connections from your address")
            return
        log.debug("connection opened")
        ws = self.ws
        try:
            self._join_timer = engine.join_timeouts.add(self)
            ws.set_consumer(self._take_entry_now)  # rule 7
            while not ws.closed:
                if self.member is None and self._overdue:
                    self._time_out()  # it passed in a lookup that then failed
                    break
                data = await ws.receive()
                if self.member is None:
                    if self._timed_out:
                        # The deadline passed while this frame waited for the task to run:
                        # it came too late (the connection is closing), as under a cancel
                        # scope.
                        break
                    msg = self._decode(data)
                    if msg is not None:
                        await self._identify(msg)
                        if self.member is not None:
                            self._joined()
                    continue
                # A member (maybe joined by ``_take_entry_now`` while this task waited).
                if self._unanswered:
                    msg = await self._decode_in_order(data)
                else:
                    msg = self._decode(data)
                if msg is not None:
                    await self._dispatch(msg)
        except ConnectionClosed:
            pass
        finally:
            self._meet_join_deadline()
            ws.set_consumer(None)
            if self.session is not None and self.member is not None:
                self.session.detach(self.member)
            engine.release(self.address)
            log.debug("connection closed (%s)",
                      self.member.role if self.member is not None else "never joined")

    async def _identify(self, msg: m.Message) -> None:
        """Handle a message from a connection that is not yet a member of a session."""
        rid = getattr(msg, "rid", None)
        try:
            if isinstance(msg, m.Ping):
                self._send(m.Pong(rid=msg.rid))
            elif isinstance(msg, m.CreateSession):
                await self._create_session(msg)
            elif isinstance(msg, m.Generate):
                await self._generate(msg)
            elif isinstance(msg, m.Resume):
                # A valid resume token (192 random bits) cannot be guessed, so a reconnect storm
                # of a whole pub behind one address is not throttled; failed resumes count
                # like failed joins.
                try:
                    await self._enter(msg)
                except Rejected as exc:
                    raise self._failed_resume(exc) from None
            elif isinstance(msg, _ENTRIES):
                if not self.engine.join_limiter.take(self.address, trio.current_time()):
                    raise self._join_throttled()
                await self._enter(msg)
            else:
                raise Rejected(ErrorCode.NOT_JOINED, "join, resume, host or watch first")
        except (Moved, RemoteError, StoreError, CoordinationError) as exc:
            self._not_entered(msg, rid, exc)

    def _not_entered(self, msg: m.Message, rid: int | None,
                     exc: Moved | RemoteError | StoreError | CoordinationError) -> None:
        """Answer an entry that failed: a redirect, a refusal, or an outage (rule 5)."""
        if isinstance(exc, Moved):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s redirected to %s", msg.TYPE, exc.url, extra=self._log_extra())
            self._send(m.Redirect(rid=rid, code=exc.session_code, url=exc.url))
            self.ws.close(CloseCode.MOVED, "the session lives on another node")
        elif isinstance(exc, RemoteError):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s refused: %s", msg.TYPE, exc, extra=self._log_extra())
            self._error(rid, exc.code, exc.message, close=exc.close_code,
                        retry_after_ms=exc.retry_after_ms)
            if exc.retryable:
                self._restart_join_window()
        else:
            self._outage(rid, msg, exc)
            self._restart_join_window()

    def _joined(self) -> None:
        """The connection became a member: no join deadline any more, and a player's answers
        are taken in the reader's pass (rules 3 and 7)."""
        self._meet_join_deadline()
        member = self.member
        assert member is not None
        self.ws.set_consumer(self._take_answers_now if member.role == "player" else None)

    def _take_entry_now(self) -> None:
        """Rule 7 for the first message: the reader's pass brought a frame while the task
        waits, before this connection joined. A ``join`` or ``resume`` for a session that lives
        here is handled now, as ``_decode`` and ``_identify`` would handle it; anything else
        (another message, a frame to refuse, a code or token this node does not hold a live
        session for, a limit reached) stays at the head for the task, which answers it exactly
        as before.
        """
        ws, limits, engine = self.ws, self._limits, self.engine
        data = ws.peek_message()
        if data is None or isinstance(data, str) or len(data) > limits.max_frame_bytes:
            return
        now = trio.current_time()
        if not self._bucket.can_take(now):
            return  # throttled: the task answers it
        try:
            msg = codec.decode(data, limits=limits)
        except ProtocolError:
            return  # the task decodes it again and answers the error
        if isinstance(msg, m.Join):
            if not engine.join_limiter.can_take(self.address, now):
                return  # over the address's joins: the task answers it
            code = credentials.normalise_code(msg.code)
            participant = 0
        elif isinstance(msg, m.Resume):
            parsed = credentials.parse_resume_token(msg.token)
            if parsed is None:
                return  # refused (and counted) by the task
            code, participant, _secret = parsed
        else:
            return
        session = engine.local_session(code) if code is not None else None
        if session is None or session.end_reason is not None:
            return  # the session directory's to find, or a refusal: the task's
        ws.receive_nowait()
        engine.metrics.message_in()
        self._bucket.take(now)
        try:
            if isinstance(msg, m.Join):
                engine.join_limiter.take(self.address, now)
                self._join(session, msg)
            else:
                try:
                    self._resume(session, msg, participant)
                except Rejected as exc:
                    raise self._failed_resume(exc) from None
        except (RemoteError, StoreError, CoordinationError) as exc:
            self._not_entered(msg, msg.rid, exc)
            return
        self._joined()
        self._take_answers_now()  # answers sent right behind the entry, in order

    def _restart_join_window(self) -> None:
        """A client that retries as told is not idle: its join window starts again (issue
        19.14: a pub behind one address joins at the limiter's pace; an outage is waited out)."""
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = self.engine.join_timeouts.add(self)

    def _meet_join_deadline(self) -> None:
        """Joined, closed, or an operator: no join deadline any more (rule 3)."""
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None

    def _join_timed_out(self) -> None:
        """The join deadline passed (the engine's ``join_timeouts`` calls this, rule 3):
        answer ``handshake_timeout`` and close; the task, waiting for a frame, sees the close.

        A task in a lookup is ended by the lookup's own scope at the same deadline; if the
        lookup returns all the same (done in the pass the deadline passed), a session joins,
        and a failure is answered first and then timed out, as under one scope for it all."""
        self._join_timer = None
        if self.member is not None or self.ws.closed:
            return
        if self._looking_up:
            self._overdue = True
            return
        self._time_out()

    def _time_out(self) -> None:
        self._meet_join_deadline()
        self._timed_out = True
        self._error(None, ErrorCode.HANDSHAKE_TIMEOUT, "no join within the time limit")

    async def _find_session(self, code: str) -> LiveSession | None:
        """The live session ``code``: here, or through the session directory (maybe a
        takeover). Only the second waits, and only then under the join deadline (rule 3)."""
        engine = self.engine
        session = engine.local_session(code)
        if session is not None or not engine.asks_directory:
            return session
        timer = self._join_timer
        deadline = timer.deadline if timer is not None else math.inf
        self._looking_up = True
        try:
            with trio.move_on_at(deadline):
                return await engine.find_session(code)
        finally:
            self._looking_up = False
        # The deadline passed in the lookup: the lookup is abandoned (it leaves nothing half
        # done, see ``failover``) and the connection timed out.
        self._time_out()
        raise ConnectionClosed(CloseCode.POLICY_VIOLATION, ErrorCode.HANDSHAKE_TIMEOUT._value_)

    def _failed_resume(self, refusal: Rejected) -> Rejected:
        """What a refused resume is answered: its refusal, counted against the address like a
        failed join (a retryable one is not a failure), or ``rate_limited`` once the address
        has no attempts left."""
        if refusal.retryable or self.engine.join_limiter.take(self.address, trio.current_time()):
            return refusal
        return self._join_throttled()

    def _join_throttled(self) -> Rejected:
        """``rate_limited`` for a join over the address's allowance, with when to retry."""
        wait = self.engine.join_limiter.wait_time(self.address, trio.current_time())
        return Rejected(ErrorCode.RATE_LIMITED, "too many join attempts from your address; wait",
                        retry_after_ms=max(1, math.ceil(wait * 1000)))

    def _outage(self, rid: int | None, msg: m.Message,
                exc: StoreError | CoordinationError) -> None:
        """A store or Redis call this request needed failed (rule 5): ``unavailable``."""
        what = "the database" if isinstance(exc, StoreError) else "the session directory"
        log.warning("%s refused: %s is unavailable: %s", msg.TYPE, what, exc,
                    extra=self._log_extra())
        self._error(rid, ErrorCode.UNAVAILABLE, f"{what} is unavailable; retry",
                    retry_after_ms=OUTAGE_RETRY_AFTER_MS)

    async def _session_for(self, raw_code: str) -> LiveSession:
        code = credentials.normalise_code(raw_code)
        session = await self._find_session(code) if code is not None else None
        if session is None or session.end_reason is not None:
            # The same answer for a code that never existed and one that ended: a guesser
            # learns nothing about which codes are live.
            raise Rejected(ErrorCode.BAD_CODE, "no live session has that code")
        return session

    async def _enter(self, msg: m.Join | m.Resume | m.Host | m.Watch) -> None:
        if isinstance(msg, m.Resume):
            parsed = credentials.parse_resume_token(msg.token)
            if parsed is None:
                raise Rejected(ErrorCode.BAD_TOKEN, "unknown or wrong resume token")
            code, participant, _secret = parsed
            session = await self._find_session(code)
            if session is None or session.end_reason is not None:
                raise Rejected(ErrorCode.BAD_TOKEN, "unknown or wrong resume token")
            self._resume(session, msg, participant)
            return
        if isinstance(msg, m.Join):
            self._join(await self._session_for(msg.code), msg)
            return
        elif isinstance(msg, m.Host):
            session = await self._session_for(msg.code)
            session.check_host(msg.token)
            member = Member(ws=self.ws, role="host", conn_id=self.id)
            session.attach_watcher(member, msg.rid,
                                   _comparable_seq(msg.last_seq, msg.epoch, session.epoch))
        else:
            session = await self._session_for(msg.code)
            member = Member(ws=self.ws, role="display", conn_id=self.id)
            session.attach_watcher(member, msg.rid,
                                   _comparable_seq(msg.last_seq, msg.epoch, session.epoch))
        self._entered(session, member)

    def _resume(self, session: LiveSession, msg: m.Resume, participant: int) -> None:
        member = Member(ws=self.ws, role="player", conn_id=self.id)
        session.resume(member, msg.rid, participant, msg.token,
                       _comparable_seq(msg.last_seq, msg.epoch, session.epoch))
        self._entered(session, member)

    def _join(self, session: LiveSession, msg: m.Join) -> None:
        member = Member(ws=self.ws, role="player", conn_id=self.id)
        session.join(member, msg.rid, msg.name, msg.team)
        self._entered(session, member)

    def _entered(self, session: LiveSession, member: Member) -> None:
        self.session, self.member = session, member
        if log.isEnabledFor(logging.DEBUG):
            log.debug("entered session %s (epoch %d) as %s %s", session.code, session.epoch,
                      member.role, member.participant, extra=self._log_extra())

    def _log_extra(self) -> dict[str, object]:
        """This connection's log fields, given explicitly: an entry taken in the reader's pass
        (rule 7) is logged from the reader's task, where the fields bound for this
        connection's own task are not."""
        return {"conn": self.id, "session": self.session_code()}

    def _check_operator(self, given: str | None) -> None:
        """The operator key, compared in constant time. A connection that showed it is an
        operator's: it may stay without joining a session (no join deadline).

        Wrong keys are limited per address (``operator_attempt_burst``, refilled at
        ``operator_attempt_rate``): a wrong key is ``bad_key`` and closes the connection (1008);
        an address out of attempts is refused ``rate_limited`` and closed before its key is
        even compared, so a guesser cannot tell a right key from a wrong one meanwhile.
        """
        engine = self.engine
        now = trio.current_time()
        if not engine.operator_limiter.can_take(self.address, now):
            raise _OperatorLockout(ErrorCode.RATE_LIMITED,
                                   "too many wrong operator keys from your address; wait")
        key = engine.config.operator_key
        if not key or given is None or not credentials.same_secret(given, key):
            engine.operator_limiter.take(self.address, now)
            raise Rejected(ErrorCode.BAD_KEY, "wrong operator key")
        self._meet_join_deadline()

    async def _generate(self, msg: m.Generate) -> None:
        self._check_operator(msg.key)
        session = await self._session_for(msg.code)
        self._send(await self.engine.generate_round(session, msg))

    async def _create_session(self, msg: m.CreateSession) -> None:
        self._check_operator(msg.key)
        try:
            session, host_token = await self.engine.create_session_from_request(
                quiz_path=msg.quiz_path, quiz_data=msg.quiz, mode=msg.mode, options=msg.options)
        except QuizFileError as exc:
            raise Rejected(ErrorCode.INVALID_COMMAND,
                           "quiz refused: " + "; ".join(exc.problems[:20])) from None
        # A kill -9 right after this reply must not lose the session: its record (and with
        # Redis its first snapshot) is stored first.
        if not await session.wait_released(session.outbox_mark):
            raise Rejected(ErrorCode.UNAVAILABLE, "the session could not be saved; retry",
                           retry_after_ms=1000)
        self._send(m.SessionCreated(rid=msg.rid, code=session.code, host_token=host_token))

    async def _dispatch(self, msg: m.Message) -> None:
        session, member = self.session, self.member
        assert session is not None and member is not None
        rid: int | None = getattr(msg, "rid", None)
        # Rule 6: an answer waits only at the bound; anything else waits for the replies to
        # this connection's answers before it.
        if isinstance(msg, m.Answer):
            if self._unanswered >= ANSWERS_PER_PASS:
                await self._wait_answered()
        elif self._unanswered:
            await self._wait_answered()
        try:
            if isinstance(msg, m.Ping):
                self._send(m.Pong(rid=msg.rid))
                return
            if session.end_reason is not None:
                raise Rejected(ErrorCode.SESSION_ENDED, "this session has ended")
            if member.role == "host":
                command = _host_command(msg)
            elif member.role == "player" and member.participant is not None:
                if isinstance(msg, m.Answer):
                    self._submit_answer(session, member, msg)
                    return
                command = _player_command(msg, member.participant)
            else:
                command = None
            if command is None:
                if isinstance(msg, m.Join | m.Resume | m.Host | m.Watch | m.CreateSession):
                    raise Rejected(ErrorCode.ALREADY_JOINED, "this connection already joined")
                raise Rejected(ErrorCode.FORBIDDEN, f"a {member.role} may not send {msg.TYPE}")
            session.command(command)
            assert rid is not None
            # Behind the events the command produced: ``ok`` only once they are durable.
            session.reply(member, m.Ok(rid=rid))
            if isinstance(command, commands.Leave):
                session.close_member(member, CloseCode.NORMAL, "left the session")
        except RemoteError as exc:
            self._error(rid, exc.code, exc.message, close=exc.close_code,
                        retry_after_ms=exc.retry_after_ms)
        except (StoreError, CoordinationError) as exc:
            self._outage(rid, msg, exc)

    def _take_answers_now(self) -> None:
        """Rule 7: the reader's pass brought this player's frames while its task waits in
        ``receive()``: submit the answers at the head of the queue here, as ``_decode`` and
        ``_dispatch`` would, and leave everything else (in order) to the task.

        A frame is taken only if it is an answer that nothing would refuse before the
        session: binary, at most ``max_frame_bytes``, a token in the bucket (checked before
        anything is built, rule 4), decodable, the session live, fewer than
        ``ANSWERS_PER_PASS`` unanswered. Any other frame stops the loop and stays at the
        head, so the task handles it, and every refusal, exactly as before.
        """
        ws, session, member = self.ws, self.session, self.member
        if session is None or member is None or member.participant is None:
            return
        limits, bucket = self._limits, self._bucket
        while self._unanswered < ANSWERS_PER_PASS and session.end_reason is None:
            data = ws.peek_message()
            if data is None or isinstance(data, str) or len(data) > limits.max_frame_bytes:
                return
            now = trio.current_time()
            if not bucket.can_take(now):
                return  # throttled: the task answers it (a strike, maybe a close)
            try:
                msg = codec.decode(data, limits=limits)
            except ProtocolError:
                return  # the task decodes it again and answers the error in order
            if type(msg) is not m.Answer:
                return
            ws.receive_nowait()
            self.engine.metrics.message_in()
            bucket.take(now)
            self._submit_answer(session, member, msg)

    def _submit_answer(self, session: LiveSession, member: Member, msg: m.Answer) -> None:
        """Hand an answer to the session's intake, applied with the rest of this pass; the
        reply comes through ``_answered_one`` (rules 6 and 7)."""
        self._unanswered += 1
        session.submit_answer(member, msg.q, msg.value, msg.rid,
                              durable=self.engine.config.ack_mode == "durable",
                              done=self._answered_one)

    async def _wait_answered(self) -> None:
        """Wait until every answer this connection submitted has its reply decided."""
        while self._unanswered:
            if self._answered is None:
                self._answered = trio.Event()
            await self._answered.wait()

    def _answered_one(self, submission: AnswerSubmission) -> None:
        """The session decided an answer's outcome (``AnswerSubmission.done``): its ack went
        out, or its error is answered here, or (the session stopped unsaved) nothing is."""
        metrics = self.engine.metrics
        error = submission.error
        if submission.accepted:
            metrics.answer_accepted()
        elif error is not None:
            metrics.answer_rejected(error.code._value_)
        if error is not None:
            self._error(submission.rid, error.code, error.message, close=error.close_code,
                        retry_after_ms=error.retry_after_ms)
        elif submission.acked:
            metrics.ack_latency(trio.current_time() - submission.started)
        self._unanswered -= 1
        if not self._unanswered and self._answered is not None:
            self._answered.set()
            self._answered = None


def client_address(ws: WebSocket, trust_forwarded_for: bool) -> str:
    """The client's address: the peer's, or the first X-Forwarded-For hop behind our proxy."""
    if trust_forwarded_for:
        for name, value in ws.request_headers:
            if name.lower() == "x-forwarded-for" and value.strip():
                return value.split(",")[0].strip()
    remote: Any = ws.remote_address
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return str(remote)
