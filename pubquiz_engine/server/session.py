"""A live session: one nursery, one writer, its members, its timer and its replay buffer.

Rules this module keeps:

1. **One writer.** Only this object applies commands to its ``GameSession``, and every entry
   point (``join``, ``resume``, ``command``, ``tick``) is synchronous: it applies, numbers the
   events, renders them, hands the bytes to the members' transports (eager writes) and queues
   the records for the write-behind persister, all without awaiting. Nothing can interleave,
   so the state needs no lock and the seq order is the order members see.
2. **Encode once.** A broadcast is encoded and framed once; the same bytes go to every member
   of its audience and into the replay buffer.
3. **The session's tasks live in its nursery** (``run``): the timer that closes questions at
   their server-side deadline and ends an idle session. Ending the session cancels that nursery
   and closes every member with a reason (4001 when it ended, 1012 when the engine stops).
4. **Resume is exact.** A player who comes back with ``last_seq`` gets every event of their
   audience after it, in order, from the bounded replay buffer, or one ``state`` when the gap is
   older than the buffer. Welcome, replay and re-attachment happen in one synchronous step, so
   no event can fall between them.
5. **Nothing accepted is lost.** New work (answers, joins, host and operator commands) is
   admitted only while the write-behind queue has room: otherwise it is refused (retryable
   ``busy``) before the game sees it. Everything accepted work then writes (the answer, a
   reveal's score rows and events, the session's end) is queued with ``WriteBehind.record``,
   which never refuses: an accepted command always has all its records.
6. **Intake stops before a graceful stop drains.** ``stop_intake`` (the engine's first step on
   SIGTERM) makes every later command, answer and join a retryable ``shutting_down`` and stops
   the timer from closing questions, so the session's state is final: the queue only shrinks
   while the engine drains it, and the final snapshot is the last state anyone saw.
7. **Output commit: nothing a client sees can be undone by a takeover.** Every event with a
   row in the session history (phase changes, joins, kicks, marks, adjustments) opens a
   *chunk* of the session's outbox: its frames, and every frame queued after them (personal
   lines, welcomes, replies, closes), wait there until the write-behind batch holding its
   records has committed (fenced by epoch) and, with Redis, a snapshot at least as new as its
   seq is stored (fenced by epoch). Only then does ``_pump`` hand them to the sockets, in
   order. A zombie owner (paused past its lease, then woken) therefore cannot show anyone a
   phase change: its write is refused as stale, the chunk is dropped, the session fenced.
   One commit covers the event and the answers queued before it (group commit); frames with
   no record of their own (answer counts, acks) go out at once while nothing is held.
8. **Answers are taken a pass at a time.** ``submit_answer`` (sync) only queues an answer on
   the session's intake; the intake task (in the session's nursery) takes everything queued
   since it last ran, which is what the scheduler pass delivered, and applies it in one
   synchronous step: each answer through the game in order, each admitted (rule 5: ``busy``
   before anything changes) and refused on its own, one write-behind ticket for the records of
   the batch, one ``answer_count`` to the hosts (the last of the batch, where the last change
   of the count was), the ``fast`` acks at once. A batch of ``fast`` answers only queues its
   answers' records with ``linger`` (nobody waits for them: the write-behind may group them
   with later ones, its rule 7); whatever else it writes is queued as usual. The ``durable``
   acks of the batch leave together from the ack task once the batch's ticket committed and
   the outbox released what was queued before them (``wait_released``, rule 7: no ack before
   what it covers is durable). A player's replies keep its order: an answer refused behind a
   durable ack still waiting goes out behind that ack. Every submission is answered exactly once
   (``AnswerSubmission.done``), also when the session stops first; an exception while applying
   one answer is that answer's ``internal`` error, never the intake's end.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs
import trio

from pubquiz_engine.errors import (
    CloseCode,
    ErrorCode,
    LocalError,
    Rejected,
    StaleEpoch,
    StoreError,
)
from pubquiz_engine.game import GameSession, Quiz, commands, quiz_to_data
from pubquiz_engine.game import events as ev
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server import credentials, views
from pubquiz_engine.server.transport import WebSocket, frame_binary, send_frame_to_all
from pubquiz_engine.store import (
    AnswerRecord,
    EventRecord,
    ParticipantRecord,
    ScoreRecord,
    SessionEnded,
    SessionRecord,
    Ticket,
    WriteBehind,
)

log = logging.getLogger(__name__)

#: Version of the snapshot map written by ``LiveSession.snapshot`` (see docs/failover.md).
SNAPSHOT_FORMAT = 1

#: Events not worth a row in the session history (derivable from the answers table).
_UNLOGGED = (ev.AnswerAccepted, ev.AnswerCountChanged)

#: The session module's frames are encoded on the trio thread only: one reused packer.
_encoder = codec.Encoder()
_encode = _encoder.encode


@attrs.define(eq=False, slots=True)
class Member:
    """One connected host, display or player of a session. Nothing is sent to it but through
    its session's outbox (``LiveSession._deliver``, rule 7)."""

    ws: WebSocket
    role: str
    conn_id: int
    participant: int | None = None
    audience: int = 0


class AnswerSubmission:
    """One player's answer on its way through the session's intake (rule 8), and its outcome.

    The session calls ``done(self)`` exactly once, when the outcome is decided: ``acked``
    (the ack went out), or ``error`` (the caller answers it), or neither (the session stopped
    on this node before the answer was saved: no reply, the connection is being closed).
    ``accepted`` says whether the game took the answer (a durable one may still fail after).
    """

    __slots__ = ("accepted", "acked", "done", "durable", "error", "member", "question",
                 "queued", "rid", "started", "value")

    def __init__(self, member: Member, question: Any, value: Any, rid: int, *, durable: bool,
                 done: Callable[[AnswerSubmission], None]) -> None:
        self.member = member
        self.question = question
        self.value = value
        self.rid = rid
        self.durable = durable
        self.done = done
        self.started = trio.current_time()
        self.accepted = False
        self.acked = False
        self.error: Rejected | None = None
        self.queued = False  # its reply is decided or waits in the ack task's queue


