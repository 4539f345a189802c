"""One exception hierarchy for the whole engine.

Rules this module keeps:

1. Every error a peer can cause carries a stable ``ErrorCode``. The code is what goes on the
   wire and what clients branch on; the message is for humans and may change.
2. Each code knows whether retrying the same request can succeed (``retryable``) and which
   WebSocket close code, if any, the server answers it with (``close_code``; ``None`` means the
   connection stays open and only an ``error`` message is sent).
3. Local bugs are not ``RemoteError``: a ``RemoteError`` says "the other side did something we
   refuse", never "we broke". Third-party exceptions (psycopg, redis, wsproto) are translated to
   these classes at the boundary of the one module that uses that library.

This module is pure: it imports nothing outside the standard library, so the protocol codec and
the game rules can both raise these errors.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class CloseCode(enum.IntEnum):
    """WebSocket close codes the engine sends (RFC 6455 section 7.4 and our 4000 range).

    1000-1015 are the standard codes. 4000-4099 are terminal for this session (do not
    reconnect); 4100-4199 ask the client to reconnect (resume) after a short back-off.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003  # a text frame: pubquiz.v1 is binary only
    INVALID_DATA = 1007  # a text message that is not UTF-8 (RFC 6455 8.1)
    POLICY_VIOLATION = 1008  # persistent flooding, bad handshake, forbidden origin
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # graceful stop: reconnect to another node (or this one, later)
    TRY_AGAIN_LATER = 1013
    # Terminal for this session: reconnecting will not help.
    KICKED = 4000
    SESSION_ENDED = 4001
    BAD_CREDENTIALS = 4002
    # Reconnect (resume) after a back-off.
    REPLACED = 4100  # another connection resumed with the same token
    SLOW_CONSUMER = 4101  # the member's outbox overflowed; resume to catch up
    IDLE_TIMEOUT = 4102  # no pong / no traffic within the timeouts
    MOVED = 4103  # the session lives on another node (see the redirect message)
    FENCED = 4104  # this node lost the session's lease; reconnect to find the new owner


class _CodeInfo(NamedTuple):
    retryable: bool
    close_code: CloseCode | None


class ErrorCode(enum.StrEnum):
    """Stable error codes. Never renumber or rename: clients in other languages match on them."""

    # Framing and codec (protocol layer).
    FRAME_TOO_LARGE = "frame_too_large"
    MALFORMED_FRAME = "malformed_frame"
    LIMIT_EXCEEDED = "limit_exceeded"
    UNSUPPORTED_TYPE = "unsupported_type"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_MESSAGE = "unknown_message"
    TEXT_FRAME = "text_frame"
    # Connection, identity and abuse (server layer).
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    BAD_CODE = "bad_code"
    BAD_TOKEN = "bad_token"
    BAD_KEY = "bad_key"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SESSION_FULL = "session_full"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    SHUTTING_DOWN = "shutting_down"
    MOVED = "moved"
    FENCED = "fenced"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    GENERATOR_UNAVAILABLE = "generator_unavailable"
    # Game rules (game layer).
    WRONG_PHASE = "wrong_phase"
    NOT_CURRENT_QUESTION = "not_current_question"
    QUESTION_CLOSED = "question_closed"
    INVALID_ANSWER = "invalid_answer"
    INVALID_NAME = "invalid_name"
    NAME_TAKEN = "name_taken"
    UNKNOWN_PARTICIPANT = "unknown_participant"
    UNKNOWN_ROUND = "unknown_round"
    JOKER_USED = "joker_used"
    JOKER_TOO_LATE = "joker_too_late"
    NOT_A_WAGER_ROUND = "not_a_wager_round"
    INVALID_WAGER = "invalid_wager"
    INVALID_COMMAND = "invalid_command"
    KICKED = "kicked"
    SESSION_ENDED = "session_ended"
    TEAM_FULL = "team_full"

    @property
    def retryable(self) -> bool:
        return _CODE_INFO[self].retryable

    @property
    def close_code(self) -> CloseCode | None:
        return _CODE_INFO[self].close_code


