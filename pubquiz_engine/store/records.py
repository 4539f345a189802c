"""What the engine writes to the database, what it reads back, and the ``Store`` port.

Rules this module keeps:

1. Records are frozen attrs classes of plain, JSON-able values. The server builds them from the
   game's events; the write-behind queue holds them; the backends turn them into rows. Nothing
   here knows SQL.
2. Every record carries its session's fencing ``epoch``: the database refuses a batch's records
   for a session whose stored epoch is higher (``errors.StaleEpoch``), see ``Store.write``.
3. Every record has a natural key, so writing it twice stores it once:
   sessions by code; participants by (code, participant_id); answers by (code, participant_id,
   request_id, seq) (a reused request id with a new answer is a new row, a retried write of
   one record is not); scores by (code, participant_id), newest ``seq`` wins; events by (code, seq).
4. Times are float unix seconds (``time.time()``), the same on both backends.

This module imports no trio and no database library: the server and the tests can build
records and rows without a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs

#: Session status values, as stored in ``quiz_sessions.status``. ``interrupted``: the engine
#: stopped while the session was live and no node carries it on (no Redis); ``ended_at`` is
#: the time of that stop.
STATUSES = ("live", "finished", "interrupted")
#: The statuses a ``SessionEnded`` record may set.
END_STATUSES = ("finished", "interrupted")


def _non_empty(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _epoch(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    # bool is an int subclass; an epoch of True is a bug, not a token.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _status(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in STATUSES:
        raise ValueError(f"{attribute.name} must be one of {STATUSES}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Records (written through ``Store.write``, usually via ``WriteBehind``)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class SessionRecord:
    """A session was created. ``quiz_data`` is the whole quiz as plain data (stored once per
    distinct content: quizzes are keyed by a hash of it). Never the host token, only its hash."""

    code: str = attrs.field(validator=_non_empty)
    quiz_title: str
    quiz_data: dict[str, Any]
    mode: str
    created_at: float
    epoch: int = attrs.field(validator=_epoch)
    host_token_hash: str
    status: str = attrs.field(default="live", validator=_status)
    #: The node that created it (``quiz_sessions.owner_node``): without Redis, that node's next
    #: start records the sessions it held as ``interrupted`` (``Store.interrupt_sessions``).
    owner: str | None = None


@attrs.frozen
class SessionEnded:
    """A session ended: ``finished`` (played out, ended by the host, idle) or ``interrupted``
    (the engine stopped and no node carries the session on). Idempotent: the first end stored
    stays (status and ``ended_at``); a session that is no longer live is left as it is."""

    code: str = attrs.field(validator=_non_empty)
    ended_at: float
    epoch: int = attrs.field(validator=_epoch)
    status: str = attrs.field(default="finished",
                              validator=attrs.validators.in_(END_STATUSES))


@attrs.frozen
class ParticipantRecord:
    """A player joined. Written once; a later record for the same id changes nothing."""

    code: str = attrs.field(validator=_non_empty)
    participant_id: int
    name: str
    team: str | None
    joined_at: float
    epoch: int = attrs.field(validator=_epoch)
    resume_token_hash: str


@attrs.frozen
class AnswerRecord:
    """An accepted answer. ``value`` is JSON-able; ``seq`` is the session's event seq at
    acceptance (the replay order after a failover)."""

    code: str = attrs.field(validator=_non_empty)
    participant_id: int
    team: str | None
    question: int
    value: Any
    request_id: int
    submitted_at: float
    seq: int
    epoch: int = attrs.field(validator=_epoch)


@attrs.frozen
class ScoreRecord:
    """A participant's (or, in team mode, a team's: the server decides the id) total score as of
    event ``seq``. The stored row only moves forward: an older ``seq`` never overwrites a newer."""

    code: str = attrs.field(validator=_non_empty)
    participant_id: int
    score: float
    seq: int
    epoch: int = attrs.field(validator=_epoch)


@attrs.frozen
class EventRecord:
    """One entry of the session history (the event log), keyed by its seq."""

    code: str = attrs.field(validator=_non_empty)
    seq: int
    type: str
    payload: dict[str, Any]
    at: float
    epoch: int = attrs.field(validator=_epoch)


Record = SessionRecord | SessionEnded | ParticipantRecord | AnswerRecord | ScoreRecord | EventRecord


# --------------------------------------------------------------------------------------------
# What reads return
# --------------------------------------------------------------------------------------------


@attrs.frozen
class WriteOutcome:
    """The result of one committed ``Store.write``.

    ``refused``: session codes whose records were NOT written because the batch carried an epoch
    lower than the stored one (fenced). ``written``: how many records were applied (idempotent
    no-ops included: a record already stored counts as written).
    """

    refused: frozenset[str] = frozenset()
    written: int = 0


@attrs.frozen
class SessionRow:
    code: str
    quiz_id: str
    title: str
    mode: str
    status: str
    created_at: float
    ended_at: float | None
    epoch: int
    host_token_hash: str
    owner_node: str | None


@attrs.frozen
class AnswerRow:
    """One stored answer. The fields after ``epoch`` are filled in for results exports only
    (``session_results``): who, the question's text, the answer in words, and how it scored
    as the players were told (``counted``: the last answer of its player or team to the
    question, the one that scores; ``result`` "right" / "partly right" / "wrong" and
    ``points`` once the question is revealed, None before and for answers that do not count).
    """

    code: str
    participant_id: int
    team: str | None
    question: int
    value: Any
    request_id: int
    submitted_at: float
    seq: int
    epoch: int
    name: str | None = None
    question_text: str | None = None
    answer_text: str | None = None
    counted: bool | None = None
    result: str | None = None
    points: int | None = None


@attrs.frozen
class EventRow:
    code: str
    seq: int
    type: str
    payload: dict[str, Any]
    at: float


@attrs.frozen
class ParticipantRow:
    code: str
    participant_id: int
    name: str
    team: str | None
    joined_at: float
    resume_token_hash: str


@attrs.frozen
class StandingRow:
    """One line of the final standings. ``rank`` is competition ranking ("1,2,2,4")."""

    rank: int
    participant_id: int
    name: str | None
    team: str | None
    score: int  # awards are integers; in team mode, the team's total (as the game shows it)
    updated_seq: int | None


@attrs.frozen
class TeamStandingRow:
    """One team's line of the final standings (team mode)."""

    rank: int
    team_id: int
    team: str
    score: int
    members: tuple[str, ...]