class _Batch:
    """A marker: the answer's record is in this batch (its ticket is made at the end)."""


_IN_BATCH = _Batch()

#: The outcome of a batch whose session stopped here before it was saved: no reply.
_UNSAVED = Rejected(ErrorCode.UNAVAILABLE, "not saved")


class _AckBatch:
    """Replies that wait for ``tickets`` to commit and the outbox to release ``mark``: a
    batch's durable acks (with their frames) and the errors queued behind them (None)."""

    __slots__ = ("mark", "replies", "tickets")

    def __init__(self, tickets: list[Ticket], mark: int,
                 replies: list[tuple[AnswerSubmission, bytes | None]]) -> None:
        self.tickets = tickets
        self.mark = mark
        self.replies = replies


class _Parking:
    """Where one task waits for work (the intake, the ack task): no ``Event`` per wake-up."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    def wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


@attrs.frozen
class _Close:
    """A close frame queued in the outbox (after the frames before it)."""

    code: int
    reason: str


#: What the outbox holds: one socket or a broadcast's recipients, and a frame or a close.
_Entry = tuple["WebSocket | list[WebSocket]", "bytes | _Close"]


class _Chunk:
    """Frames held until ``ticket`` commits and a snapshot covers ``seq`` (-1: no snapshot
    needed: this engine keeps none)."""

    __slots__ = ("entries", "number", "seq", "since", "ticket")

    def __init__(self, number: int, ticket: Ticket, seq: int) -> None:
        self.since = trio.current_time()
        self.number = number
        self.ticket = ticket
        self.seq = seq
        self.entries: list[_Entry] = []


def _send_entries(entries: Iterable[_Entry]) -> None:
    for target, payload in entries:
        if isinstance(payload, _Close):
            assert not isinstance(target, list)
            target.close(payload.code, payload.reason)
        elif isinstance(target, list):
            send_frame_to_all(target, payload)
        else:
            target.send_frame(payload)


@attrs.frozen
class SessionSettings:
    """What a session needs from the engine's configuration."""

    replay_events: int = 2048
    max_members: int = 5000
    idle_timeout: float = 4 * 3600.0
    finished_linger: float = 600.0
    #: Seconds a change may wait for its commit and snapshot before new work is refused
    #: (``unavailable``): the database or Redis is away, nothing new is promised meanwhile.
    hold_limit: float = 1.0