# The table every code must appear in (a test checks it is complete).
_CODE_INFO: dict[ErrorCode, _CodeInfo] = {
    ErrorCode.FRAME_TOO_LARGE: _CodeInfo(False, CloseCode.MESSAGE_TOO_BIG),
    ErrorCode.MALFORMED_FRAME: _CodeInfo(False, None),
    ErrorCode.LIMIT_EXCEEDED: _CodeInfo(False, None),
    ErrorCode.UNSUPPORTED_TYPE: _CodeInfo(False, None),
    ErrorCode.INVALID_MESSAGE: _CodeInfo(False, None),
    ErrorCode.UNKNOWN_MESSAGE: _CodeInfo(False, None),
    ErrorCode.TEXT_FRAME: _CodeInfo(False, CloseCode.UNSUPPORTED_DATA),
    ErrorCode.NOT_JOINED: _CodeInfo(False, None),
    ErrorCode.ALREADY_JOINED: _CodeInfo(False, None),
    ErrorCode.BAD_CODE: _CodeInfo(False, None),
    ErrorCode.BAD_TOKEN: _CodeInfo(False, None),
    ErrorCode.BAD_KEY: _CodeInfo(False, CloseCode.POLICY_VIOLATION),
    ErrorCode.FORBIDDEN: _CodeInfo(False, None),
    ErrorCode.RATE_LIMITED: _CodeInfo(True, None),
    ErrorCode.TOO_MANY_CONNECTIONS: _CodeInfo(True, CloseCode.TRY_AGAIN_LATER),
    ErrorCode.SESSION_FULL: _CodeInfo(False, None),
    ErrorCode.HANDSHAKE_TIMEOUT: _CodeInfo(True, CloseCode.POLICY_VIOLATION),
    ErrorCode.SHUTTING_DOWN: _CodeInfo(True, CloseCode.SERVICE_RESTART),
    ErrorCode.MOVED: _CodeInfo(True, CloseCode.MOVED),
    ErrorCode.FENCED: _CodeInfo(True, CloseCode.FENCED),
    ErrorCode.BUSY: _CodeInfo(True, None),
    ErrorCode.UNAVAILABLE: _CodeInfo(True, None),
    ErrorCode.INTERNAL: _CodeInfo(True, None),
    ErrorCode.GENERATOR_UNAVAILABLE: _CodeInfo(True, None),
    ErrorCode.WRONG_PHASE: _CodeInfo(False, None),
    ErrorCode.NOT_CURRENT_QUESTION: _CodeInfo(False, None),
    ErrorCode.QUESTION_CLOSED: _CodeInfo(False, None),
    ErrorCode.INVALID_ANSWER: _CodeInfo(False, None),
    ErrorCode.INVALID_NAME: _CodeInfo(False, None),
    ErrorCode.NAME_TAKEN: _CodeInfo(False, None),
    ErrorCode.UNKNOWN_PARTICIPANT: _CodeInfo(False, None),
    ErrorCode.UNKNOWN_ROUND: _CodeInfo(False, None),
    ErrorCode.JOKER_USED: _CodeInfo(False, None),
    ErrorCode.JOKER_TOO_LATE: _CodeInfo(False, None),
    ErrorCode.NOT_A_WAGER_ROUND: _CodeInfo(False, None),
    ErrorCode.INVALID_WAGER: _CodeInfo(False, None),
    ErrorCode.INVALID_COMMAND: _CodeInfo(False, None),
    ErrorCode.KICKED: _CodeInfo(False, CloseCode.KICKED),
    ErrorCode.SESSION_ENDED: _CodeInfo(False, CloseCode.SESSION_ENDED),
    ErrorCode.TEAM_FULL: _CodeInfo(False, None),
}


class PubquizError(Exception):
    """Base of every exception the engine raises on purpose."""


class RemoteError(PubquizError):
    """The peer did something we refuse. Carries what to answer it with."""

    def __init__(self, code: ErrorCode, message: str, *,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code._value_}: {message}")  # not f"{code}": 1.5 us (a StrEnum)
        self.code = code
        self.message = message
        #: For a retryable refusal: how long the client should wait before retrying, when the
        #: server knows (a lease that lapses, a store that is being retried); else None.
        self.retry_after_ms = retry_after_ms

    @property
    def retryable(self) -> bool:
        return self.code.retryable

    @property
    def close_code(self) -> CloseCode | None:
        return self.code.close_code


class ProtocolError(RemoteError):
    """A frame or message that breaks pubquiz.v1 (raised by the codec and the transport)."""


class Rejected(RemoteError):
    """A well-formed command that the rules refuse; the state is left unchanged."""


class LocalError(PubquizError):
    """Something on our side failed: a bug, or a resource we depend on."""


class StoreError(LocalError):
    """The database could not do what was asked (translated from the driver's exceptions)."""


class StoreUnavailable(StoreError):
    """The database is unreachable or failing; the write-behind queue retries with back-off."""


class StaleEpoch(StoreError):
    """A write carried a fencing epoch lower than the session's current one: we are fenced."""


class CorruptData(LocalError, ValueError):
    """Stored bytes (a snapshot record, a session state) are not what an engine wrote: damaged,
    truncated, over a limit, or of another format. Raised by the codec's ``unpack_stored`` and
    by the game's ``GameSession.from_snapshot``; a ``ValueError`` too, for callers that already
    caught that."""


class QueueFull(LocalError):
    """The write-behind queue is at its bound; the client gets a retryable ``busy`` error."""


class QuizFileError(PubquizError):
    """A quiz file failed validation; ``problems`` lists every problem found, located."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