@attrs.frozen
class Results:
    """Everything a results export needs: the session, the final standings (of players, and
    of teams in team mode), every answer."""

    session: SessionRow
    standings: tuple[StandingRow, ...]
    answers: tuple[AnswerRow, ...]
    team_standings: tuple[TeamStandingRow, ...] = ()


# --------------------------------------------------------------------------------------------
# The port the server codes against
# --------------------------------------------------------------------------------------------


class Store(Protocol):
    """A database behind the engine. Every method runs its blocking work off the trio thread.

    Error handling: a method raises ``errors.StoreUnavailable`` when the database is unreachable
    or failing in a way a retry can cure (connection lost, server down, timeout, lock contention),
    ``errors.StoreError`` for anything else. No driver exception ever escapes.
    """

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        """Write ``records`` in ONE transaction; idempotent (see the module docstring).

        Fencing: for each session in the batch, if any of its records carries an epoch lower
        than ``quiz_sessions.epoch``, none of that session's records are written and its code is
        in ``WriteOutcome.refused``; the other sessions' records still commit. A record carrying
        a higher epoch raises the stored one (the database keeps the highest epoch it has seen).
        """
        ...

    async def claim_session(self, code: str, epoch: int, *, owner: str | None = None) -> None:
        """Raise the session's stored epoch to ``epoch`` (never lowers it) for a takeover, and
        record ``owner`` as its owner node if given. Raises ``KeyError`` for an unknown code."""
        ...

    async def session_results(self, code: str) -> Results:
        """The final standings and every answer. Raises ``KeyError`` for an unknown code."""
        ...

    async def load_answers(self, code: str, *, after_seq: int = 0) -> list[AnswerRow]:
        """The session's answers with ``seq > after_seq``, in seq order (failover replay)."""
        ...

    async def load_participants(self, code: str) -> list[ParticipantRow]:
        """The session's participants in id order (failover: who joined after a snapshot)."""
        ...

    async def load_events(self, code: str, *, after_seq: int,
                          types: Sequence[str]) -> list[EventRow]:
        """The session's event-log rows of these ``types`` with ``seq > after_seq``, in seq
        order (failover: the leaves and kicks after a snapshot)."""
        ...

    async def last_seq(self, code: str) -> int:
        """The highest seq stored for the session (events, answers, scores; 0 if none): a node
        taking the session over numbers its events above it, so that its rows never collide
        with, or lose to, rows the old owner wrote after its last snapshot."""
        ...

    async def interrupt_sessions(self, owner: str, *, created_before: float,
                                 ended_at: float) -> list[str]:
        """Record as ``interrupted`` (ending at ``ended_at``) every ``live`` session whose
        owner node is ``owner`` and that was created before ``created_before``; returns their
        codes. A node without Redis calls it when it starts: the sessions its previous run
        held (stopped by ``kill -9``) died with it and nobody can carry them on."""
        ...

    async def load_session(self, code: str) -> SessionRow | None: ...

    async def list_sessions(self, *, status: str | None = None) -> list[SessionRow]:
        """Sessions (all, or with this status), oldest first."""
        ...

    async def cache_get(self, key: str) -> str | None:
        """The value stored under ``key`` unless it has expired (the question generator's
        cache when there is no Redis; values are opaque text)."""
        ...

    async def cache_put(self, key: str, value: str, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (> 0), replacing any old value;
        expired entries are deleted on the way."""
        ...

    async def aclose(self) -> None: ...