class LiveSession:
    """See the module docstring."""

    def __init__(
        self,
        *,
        code: str,
        game: GameSession,
        host_token_hash: str,
        persister: WriteBehind,
        settings: SessionSettings,
        epoch: int = 1,
        seq: int = 0,
        created_at: float | None = None,
        resume_hashes: dict[int, str] | None = None,
        on_change: Callable[[LiveSession, bool], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.code = code
        self.game = game
        self.epoch = epoch
        self.settings = settings
        self.created_at = clock() if created_at is None else created_at
        # Only hashes of tokens are kept (and snapshotted): a snapshot in Redis or a memory
        # dump never holds a credential.
        self._host_hash = host_token_hash
        self._persister = persister
        self._clock = clock
        self._on_change = on_change
        self.seq = seq
        # Failover: the seq of the last join or phase change, and of the last snapshot stored
        # (-1: none yet, not even the one that makes a new session adoptable).
        self.critical_seq = 0
        self.snapshot_seq = -1
        self._snapshot_progress = trio.Event()
        # The outbox (rule 7): chunks of frames waiting for their commit (and snapshot).
        # ``released`` counts the chunks handed to the sockets (or dropped: fenced, ended).
        self._outbox: collections.deque[_Chunk] = collections.deque()
        self._chunks = 0
        self.released = 0
        self._delivered = 0  # the last chunk actually sent (dropped ones are not)
        self._released_event = trio.Event()
        self._outbox_wakeup = trio.Event()
        self._last_record: Ticket | None = None
        self._snapshot_ticket: Ticket | None = None
        # (seq, audience, frame): the bytes exactly as they went out, for resume.
        self._replay: collections.deque[tuple[int, int, bytes]] = collections.deque(
            maxlen=settings.replay_events
        )
        self._resume_hashes: dict[int, str] = dict(resume_hashes or {})
        self._players: dict[int, Member] = {}  # participant -> its connection
        self._watchers: set[Member] = set()  # hosts and displays
        self._last_ticket: dict[int, Ticket] = {}  # participant -> latest answer's ticket
        # Rule 8: answers waiting for the intake task; batches of replies waiting for their
        # commit (the ack task); how many of those replies each member waits for.
        self._intake: list[AnswerSubmission] = []
        self._intake_parking = _Parking()
        self._acks: collections.deque[_AckBatch] = collections.deque()
        self._acks_parking = _Parking()
        self._acks_sent: trio.Event | None = None  # set when _acks empties (if waited for)
        self._unsent: dict[Member, int] = {}
        #: Statistics: batches the intake applied, and the most answers one held.
        self.answer_batches = 0
        self.answer_batch_max = 0
        self._last_activity = self.created_at
        self._wakeup = trio.Event()
        self._cancel_scope: trio.CancelScope | None = None
        self.ended = trio.Event()
        self.end_reason: str | None = None
        #: Set by ``stop_intake``: nothing changes this session's state any more (rule 6).
        self.intake_stopped = False
        self.closing_code = CloseCode.SESSION_ENDED

    # --- life cycle --------------------------------------------------------------------------

    def created_record(self, quiz: Quiz) -> SessionRecord:
        return SessionRecord(
            code=self.code,
            quiz_title=quiz.title,
            quiz_data=quiz_to_data(quiz),
            mode=str(self.game.options.mode),
            created_at=self.created_at,
            epoch=self.epoch,
            host_token_hash=self._host_hash,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The session's nursery: its timer. Returns when the session ends or is cancelled.

        Resource handling: on the way out every member is closed (4001 if the session ended,
        1012 if the engine is stopping) and ``ended`` is set.
        """
        try:
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._timer)
                    nursery.start_soon(self._release)
                    nursery.start_soon(self._take_answers)
                    nursery.start_soon(self._send_acks)
                    task_status.started()
        finally:
            if self.end_reason is None:
                self.end_reason = "engine stopping"
                self.closing_code = CloseCode.SERVICE_RESTART
            self._settle_outbox()
            self._abandon_answers()
            for member in self.members():
                member.ws.close(self.closing_code, self.end_reason)
            self._players.clear()
            self._watchers.clear()
            self.ended.set()

    def close(self, reason: str, code: CloseCode = CloseCode.SESSION_ENDED) -> None:
        """End the session now (sync): its nursery is cancelled and its members closed."""
        if self.end_reason is None:
            self.end_reason = reason
            self.closing_code = code
            if code == CloseCode.SESSION_ENDED:
                self._submit([SessionEnded(code=self.code, ended_at=self._clock(),
                                           epoch=self.epoch)])
        # What is durable already goes out first; the rest was never seen and never will be.
        self._settle_outbox()
        # Close frames leave now (eager writes), before anything is cancelled.
        for member in self.members():
            member.ws.close(self.closing_code, reason)
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _timer(self) -> None:
        """Close questions at their deadline; end the session when idle or long finished."""
        while True:
            now = self._clock()
            # After stop_intake no question closes here any more (tick does nothing), so its
            # deadline is no reason to wake up: only the idle limit is.
            deadline = None if self.intake_stopped else self.game.next_deadline
            idle_limit = (
                self.settings.finished_linger if str(self.game.phase) == "finished"
                else self.settings.idle_timeout
            )
            idle_at = self._last_activity + idle_limit
            if now >= idle_at:
                self.close("idle" if str(self.game.phase) != "finished" else "finished")
                return
            wake_at = idle_at if deadline is None else min(deadline, idle_at)
            with trio.move_on_after(max(0.0, wake_at - now)):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if deadline is not None and self._clock() >= deadline:
                self.tick()

    def tick(self) -> None:
        """Let the game close what is due (called by the timer; also safe to call any time).
        After ``stop_intake`` it does nothing: a question due now is closed by the node that
        carries the session on (its deadline is in the snapshot), or by nobody."""
        if not self.intake_stopped:
            self._publish(self.game.tick(self._clock()))

    def stop_intake(self) -> None:
        """Refuse every later change (rule 6): the engine is stopping. Synchronous, so no
        command is half applied when it returns. A session that nobody will carry on is
        recorded as ended here (``ending_status``), before the engine drains the queue."""
        if self.intake_stopped:
            return
        self.intake_stopped = True
        self._wakeup.set()  # the timer forgets the deadline it was sleeping towards
        status = self.ending_status
        if status is not None and self.end_reason is None:
            self._submit([SessionEnded(code=self.code, ended_at=self._clock(),
                                       epoch=self.epoch, status=status)])

    @property
    def ending_status(self) -> str | None:
        """How the store should remember this session when the engine stops without anyone
        to carry it on: ``finished`` when the game is over, else ``interrupted``. None while
        another node can take it over (``on_change`` set: snapshots in Redis)."""
        if str(self.game.phase) == "finished":
            return "finished"
        return None if self._on_change is not None else "interrupted"

    # --- members ------------------------------------------------------------------------------

    def members(self) -> list[Member]:
        return [*self._players.values(), *self._watchers]

    @property
    def member_count(self) -> int:
        return len(self._players) + len(self._watchers)

    def _check_room(self) -> None:
        if self.member_count >= self.settings.max_members:
            raise Rejected(ErrorCode.SESSION_FULL, "this session has no room for more members")

    def check_host(self, token: str) -> None:
        if not credentials.same_secret(credentials.token_hash(token), self._host_hash):
            raise Rejected(ErrorCode.BAD_TOKEN, "wrong host token")

    def _admit(self, records: int) -> None:
        """Admit new work that writes at least ``records`` records, or refuse it before
        anything changes (rules 5 and 6)."""
        if self.intake_stopped:
            raise Rejected(ErrorCode.SHUTTING_DOWN, "the server is stopping; reconnect and resume")
        if not self._persister.has_room(records):
            raise Rejected(ErrorCode.BUSY, "the engine is saving answers; retry shortly")
        limit = self.settings.hold_limit
        if self._outbox and trio.current_time() - self._outbox[0].since > limit:
            raise Rejected(ErrorCode.UNAVAILABLE, "the session's last change is not saved yet "
                           "(database or Redis away); retry", retry_after_ms=int(limit * 1000))

    def attach_watcher(self, member: Member, rid: int, last_seq: int | None) -> None:
        """A host or display arrives: welcome, then the missed events or the full state."""
        self._check_room()
        if member.role == "host":
            # One host connection per host token, like a player's resume token (SPEC 13.5).
            for previous in [w for w in self._watchers if w.role == "host"]:
                self._watchers.discard(previous)
                previous.ws.close(CloseCode.REPLACED, "replaced by a newer host connection")
        member.audience = views.ROLE_AUDIENCE[member.role]
        self._welcome_and_catch_up(member, rid, last_seq, name=None, team=None, token=None)
        self._watchers.add(member)

    def join(self, member: Member, rid: int, name: str, team: str | None) -> None:
        """A new player: the game checks the name and team; a resume token is minted."""
        self._check_room()
        self._admit(2)  # its participant record and its event row
        events = self.game.apply(commands.Join(name=name, team=team), self._clock())
        joined = next(e for e in events if isinstance(e, ev.ParticipantJoined))
        secret = credentials.new_secret()
        token = credentials.resume_token(self.code, joined.participant, secret)
        token_hash = credentials.token_hash(token)
        self._resume_hashes[joined.participant] = token_hash
        member.participant = joined.participant
        member.audience = views.PLAYERS
        self._touch()
        # Its participant record goes with the events' records: one batch, one ticket.
        self._publish(events, records=[ParticipantRecord(
            code=self.code, participant_id=joined.participant, name=joined.name,
            team=joined.team, joined_at=joined.at, epoch=self.epoch,
            resume_token_hash=token_hash,
        )])
        # A newcomer gets the whole current screen (a question may be open right now).
        self._welcome_and_catch_up(
            member, rid, None, name=joined.name, team=joined.team, token=token
        )
        self._players[joined.participant] = member

    def resume(self, member: Member, rid: int, participant: int, token: str,
               last_seq: int | None) -> None:
        """A player comes back with their token: same identity, missed events, new connection."""
        expected = self._resume_hashes.get(participant)
        if expected is None or not credentials.same_secret(credentials.token_hash(token),
                                                           expected):
            raise Rejected(ErrorCode.BAD_TOKEN, "unknown or wrong resume token")
        who = self.game.participants.get(participant)
        if who is None or who.kicked:
            raise Rejected(ErrorCode.KICKED, "you were removed from this session")
        previous = self._players.pop(participant, None)
        if previous is None:
            self._check_room()
        else:
            self._deliver(previous.ws, _Close(CloseCode.REPLACED,
                                              "replaced by a newer connection"))
        member.participant = participant
        member.audience = views.PLAYERS
        self._welcome_and_catch_up(member, rid, last_seq, name=who.name, team=who.team,
                                   token=token)
        self._deliver(member.ws, _frame(views.you(self.game, participant)))
        self._players[participant] = member

    def detach(self, member: Member) -> None:
        """A connection ended (the player stays in the game and may resume)."""
        if member.participant is not None:
            if self._players.get(member.participant) is member:
                del self._players[member.participant]
        else:
            self._watchers.discard(member)

    def _welcome_and_catch_up(self, member: Member, rid: int, last_seq: int | None, *,
                              name: str | None, team: str | None, token: str | None) -> None:
        replay = self._replay
        oldest = replay[0][0] if replay else self.seq + 1
        can_replay = last_seq is not None and oldest - 1 <= last_seq <= self.seq
        ws = member.ws
        self._deliver(ws, frame_binary(_encoder.encode_welcome(
            rid, member.role, self.code, self.epoch, self.seq, member.participant, name, team,
            token, "events" if can_replay else "state")))
        if can_replay:
            assert last_seq is not None
            audience = member.audience
            deliver = self._deliver
            for seq, aud, frame in replay:
                if seq > last_seq and aud & audience:
                    deliver(ws, frame)
        else:
            self._deliver(ws, _state_frame(self.seq, views.state(
                self.game, role=member.role, participant=member.participant, code=self.code,
                connected=self._players.keys())))

    # --- commands -----------------------------------------------------------------------------

    def command(self, command: commands.Command) -> list[ev.Event]:
        """Apply a host or player command (role already checked by the caller)."""
        self._admit(1)
        if isinstance(command, commands.Reveal) and self.game.phase == "question_open":
            # One click for the quiz master: reveal closes the question first (SPEC `reveal`).
            self._publish(self.game.apply(commands.CloseQuestion(), self._clock()))
        events = self.game.apply(command, self._clock())
        self._touch()
        self._publish(events)
        if isinstance(command, commands.Kick):
            kicked = self._players.pop(command.participant, None)
            if kicked is not None:
                self._deliver(kicked.ws, _Close(CloseCode.KICKED, "removed by the quiz master"))
        elif isinstance(command, commands.Leave):
            # The caller closes the connection; from now on it gets no personal lines.
            self._players.pop(command.participant, None)
            if command.participant not in self.game.participants:  # forgotten (lobby)
                self._resume_hashes.pop(command.participant, None)
        if any(isinstance(e, _TIMER_EVENTS) for e in events):
            self._wakeup.set()
        return events

    # --- answers (rule 8) ---------------------------------------------------------------------

    def submit_answer(self, member: Member, question: Any, value: Any, rid: int, *,
                      durable: bool, done: Callable[[AnswerSubmission], None]) -> None:
        """Queue a player's answer for the intake task (sync, never blocks). ``done`` is
        called once with its outcome (``AnswerSubmission``); ``durable``: its ack waits for
        its commit."""
        assert member.participant is not None
        submission = AnswerSubmission(member, question, value, rid, durable=durable, done=done)
        if self.end_reason is not None:
            submission.error = Rejected(ErrorCode.SESSION_ENDED, "this session has ended")
            _finish(submission)
            return
        self._intake.append(submission)
        self._intake_parking.wake()

    async def _take_answers(self) -> None:
        """The intake task: apply what was queued since the last pass, as one batch."""
        while True:
            if not self._intake:
                await self._intake_parking.wait()
                continue
            batch, self._intake = self._intake, []
            self.answer_batches += 1
            if len(batch) > self.answer_batch_max:
                self.answer_batch_max = len(batch)
            try:
                self._apply_answers(batch)
            except Exception:
                # A bug while publishing the batch (each answer's own failures are caught
                # inside): its answers get ``internal``, the intake and the session go on.
                log.exception("session %s: a batch of %d answers failed", self.code, len(batch))
                for submission in batch:
                    if not submission.queued:
                        submission.error = Rejected(ErrorCode.INTERNAL,
                                                    "the answer could not be applied; retry")
                        self._reply_later_or_now(submission)

    def _apply_answers(self, batch: list[AnswerSubmission]) -> None:
        """Apply ``batch`` in order (sync: nothing interleaves, rule 1), then reply."""
        game = self.game
        events: list[ev.Event] = []
        count: ev.AnswerCountChanged | None = None  # the batch's latest, not yet placed
        tickets: list[Ticket | _Batch | None] = []  # what each accepted answer's ack covers
        fresh: set[int] = set()  # participants with a new record in this batch
        new_records = 0
        touched = False
        for submission in batch:
            participant = submission.member.participant
            assert participant is not None
            try:
                # Room for this answer's record beside the batch's (rule 5), before it changes
                # anything; refused alone, the batch goes on.
                self._admit(new_records + 1)
                # ``apply(SubmitAnswer(...))`` without the command, and a late answer's refusal
                # returned, not raised (``GameSession.submit``).
                got = game.submit(participant, submission.question, submission.value,
                                  submission.rid, self._clock())
                if isinstance(got, Rejected):
                    submission.error = got
                    continue
            except Rejected as exc:
                submission.error = exc
                continue
            except Exception:
                log.exception("session %s: answer rid %s failed", self.code, submission.rid)
                submission.error = Rejected(ErrorCode.INTERNAL,
                                            "the answer could not be applied; retry")
                continue
            submission.accepted = touched = True
            new = False
            for event in got:
                if isinstance(event, ev.AnswerCountChanged):
                    count = event  # the hosts see the batch's last count only
                    continue
                if isinstance(event, ev.AnswerAccepted):
                    new = new or not event.duplicate
                elif count is not None:
                    events.append(count)  # before what follows it (a question closing)
                    count = None
                events.append(event)
            if new:
                new_records += 1
                fresh.add(participant)
                tickets.append(_IN_BATCH)
            elif participant in fresh:
                tickets.append(_IN_BATCH)  # a resend of an answer of this batch
            else:
                tickets.append(self._last_ticket.get(participant))
        if count is not None:
            events.append(count)
        if touched:
            self._touch()
        # Only ``fast`` answers: nobody is about to wait for their commit, it may linger.
        linger = not any(submission.durable for submission in batch)
        answer_ticket = self._publish(events, answers_linger=linger) if events else None
        if answer_ticket is not None:
            for participant in fresh:
                self._last_ticket[participant] = answer_ticket
        self._reply(batch, tickets, answer_ticket)

    def _reply(self, batch: list[AnswerSubmission], tickets: list[Ticket | _Batch | None],
               answer_ticket: Ticket | None) -> None:
        """Answer a batch: ``fast`` acks and errors now, ``durable`` acks (and whatever the
        same member is answered after them) once their records are durable."""
        later: list[tuple[AnswerSubmission, bytes | None]] = []
        waiting: set[Member] = set()  # members with a reply in ``later``
        waits: dict[Ticket, None] = {}
        unsent = self._unsent
        covers = iter(tickets)
        for submission in batch:
            member = submission.member
            frame: bytes | None = None
            if submission.error is None:
                frame = frame_binary(_encode(m.AnswerAck(rid=submission.rid,
                                                         q=submission.question)))
                cover = next(covers)
                ticket = answer_ticket if cover is _IN_BATCH else cover
                if submission.durable and isinstance(ticket, Ticket):
                    waits[ticket] = None
                    later.append((submission, frame))
                    waiting.add(member)
                    continue
            if member in unsent or member in waiting:
                later.append((submission, frame))  # behind that member's waiting ack
                continue
            submission.queued = True
            if frame is not None:
                # Behind the frames held (an ack never announces more than is durable).
                self._deliver(member.ws, frame)
                submission.acked = True
            _finish(submission)
        if later:
            self._queue_acks(list(waits), later)

    def _reply_later_or_now(self, submission: AnswerSubmission) -> None:
        """Send an error now, or behind the replies its member already waits for."""
        if submission.member in self._unsent:
            self._queue_acks([], [(submission, None)])
        else:
            submission.queued = True
            _finish(submission)

    def _queue_acks(self, waits: list[Ticket],
                    replies: list[tuple[AnswerSubmission, bytes | None]]) -> None:
        unsent = self._unsent
        for submission, _frame in replies:
            submission.queued = True
            unsent[submission.member] = unsent.get(submission.member, 0) + 1
        self._acks.append(_AckBatch(waits, self.outbox_mark, replies))
        self._acks_parking.wake()

    async def _send_acks(self) -> None:
        """The ack task: send each batch's replies, in order, once its records are durable
        (rule 7) and the outbox released what was queued before them."""
        acks = self._acks
        while True:
            if not acks:
                if self._acks_sent is not None:
                    self._acks_sent.set()
                    self._acks_sent = None
                await self._acks_parking.wait()
                continue
            head = acks[0]
            outcome = await self._saved(head)
            acks.popleft()
            self._send_replies(head, outcome)

    async def _saved(self, head: _AckBatch) -> Rejected | None:
        """None once ``head``'s records are durable and released; else what its acks become
        (``_UNSAVED``: no reply)."""
        try:
            for ticket in head.tickets:
                await ticket.wait()
            released = await self.wait_released(head.mark)
        except StaleEpoch:
            return Rejected(ErrorCode.FENCED, "this node no longer owns the session")
        except (StoreError, LocalError):
            return Rejected(ErrorCode.INTERNAL, "the answer could not be saved; retry")
        if released:
            return None
        if self.closing_code == CloseCode.FENCED:
            return Rejected(ErrorCode.FENCED, "this node no longer owns the session")
        return _UNSAVED  # the session stopped here unsaved: no reply, the connection closes

    def _send_replies(self, batch: _AckBatch, outcome: Rejected | None) -> None:
        unsent = self._unsent
        for submission, frame in batch.replies:
            member = submission.member
            left = unsent.get(member, 1) - 1
            if left:
                unsent[member] = left
            else:
                unsent.pop(member, None)
            if frame is not None and submission.error is None:
                if outcome is None:
                    member.ws.send_frame(frame)
                    submission.acked = True
                elif outcome is not _UNSAVED:
                    submission.error = outcome
            _finish(submission)

    async def wait_acks_sent(self) -> None:
        """Return once every answer submitted so far has its reply sent (or decided): the
        graceful stop waits for this after the drain, before it closes connections."""
        while self._acks or self._intake:
            if not self._acks:
                await trio.lowlevel.checkpoint()  # the intake's turn: it replies or queues
                continue
            if self._acks_sent is None:
                self._acks_sent = trio.Event()
            await self._acks_sent.wait()

    def _abandon_answers(self) -> None:
        """The session stops here: answers not applied or not acked yet get no reply (their
        connections are being closed), but their callers learn it (``done``)."""
        pending = self._intake
        self._intake = []
        for batch in self._acks:
            pending.extend(s for s, _frame in batch.replies)
        self._acks.clear()
        self._unsent.clear()
        for submission in pending:
            _finish(submission)
        if self._acks_sent is not None:
            self._acks_sent.set()
            self._acks_sent = None

    def add_round(self, round_data: dict[str, Any], *, source: str = "added round") -> int:
        """Append a round to the quiz (only in the lobby: nobody has seen a question yet).

        The game applies it (``commands.AddRound``: the whole quiz is validated again, a bad
        round is ``invalid_command``); returns the new round's index. The stored event carries
        the round itself, so the database keeps the quiz as it is played (the export reads
        it back: ``store/export_results.py``).
        """
        self._admit(1)
        events = self.game.apply(commands.AddRound(round=round_data, source=source),
                                 self._clock())
        [added] = events
        assert isinstance(added, ev.RoundAdded)
        self.seq += 1
        ticket = self._record([EventRecord(
            code=self.code, seq=self.seq, type=ev.event_type(added),
            payload=_plain(ev.event_to_data(added)), at=self._clock(), epoch=self.epoch)])
        self._touch()
        self.critical_seq = self.seq
        # Everyone's screen knows the rounds (state.rounds): send each member the new state,
        # and make a resume across this point get a full state too (no replayable event says
        # what changed).
        self._replay.clear()
        connected = self._players.keys()
        self._emit([(member.ws, _state_frame(self.seq, views.state(
            self.game, role=member.role, participant=member.participant, code=self.code,
            connected=connected))) for member in (*self._players.values(), *self._watchers)],
            ticket)
        if self._on_change is not None:
            self._on_change(self, True)
        return added.round

    def rewrite_scores(self) -> None:
        """Queue every participant's current score row (after a takeover: the rows the old
        owner had not committed yet are restored from the game's own totals)."""
        game = self.game
        self._submit([ScoreRecord(code=self.code, participant_id=pid, score=game.score_of(pid),
                                  seq=max(self.seq, 1), epoch=self.epoch)
                      for pid in game.participants])

    def _touch(self) -> None:
        self._last_activity = self._clock()

    # --- publishing ---------------------------------------------------------------------------

    def _publish(self, events: Iterable[ev.Event], *, answers_linger: bool = False,
                 records: list[Any] | None = None) -> Ticket | None:
        """Number, render, send, remember and persist events. Returns the ticket of the
        answers' records (one for all the answers among ``events``: rule 8), queued with
        ``answers_linger`` (``WriteBehind`` rule 7: their batch may wait for company).
        ``records``: records of the same change to queue before the events' own."""
        answers: list[AnswerRecord] = []
        if records is None:
            records = []
        out: list[_Entry] = []  # what this call sends, in order (rule 7)
        urgent = False
        changed = False
        for event in events:
            first_seq = self.seq + 1
            for audience, seq, data in views.broadcast_frames(first_seq, self.game, event):
                self.seq = seq
                self._broadcast(audience, data, out)
            at = self._clock()
            if isinstance(event, ev.AnswerAccepted):
                if not event.duplicate:
                    # Every accepted answer has its own seq: the failover replay order.
                    self.seq = max(self.seq, first_seq)
                    answers.append(self._answer_record(event))
                    changed = True
            elif not isinstance(event, ev.AnswerCountChanged):
                urgent = changed = True
            if isinstance(event, ev.ScoresChanged):
                records.extend(
                    ScoreRecord(code=self.code, participant_id=pid, score=score,
                                seq=max(self.seq, 1), epoch=self.epoch)
                    for pid, score in event.scores
                )
            if not isinstance(event, _UNLOGGED):
                if self.seq < first_seq:  # the event went to nobody: give it its own number
                    self.seq = first_seq
                payload = _plain(ev.event_to_data(event))
                if isinstance(event, _WITH_OUTCOMES):
                    # What each answer earned, as the players were told (``result``): the
                    # export reads it back rather than re-scoring (store/export_results.py).
                    payload["outcomes"] = self._outcomes(event.question)
                records.append(EventRecord(
                    code=self.code, seq=self.seq, type=ev.event_type(event),
                    payload=payload, at=at, epoch=self.epoch,
                ))
            self._personal(event, out)
        # Records of accepted work, never refused (rule 5): the answers first (they happened
        # before the events that follow them, a question closing when all have answered).
        # The events' ticket is the barrier of this call's frames: its batch also holds every
        # answer queued before (group commit).
        answer_ticket = self._record(answers, linger=answers_linger) if answers else None
        ticket = self._record(records) if records else None
        if urgent:
            self.critical_seq = self.seq
        if changed and self._on_change is not None:
            self._on_change(self, urgent)
        self._emit(out, ticket)
        return answer_ticket

    # --- snapshots (failover) -------------------------------------------------------------------

    def snapshot(self) -> tuple[bytes, int, int]:
        """(data, seq, watermark) for the snapshotter: every answer with a seq above the
        watermark is replayed from the database by a node that takes this session over."""
        data = {
            "format": SNAPSHOT_FORMAT,
            "code": self.code,
            "epoch": self.epoch,
            "seq": self.seq,
            "created_at": self.created_at,
            "host_token_hash": self._host_hash,
            "resume_hashes": [[pid, h] for pid, h in self._resume_hashes.items()],
            "game": self.game.to_snapshot(),
        }
        # What this state holds is stored in the database once this ticket commits: the
        # snapshot is written after that (``snapshot_durable``), never before.
        self._snapshot_ticket = self._last_record
        return codec.pack_stored(data), self.seq, self.seq

    async def snapshot_durable(self) -> bool:
        """Wait until the records of the last built snapshot's state are committed: True,
        or False if they never will be (fenced, or not writable): then the snapshot must not
        be stored either. A takeover never restores a state whose history is not in the log
        (rule 7: the snapshot's epoch fence and the database's are both passed, in order)."""
        ticket = self._snapshot_ticket
        if ticket is None:
            return True
        try:
            await ticket.wait()
        except (StaleEpoch, StoreError):
            return False
        return True

    def snapshot_written(self, seq: int) -> None:
        if seq > self.snapshot_seq:
            self.snapshot_seq = seq
            self._snapshot_progress.set()
            self._snapshot_progress = trio.Event()
            self._pump()

    async def wait_snapshot(self) -> None:
        """Return once a stored snapshot covers the last join or phase change (at once when
        this engine keeps no snapshots, or the session ended here)."""
        while (self._on_change is not None and self.snapshot_seq < self.critical_seq
               and self.end_reason is None):
            await self._snapshot_progress.wait()

    # --- the outbox (rule 7) ------------------------------------------------------------------

    def hold(self, ticket: Ticket) -> None:
        """Hold everything sent from now on until ``ticket`` commits (and, with Redis, a
        first snapshot is stored): the session's creation."""
        self._last_record = ticket
        self._emit([], ticket)

    @property
    def outbox_depth(self) -> int:
        """Chunks of frames held for their commit (and snapshot)."""
        return len(self._outbox)

    @property
    def outbox_mark(self) -> int:
        """The chunk a reply queued now waits behind (``wait_released`` takes it)."""
        return self._chunks if self._outbox else self.released

    def reply(self, member: Member, message: m.Message) -> None:
        """Send a reply to ``member`` after every frame queued before it (an ``ok`` never
        announces a change that is not yet durable)."""
        self._deliver(member.ws, _frame(message))

    def close_member(self, member: Member, code: CloseCode, reason: str) -> None:
        """Close ``member``'s connection after every frame queued for it so far."""
        self._deliver(member.ws, _Close(code, reason))

    async def wait_released(self, mark: int) -> bool:
        """Wait until every chunk up to ``mark`` is durable and handed to the sockets (True),
        or dropped unseen because the session stopped on this node first (False: fenced, or
        a stop while the database or Redis was away; its connections are being closed)."""
        while self.released < mark:
            await self._released_event.wait()
        return mark <= self._delivered

    async def wait_held(self) -> None:
        """Return once the outbox holds frames (a change is on its way to durability)."""
        while not self._outbox:
            await self._outbox_wakeup.wait()

    def _deliver(self, ws: WebSocket, payload: bytes | _Close) -> None:
        """Send now, or behind the frames held in the outbox."""
        if self._outbox:
            self._outbox[-1].entries.append((ws, payload))
        elif isinstance(payload, _Close):
            ws.close(payload.code, payload.reason)
        else:
            ws.send_frame(payload)

    def _emit(self, entries: list[_Entry], ticket: Ticket | None) -> None:
        """Queue a call's frames: behind a new barrier (``ticket``, and with snapshots the
        current seq), behind the frames already held, or out at once."""
        if ticket is not None:
            self._chunks += 1
            chunk = _Chunk(self._chunks, ticket, self.seq if self._on_change is not None else -1)
            chunk.entries = entries
            self._outbox.append(chunk)
            self._outbox_wakeup.set()
        elif self._outbox:
            self._outbox[-1].entries.extend(entries)
        elif entries:
            _send_entries(entries)

    def _pump(self) -> None:
        """Hand every chunk whose barrier has passed to the sockets, in order (sync)."""
        outbox = self._outbox
        moved = False
        while outbox:
            head = outbox[0]
            if not head.ticket.committed or head.seq > self.snapshot_seq:
                break
            outbox.popleft()
            self.released = self._delivered = head.number
            moved = True
            _send_entries(head.entries)
        if moved:
            self._released_event.set()
            self._released_event = trio.Event()

    def _settle_outbox(self) -> None:
        """The session stops here: what is durable goes out, the rest is dropped unseen."""
        self._pump()
        if self._outbox:
            self._outbox.clear()
            self.released = self._chunks
            self._released_event.set()
            self._released_event = trio.Event()

    async def _release(self) -> None:
        """The session's release task: wait for the head chunk's commit and snapshot, pump."""
        while True:
            self._outbox_wakeup = trio.Event()
            if not self._outbox:
                await self._outbox_wakeup.wait()
                continue
            head = self._outbox[0]
            try:
                await head.ticket.wait()
            except StaleEpoch:
                self.fenced()  # nothing held is sent: another node owns what happened
                return
            except StoreError as exc:
                # Not retryable (a bug): what it holds can never be made durable.
                log.error("session %s: history not saved, closing it: %s", self.code, exc)
                self.close("the session's history could not be saved",
                           CloseCode.INTERNAL_ERROR)
                return
            while self._outbox and self._outbox[0] is head and head.seq > self.snapshot_seq:
                await self._snapshot_progress.wait()
            self._pump()

    def _answer_record(self, event: ev.AnswerAccepted) -> AnswerRecord:
        team = self.game.participants[event.participant].team
        return AnswerRecord(
            code=self.code, participant_id=event.participant, team=team,
            question=event.question, value=_plain(event.value), request_id=event.request_id,
            submitted_at=event.at, seq=max(self.seq, 1), epoch=self.epoch,
        )

    def _broadcast(self, audience: int, data: bytes, out: list[_Entry]) -> None:
        """Send an encoded message (numbered ``self.seq``) to ``audience``, and keep it for
        resumes."""
        # The recipients are the members now: one who arrives later gets this event in its
        # welcome's replay or state, which is queued after it.
        frame = frame_binary(data)
        self._replay.append((self.seq, audience, frame))
        targets = ([member.ws for member in self._players.values()]
                   if audience & views.PLAYERS else [])
        if audience & views.WATCHERS:
            targets.extend(member.ws for member in self._watchers if member.audience & audience)
        if targets:
            out.append((targets, frame))

    def _outcomes(self, question: int) -> list[list[Any]]:
        """``[participant, fully_right, points]`` of everyone whose (team's) answer to the
        revealed ``question`` counts; empty before the reveal."""
        out: list[list[Any]] = []
        for pid in self.game.participants:
            outcome = self.game.outcome_of(pid, question)
            if outcome is not None:
                out.append([pid, outcome[0], int(outcome[1])])
        return out

    def _personal(self, event: ev.Event, out: list[_Entry]) -> None:
        # Players with equal lines get equal bytes: encode and frame each distinct line once
        # (measured: the per-player encode was the top cost of a reveal to 1,000 players).
        frames: dict[Any, bytes] = {}
        if isinstance(event, ev.Revealed):
            q = event.question
            if self.game.question_state(q) != "revealed":
                return
            for pid, member in self._players.items():
                fields = views.result_fields(self.game, pid, q)
                if fields is not None:
                    frame = frames.get(fields)
                    if frame is None:
                        frame = frames[fields] = _frame(views.result_message(q, fields))
                    out.append((member.ws, frame))
        elif isinstance(event, _MARKED_OR_ADJUSTED):
            # The host changed a score: the players it concerns hear it (SPEC `result`, `you`)
            # rather than find out at the next leaderboard. Host actions are rare: O(players).
            scorer = self.game.scorer_of(event.participant)
            for pid, member in self._players.items():
                if self.game.scorer_of(pid) != scorer:
                    continue
                told = (views.result(self.game, pid, event.question)
                        if isinstance(event, ev.AnswerMarked) else views.you(self.game, pid))
                if told is not None:
                    out.append((member.ws, _frame(told)))
        elif views.wants_personal_line(event):
            round_index = event.round if isinstance(event, ev.RoundSummary) else None
            for pid, member in self._players.items():
                line = views.you(self.game, pid, round_index)
                frame = frames.get(line)
                if frame is None:
                    frame = frames[line] = frame_binary(_encode(line))
                out.append((member.ws, frame))

    def _submit(self, records: list[Any]) -> None:
        # Records of accepted work: never refused (rule 5), so nothing here can fail.
        self._record(records)

    def _record(self, records: list[Any], *, linger: bool = False) -> Ticket:
        ticket = self._persister.record(records, linger=linger)
        self._last_record = ticket  # its batch commits after every earlier one (FIFO)
        return ticket

    def fenced(self) -> None:
        """The store refused our epoch: another node owns this session now."""
        self.close("another node took over this session", CloseCode.FENCED)


def _frame(message: m.Message) -> bytes:
    return frame_binary(_encode(message))


def _state_frame(seq: int, state: dict[str, Any]) -> bytes:
    """``_frame(m.State(seq=seq, state=state))`` without the message: ``state`` is
    ``views.state``'s, plain by construction, and the validator's walk was most of a join's
    cost of its frames (``codec.Encoder.encode_state``)."""
    return frame_binary(_encoder.encode_state(seq, state))


def _finish(submission: AnswerSubmission) -> None:
    """Tell the submitter its answer's outcome; a failing callback is its bug, not ours."""
    try:
        submission.done(submission)
    except Exception:
        log.exception("replying to answer rid %s failed", submission.rid)


# Classes checked with ``isinstance`` on hot paths, as tuples: ``A | B`` builds a new union
# object at every call (and checks slower).
_SEQUENCES: Final = (list, tuple)
_WITH_OUTCOMES: Final = (ev.Revealed, ev.AnswerMarked)
_MARKED_OR_ADJUSTED: Final = (ev.AnswerMarked, ev.ScoreAdjusted)
_TIMER_EVENTS: Final = (ev.QuestionOpened, ev.TimeExtended, ev.Resumed, ev.Paused,
                        ev.QuestionClosed, ev.Finished)

#: Types ``_plain`` keeps as they are without a call (every stored event is full of them).
_KEPT: Final = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> Any:
    """JSON-able copy of game data (tuples to lists, non-finite floats to None)."""
    kept = _KEPT
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): v if type(v) in kept else _plain(v)
                for k, v in value.items()}
    if isinstance(value, _SEQUENCES):
        return [v if type(v) in kept else _plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["AnswerSubmission", "LiveSession", "Member", "SessionSettings"]
