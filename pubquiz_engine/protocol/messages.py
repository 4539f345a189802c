"""The pubquiz.v1 message catalogue: one frozen attrs class per wire message type.

Rules this module keeps:

1. A message is plain, validated data. Constructing one with a wrong type, an out-of-range number,
   a non-finite float or an over-long string raises ``FieldError`` (a ``ValueError`` carrying the
   stable ``ErrorCode`` the codec answers with). A message that exists is therefore always
   encodable, and the codec's decoder gets its per-field validation for free by constructing one.
2. The schema is data: every field is declared with a ``Spec`` (kept in the attrs field metadata
   under ``SPEC_KEY``) that both validates values and describes them, so the hypothesis
   strategies in ``tests/strategies.py`` and the SPEC.md cross-check read the same source of truth.
3. Python attribute names *are* the wire keys, and every class names its wire type in ``TYPE``.
   The same wire name may mean different things per direction (``reveal`` is a host command
   client -> server and an event server -> client), so there is one registry per direction.
4. Sequences become tuples and free-form maps are deep-copied on construction, so decoded messages
   and locally built ones compare equal (msgpack cannot tell a list from a tuple). The map copies
   are plain dicts: treat them as read-only.
5. Pure: imports attrs and the engine's ``errors`` only.

The validation framework the fields are declared with (``Spec`` and its kinds, ``wire``,
``FieldError``, the numeric ranges and per-field limits) is ``fields.py``; this module is the
message table. The framework's names it uses (``FieldError``, the specs, the limits) are
importable from here too, as before.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeAlias, TypeVar

import attrs

from pubquiz_engine.errors import ErrorCode
from pubquiz_engine.protocol.fields import (
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_CODE_CHARS,
    MAX_ERROR_CODE_CHARS,
    MAX_KEY_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    MAX_TOKEN_CHARS,
    MAX_URL_CHARS,
    SAFE_MAX,
    SAFE_MIN,
    AnswerSpec,
    BoolSpec,
    EnumSpec,
    FieldError,
    IntListSpec,
    IntSpec,
    LeaderboardSpec,
    MapSpec,
    Nullable,
    ScoreListSpec,
    Spec,
    TextListSpec,
    TextSpec,
    field_spec,
    wire,
)
from pubquiz_engine.protocol.fields import (  # the framework, re-exported by name
    U31_MAX as U31_MAX,
)

ROLES = ("player", "host", "display")
REPLAYS = ("events", "state")
MODES = ("solo", "team")
#: What ``generate`` can ask a model for: single-choice, free-text or numeric questions.
GENERATE_KINDS = ("choice", "text", "numeric")
MAX_TOPIC_CHARS = 200
MAX_GENERATE_COUNT = 50
#: The wire names of question kinds (the same strings as ``game.QuestionKind``).
QUESTION_KINDS = ("single", "multiple", "truefalse", "text", "numeric", "ordering")
#: Session phases, as named in SPEC.md and in ``state.phase``.
PHASES = (
    "lobby",
    "question_open",
    "question_closed",
    "revealed",
    "leaderboard",
    "round_summary",
    "slide",
    "paused",
    "finished",
)


class Direction(enum.StrEnum):
    """Which way a frame travels; selects the registry (and default limits) to decode with."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"


# Shared specs.
_RID = IntSpec(0, U31_MAX)
_U31 = IntSpec(0, U31_MAX)
_RANK = IntSpec(1, U31_MAX)
_SEQ = IntSpec(1, SAFE_MAX)
_SEQ0 = IntSpec(0, SAFE_MAX)
_MS = IntSpec(0, SAFE_MAX)
_DURATION_MS = IntSpec(0, U31_MAX)
_SCORE = IntSpec(SAFE_MIN, SAFE_MAX)
_BOOL = BoolSpec()
_CODE = TextSpec(MAX_CODE_CHARS)
_TOKEN = TextSpec(MAX_TOKEN_CHARS)
_NAME = TextSpec(MAX_NAME_CHARS)
_REASON = TextSpec(MAX_REASON_CHARS)
_TITLE = TextSpec(MAX_TITLE_CHARS)
_TEXT = TextSpec(MAX_TEXT_CHARS)
_URL = TextSpec(MAX_URL_CHARS)
_MAP = MapSpec()


# ---------------------------------------------------------------------------------------------
# The message base class and registries.


class Message:
    """Base of every pubquiz.v1 message class.

    Class attributes filled in by ``_register``: ``TYPE`` (the wire name), ``DIRECTION``,
    ``BROADCAST`` (a session event carrying ``seq``), ``FIELDS`` (wire keys in canonical order)
    and ``REQUIRED`` (keys that may not be left out).
    """

    __slots__ = ()

    TYPE: ClassVar[str]
    DIRECTION: ClassVar[Direction]
    BROADCAST: ClassVar[bool]
    FIELDS: ClassVar[tuple[str, ...]]
    REQUIRED: ClassVar[frozenset[str]]
    #: ``FIELDS`` plus ``"t"``: the keys a frame may hold.
    ALLOWED_KEYS: ClassVar[frozenset[str]]
    #: Fields holding free-form maps: the only ones the codec walks for the depth limit (every
    #: other field's spec bounds its own nesting).
    MAP_FIELDS: ClassVar[tuple[str, ...]]

    def __init__(self, **fields: Any) -> None:
        # Every concrete message is an attrs class whose generated __init__ replaces this one.
        # It exists so that code holding a ``type[Message]`` may call ``cls(rid=..., **fields)``
        # and still type-check.
        raise TypeError(f"{type(self).__name__} is not a concrete pubquiz.v1 message")

    def to_wire(self) -> dict[str, Any]:
        """The frame as a msgpack-ready dict: ``"t"`` first, then every field in declaration
        order (nil fields included). Replaced per class by generated code (see ``_register``)."""
        raise NotImplementedError  # pragma: no cover


#: Client -> server messages by wire name.
CLIENT_MESSAGES: dict[str, type[Message]] = {}
#: Server -> client messages by wire name.
SERVER_MESSAGES: dict[str, type[Message]] = {}

_M = TypeVar("_M", bound=Message)


def _compile_to_wire(cls: type[Message]) -> Callable[[Message], dict[str, Any]]:
    # Generated once per class so that encoding is a single dict display: no loop, no getattr
    # by name, no attrs.asdict. This is the hot path of every broadcast.
    items = ", ".join(f"{name!r}: m.{name}" for name in cls.FIELDS)
    source = f"def to_wire(m):\n    return {{'t': TYPE, {items}}}\n"
    namespace: dict[str, Any] = {"TYPE": cls.TYPE}
    exec(compile(source, f"<pubquiz.v1 {cls.TYPE}>", "exec"), namespace)
    function: Callable[[Message], dict[str, Any]] = namespace["to_wire"]
    function.__doc__ = Message.to_wire.__doc__
    return function


def _holds_map(spec: Spec) -> bool:
    return isinstance(spec.inner if isinstance(spec, Nullable) else spec, MapSpec)


def _register(
    direction: Direction, wire_type: str, *, broadcast: bool = False
) -> Callable[[type[_M]], type[_M]]:
    registry = CLIENT_MESSAGES if direction is Direction.CLIENT_TO_SERVER else SERVER_MESSAGES

    def register(cls: type[_M]) -> type[_M]:
        # Schema mistakes fail at import time, loudly (not with assert: -O would drop it).
        if wire_type in registry:
            raise TypeError(f"duplicate {direction} message {wire_type}")
        fields = attrs.fields(cls)  # type: ignore[arg-type]  # _M is an attrs class here
        cls.TYPE = wire_type
        cls.DIRECTION = direction
        cls.FIELDS = tuple(f.name for f in fields)
        cls.BROADCAST = broadcast
        # Events carry the session's seq; personal messages may not (welcome's seq is a field
        # about the session, not the frame's position in it, hence the explicit flag).
        if broadcast != (cls.FIELDS[:1] == ("seq",)):
            raise TypeError(f"{wire_type}: events, and only events, start with seq")
        for f in fields:
            # A nullable spec and a None default go together (and nothing else has a default).
            nullable = isinstance(field_spec(f), Nullable)
            if f.default is not (None if nullable else attrs.NOTHING):
                raise TypeError(f"{wire_type}.{f.name}: nullable <=> default None")
        cls.REQUIRED = frozenset(f.name for f in fields if not isinstance(field_spec(f), Nullable))
        cls.ALLOWED_KEYS = frozenset((*cls.FIELDS, "t"))
        cls.MAP_FIELDS = tuple(f.name for f in fields if _holds_map(field_spec(f)))
        cls.to_wire = _compile_to_wire(cls)  # type: ignore[method-assign,assignment]
        registry[wire_type] = cls
        return cls

    return register


def _c(wire_type: str) -> Callable[[type[_M]], type[_M]]:
    return _register(Direction.CLIENT_TO_SERVER, wire_type)


def _s(wire_type: str) -> Callable[[type[_M]], type[_M]]:
    return _register(Direction.SERVER_TO_CLIENT, wire_type)


def _event(wire_type: str) -> Callable[[type[_M]], type[_M]]:
    return _register(Direction.SERVER_TO_CLIENT, wire_type, broadcast=True)


# ---------------------------------------------------------------------------------------------
# Client -> server. Every request carries ``rid``; the reply echoes it.


@_c("join")
@attrs.frozen(kw_only=True)
class Join(Message):
    """A player joins a session by its join code (team: ``None`` in solo mode)."""

    rid: int = attrs.field(**wire(_RID))
    code: str = attrs.field(**wire(_CODE))
    name: str = attrs.field(**wire(_NAME))
    team: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))


@_c("resume")
@attrs.frozen(kw_only=True)
class Resume(Message):
    """A player reconnects with its resume token and the last ``seq`` it saw, in ``epoch``
    (the epoch of the ``welcome`` that ``seq`` counts in; nil: unknown, SPEC section 13)."""

    rid: int = attrs.field(**wire(_RID))
    token: str = attrs.field(**wire(_TOKEN))
    last_seq: int = attrs.field(**wire(_SEQ0))
    epoch: int | None = attrs.field(default=None, **wire(Nullable(_SEQ0)))


@_c("host")
@attrs.frozen(kw_only=True)
class Host(Message):
    """The quiz master attaches to a session with its host token."""

    rid: int = attrs.field(**wire(_RID))
    code: str = attrs.field(**wire(_CODE))
    token: str = attrs.field(**wire(_TOKEN))
    last_seq: int | None = attrs.field(default=None, **wire(Nullable(_SEQ0)))
    #: The epoch ``last_seq`` counts in (nil: unknown; see ``Resume``).
    epoch: int | None = attrs.field(default=None, **wire(Nullable(_SEQ0)))


@_c("watch")
@attrs.frozen(kw_only=True)
class Watch(Message):
    """A display (big screen) attaches read-only."""

    rid: int = attrs.field(**wire(_RID))
    code: str = attrs.field(**wire(_CODE))
    last_seq: int | None = attrs.field(default=None, **wire(Nullable(_SEQ0)))
    #: The epoch ``last_seq`` counts in (nil: unknown; see ``Resume``).
    epoch: int | None = attrs.field(default=None, **wire(Nullable(_SEQ0)))


@_c("create_session")
@attrs.frozen(kw_only=True)
class CreateSession(Message):
    """An operator creates a session from a quiz file on the server or an inline quiz.

    Exactly one of ``quiz_path`` and ``quiz`` is given.
    """

    rid: int = attrs.field(**wire(_RID))
    key: str = attrs.field(**wire(TextSpec(MAX_KEY_CHARS)))
    quiz_path: str | None = attrs.field(default=None, **wire(Nullable(TextSpec(MAX_PATH_CHARS))))
    quiz: dict[str, Any] | None = attrs.field(default=None, **wire(Nullable(_MAP)))
    mode: str = attrs.field(**wire(EnumSpec(MODES)))
    options: dict[str, Any] | None = attrs.field(default=None, **wire(Nullable(_MAP)))

    def __attrs_post_init__(self) -> None:
        if (self.quiz_path is None) == (self.quiz is None):
            raise FieldError(
                ErrorCode.INVALID_MESSAGE, "create_session: give exactly one of quiz_path, quiz"
            )


@_c("answer")
@attrs.frozen(kw_only=True)
class Answer(Message):
    """A player answers question ``q`` (idempotent by ``rid``: a retry changes nothing)."""

    rid: int = attrs.field(**wire(_RID))
    q: int = attrs.field(**wire(_U31))
    value: Any = attrs.field(**wire(AnswerSpec()))


@_c("joker")
@attrs.frozen(kw_only=True)
class Joker(Message):
    """A player (for its team) plays its joker on a round."""

    rid: int = attrs.field(**wire(_RID))
    round: int = attrs.field(**wire(_U31))


@_c("wager")
@attrs.frozen(kw_only=True)
class Wager(Message):
    """A player (for its team) wagers points on a wager round."""

    rid: int = attrs.field(**wire(_RID))
    round: int = attrs.field(**wire(_U31))
    amount: int = attrs.field(**wire(_U31))


@_c("leave")
@attrs.frozen(kw_only=True)
class Leave(Message):
    """A player leaves the session for good (its resume token stops working)."""

    rid: int = attrs.field(**wire(_RID))


@_c("start")
@attrs.frozen(kw_only=True)
class Start(Message):
    """Host: leave the lobby and show the first item."""

    rid: int = attrs.field(**wire(_RID))


@_c("next")
@attrs.frozen(kw_only=True)
class Next(Message):
    """Host: advance to the next item (question, slide, round summary, or the end)."""

    rid: int = attrs.field(**wire(_RID))


@_c("close")
@attrs.frozen(kw_only=True)
class Close(Message):
    """Host: close the open question before its deadline."""

    rid: int = attrs.field(**wire(_RID))


@_c("extend")
@attrs.frozen(kw_only=True)
class Extend(Message):
    """Host: give the open (or paused) question more time."""

    rid: int = attrs.field(**wire(_RID))
    seconds: int = attrs.field(**wire(IntSpec(1, 600)))


@_c("pause")
@attrs.frozen(kw_only=True)
class Pause(Message):
    """Host: stop the clock of the open question."""

    rid: int = attrs.field(**wire(_RID))


@_c("unpause")
@attrs.frozen(kw_only=True)
class Unpause(Message):
    """Host: restart the clock with the time that was left."""

    rid: int = attrs.field(**wire(_RID))


@_c("reveal")
@attrs.frozen(kw_only=True)
class Reveal(Message):
    """Host: reveal the correct answer of the current question (closing it if still open)."""

    rid: int = attrs.field(**wire(_RID))


@_c("skip")
@attrs.frozen(kw_only=True)
class Skip(Message):
    """Host: drop the current question from scoring and move on."""

    rid: int = attrs.field(**wire(_RID))


@_c("show_leaderboard")
@attrs.frozen(kw_only=True)
class ShowLeaderboard(Message):
    """Host: show the overall leaderboard, or one round's (``round``)."""

    rid: int = attrs.field(**wire(_RID))
    round: int | None = attrs.field(default=None, **wire(Nullable(_U31)))


@_c("mark")
@attrs.frozen(kw_only=True)
class Mark(Message):
    """Host: mark a participant's answer to question ``q`` right or wrong (re-scores)."""

    rid: int = attrs.field(**wire(_RID))
    q: int = attrs.field(**wire(_U31))
    participant: int = attrs.field(**wire(_U31))
    correct: bool = attrs.field(**wire(_BOOL))


@_c("adjust")
@attrs.frozen(kw_only=True)
class Adjust(Message):
    """Host: correct a participant's (in team mode: its team's) score by ``delta`` points."""

    rid: int = attrs.field(**wire(_RID))
    participant: int = attrs.field(**wire(_U31))
    delta: int = attrs.field(**wire(IntSpec(-1_000_000, 1_000_000)))
    reason: str = attrs.field(**wire(_REASON))


@_c("kick")
@attrs.frozen(kw_only=True)
class Kick(Message):
    """Host: remove a participant (its connection is closed with 4000)."""

    rid: int = attrs.field(**wire(_RID))
    participant: int = attrs.field(**wire(_U31))


@_c("end")
@attrs.frozen(kw_only=True)
class End(Message):
    """Host: finish the quiz now."""

    rid: int = attrs.field(**wire(_RID))


@_c("generate")
@attrs.frozen(kw_only=True)
class Generate(Message):
    """An operator adds a round of generated questions to a session's quiz in the lobby."""

    rid: int = attrs.field(**wire(_RID))
    key: str = attrs.field(**wire(TextSpec(MAX_KEY_CHARS)))
    code: str = attrs.field(**wire(_CODE))
    topic: str = attrs.field(**wire(TextSpec(MAX_TOPIC_CHARS)))
    count: int = attrs.field(**wire(IntSpec(1, MAX_GENERATE_COUNT)))
    kind: str = attrs.field(**wire(EnumSpec(GENERATE_KINDS)))
    difficulty: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))
    language: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))
    round_title: str | None = attrs.field(default=None, **wire(Nullable(_TITLE)))


@_c("ping")
@attrs.frozen(kw_only=True)
class Ping(Message):
    """Anyone: application-level liveness check; answered by ``pong``."""

    rid: int = attrs.field(**wire(_RID))


# ---------------------------------------------------------------------------------------------
# Server -> client: personal replies (no seq).


@_s("welcome")
@attrs.frozen(kw_only=True)
class Welcome(Message):
    """Reply to ``join``/``resume``/``host``/``watch``: who you are and what follows."""

    rid: int = attrs.field(**wire(_RID))
    role: str = attrs.field(**wire(EnumSpec(ROLES)))
    code: str = attrs.field(**wire(_CODE))
    epoch: int = attrs.field(**wire(_SEQ0))
    seq: int = attrs.field(**wire(_SEQ0))
    participant: int | None = attrs.field(default=None, **wire(Nullable(_U31)))
    name: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))
    team: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))
    token: str | None = attrs.field(default=None, **wire(Nullable(_TOKEN)))
    replay: str = attrs.field(**wire(EnumSpec(REPLAYS)))


@_s("session_created")
@attrs.frozen(kw_only=True)
class SessionCreated(Message):
    """Reply to ``create_session``: the join code and the host token."""

    rid: int = attrs.field(**wire(_RID))
    code: str = attrs.field(**wire(_CODE))
    host_token: str = attrs.field(**wire(_TOKEN))


@_s("ok")
@attrs.frozen(kw_only=True)
class Ok(Message):
    """Reply to a host command (and ``leave``, ``joker``, ``wager``) that was applied."""

    rid: int = attrs.field(**wire(_RID))


@_s("pong")
@attrs.frozen(kw_only=True)
class Pong(Message):
    """Reply to ``ping``."""

    rid: int = attrs.field(**wire(_RID))


@_s("generated")
@attrs.frozen(kw_only=True)
class Generated(Message):
    """Reply to ``generate``: the round now at index ``round`` of the session's quiz."""

    rid: int = attrs.field(**wire(_RID))
    round: int = attrs.field(**wire(_U31))
    added: int = attrs.field(**wire(_U31))
    dropped: int = attrs.field(**wire(_U31))
    notes: tuple[str, ...] = attrs.field(**wire(TextListSpec(MAX_CHOICES, MAX_MESSAGE_CHARS)))


@_s("answer_ack")
@attrs.frozen(kw_only=True)
class AnswerAck(Message):
    """Reply to ``answer``: the answer is recorded (durably, in the default ack mode)."""

    rid: int = attrs.field(**wire(_RID))
    q: int = attrs.field(**wire(_U31))


@_s("error")
@attrs.frozen(kw_only=True)
class ErrorReply(Message):
    """A request was refused (``rid`` set) or the connection is about to close (``rid`` nil).

    ``code`` is a stable error code; clients must accept codes they do not know.
    """

    rid: int | None = attrs.field(default=None, **wire(Nullable(_RID)))
    code: str = attrs.field(**wire(TextSpec(MAX_ERROR_CODE_CHARS)))
    message: str = attrs.field(**wire(TextSpec(MAX_MESSAGE_CHARS)))
    retryable: bool = attrs.field(**wire(_BOOL))
    #: For a retryable error: wait at least this long before retrying (nil: use your back-off).
    retry_after_ms: int | None = attrs.field(default=None, **wire(Nullable(_U31)))


@_s("redirect")
@attrs.frozen(kw_only=True)
class Redirect(Message):
    """The session ``code`` lives on another node: reconnect to ``url``."""

    rid: int | None = attrs.field(default=None, **wire(Nullable(_RID)))
    code: str = attrs.field(**wire(_CODE))
    url: str = attrs.field(**wire(_URL))


@_s("you")
@attrs.frozen(kw_only=True)
class You(Message):
    """Personal line after a leaderboard: your (team's) rank and score."""

    rank: int | None = attrs.field(default=None, **wire(Nullable(_RANK)))
    score: int = attrs.field(**wire(_SCORE))
    round_score: int | None = attrs.field(default=None, **wire(Nullable(_SCORE)))


@_s("result")
@attrs.frozen(kw_only=True)
class Result(Message):
    """Personal result after a reveal: was your answer right, and your new total. Every
    scoring participant gets one; ``answered`` is false (and ``correct`` false, ``points``
    0) when the participant (their team) gave no answer."""

    q: int = attrs.field(**wire(_U31))
    correct: bool = attrs.field(**wire(_BOOL))
    points: int = attrs.field(**wire(_SCORE))
    score: int = attrs.field(**wire(_SCORE))
    answered: bool = attrs.field(**wire(_BOOL))


# ---------------------------------------------------------------------------------------------
# Server -> client: session events (broadcast, with seq).


@_event("state")
@attrs.frozen(kw_only=True)
class State(Message):
    """The full state as of ``seq`` (shape in SPEC.md, section "The state map")."""

    seq: int = attrs.field(**wire(_SEQ0))
    state: dict[str, Any] = attrs.field(**wire(_MAP))


@_event("player_joined")
@attrs.frozen(kw_only=True)
class PlayerJoined(Message):
    """A participant joined."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))
    name: str = attrs.field(**wire(_NAME))
    team: str | None = attrs.field(default=None, **wire(Nullable(_NAME)))


@_event("player_left")
@attrs.frozen(kw_only=True)
class PlayerLeft(Message):
    """A participant left (``leave``)."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))


@_event("player_kicked")
@attrs.frozen(kw_only=True)
class PlayerKicked(Message):
    """The host removed a participant."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))


@_event("question")
@attrs.frozen(kw_only=True)
class Question(Message):
    """A question opened. ``deadline_ms`` is the server's wall clock (unix ms)."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    round: int = attrs.field(**wire(_U31))
    number: int = attrs.field(**wire(IntSpec(1, U31_MAX)))
    kind: str = attrs.field(**wire(EnumSpec(QUESTION_KINDS)))
    prompt: str = attrs.field(**wire(_TEXT))
    choices: tuple[str, ...] | None = attrs.field(
        default=None, **wire(Nullable(TextListSpec(MAX_CHOICES, MAX_CHOICE_CHARS)))
    )
    media: str | None = attrs.field(default=None, **wire(Nullable(_URL)))
    points: int = attrs.field(**wire(_SCORE))
    time_limit_ms: int = attrs.field(**wire(_DURATION_MS))
    deadline_ms: int = attrs.field(**wire(_MS))
    #: The most extra points a right answer earns for speed (before multipliers); nil: none.
    speed_bonus: int | None = attrs.field(default=None, **wire(Nullable(_U31)))


@_event("slide")
@attrs.frozen(kw_only=True)
class Slide(Message):
    """A slide (intro, rules, round title) is shown."""

    seq: int = attrs.field(**wire(_SEQ))
    title: str = attrs.field(**wire(_TITLE))
    body: str = attrs.field(**wire(_TEXT))


@_event("answer_count")
@attrs.frozen(kw_only=True)
class AnswerCount(Message):
    """How many of those who can answer question ``q`` have answered."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    answered: int = attrs.field(**wire(_U31))
    total: int = attrs.field(**wire(_U31))


@_event("answered")
@attrs.frozen(kw_only=True)
class Answered(Message):
    """Hosts only: ``participant`` answered question ``q``."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    participant: int = attrs.field(**wire(_U31))


@_event("closed")
@attrs.frozen(kw_only=True)
class Closed(Message):
    """Question ``q`` is closed: no more answers."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))


@_event("paused")
@attrs.frozen(kw_only=True)
class Paused(Message):
    """The clock is stopped with ``remaining_ms`` left."""

    seq: int = attrs.field(**wire(_SEQ))
    remaining_ms: int = attrs.field(**wire(_DURATION_MS))


@_event("unpaused")
@attrs.frozen(kw_only=True)
class Unpaused(Message):
    """The clock runs again; the new deadline (unix ms)."""

    seq: int = attrs.field(**wire(_SEQ))
    deadline_ms: int = attrs.field(**wire(_MS))


@_event("extended")
@attrs.frozen(kw_only=True)
class Extended(Message):
    """Question ``q`` got more time; its new deadline (unix ms)."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    deadline_ms: int = attrs.field(**wire(_MS))


@_event("reveal")
@attrs.frozen(kw_only=True)
class Revealed(Message):
    """The correct answer of question ``q`` (wire type ``reveal``)."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    correct: Any = attrs.field(**wire(AnswerSpec(accepted_texts=True)))
    distribution: tuple[int, ...] | None = attrs.field(
        default=None, **wire(Nullable(IntListSpec(MAX_CHOICES, 0, U31_MAX)))
    )
    #: Why that is the answer (the quiz's explanation), or nil.
    explanation: str | None = attrs.field(default=None, **wire(Nullable(_TEXT)))


@_event("leaderboard")
@attrs.frozen(kw_only=True)
class Leaderboard(Message):
    """Standings, overall (``round`` nil) or for one round; of teams or of players."""

    seq: int = attrs.field(**wire(_SEQ))
    round: int | None = attrs.field(default=None, **wire(Nullable(_U31)))
    teams: bool = attrs.field(**wire(_BOOL))
    top: tuple[tuple[int, int, str, int], ...] = attrs.field(**wire(LeaderboardSpec()))


@_event("round_summary")
@attrs.frozen(kw_only=True)
class RoundSummary(Message):
    """A round is over."""

    seq: int = attrs.field(**wire(_SEQ))
    round: int = attrs.field(**wire(_U31))
    title: str = attrs.field(**wire(_TITLE))


@_event("score_adjusted")
@attrs.frozen(kw_only=True)
class ScoreAdjusted(Message):
    """The host corrected a score."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))
    delta: int = attrs.field(**wire(IntSpec(-1_000_000, 1_000_000)))
    reason: str = attrs.field(**wire(_REASON))


# Hosts only: the events that change nothing on a player's or display's screen, so that a host
# receives every seq and can tell a lost event from one meant for others (SPEC section 5).


@_event("started")
@attrs.frozen(kw_only=True)
class Started(Message):
    """Hosts only: the quiz started (the first slide or question follows)."""

    seq: int = attrs.field(**wire(_SEQ))


@_event("round_started")
@attrs.frozen(kw_only=True)
class RoundStarted(Message):
    """Hosts only: round ``round`` began (its first slide or question follows)."""

    seq: int = attrs.field(**wire(_SEQ))
    round: int = attrs.field(**wire(_U31))
    title: str = attrs.field(**wire(_TITLE))


@_event("joker_played")
@attrs.frozen(kw_only=True)
class JokerPlayed(Message):
    """Hosts only: ``participant`` played their (team's) joker on ``round``."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))
    round: int = attrs.field(**wire(_U31))


@_event("wager_placed")
@attrs.frozen(kw_only=True)
class WagerPlaced(Message):
    """Hosts only: ``participant`` staked ``amount`` on ``round`` (0: the stake withdrawn)."""

    seq: int = attrs.field(**wire(_SEQ))
    participant: int = attrs.field(**wire(_U31))
    round: int = attrs.field(**wire(_U31))
    amount: int = attrs.field(**wire(_U31))


@_event("marked")
@attrs.frozen(kw_only=True)
class Marked(Message):
    """Hosts only: the host marked ``participant``'s (team's) answer to ``q``."""

    seq: int = attrs.field(**wire(_SEQ))
    q: int = attrs.field(**wire(_U31))
    participant: int = attrs.field(**wire(_U31))
    correct: bool = attrs.field(**wire(_BOOL))


@_event("scores")
@attrs.frozen(kw_only=True)
class Scores(Message):
    """Hosts only: totals that changed (at a reveal, a mark, an adjustment, a settled wager),
    per participant (in team mode each member with the team's total)."""

    seq: int = attrs.field(**wire(_SEQ))
    reason: str = attrs.field(**wire(TextSpec(64)))
    q: int | None = attrs.field(default=None, **wire(Nullable(_U31)))
    scores: tuple[tuple[int, int], ...] = attrs.field(**wire(ScoreListSpec()))


@_event("ended")
@attrs.frozen(kw_only=True)
class Ended(Message):
    """The quiz is over (finished, or ended by the host or the operator)."""

    seq: int = attrs.field(**wire(_SEQ))
    reason: str = attrs.field(**wire(_REASON))


ClientMessage: TypeAlias = (
    Join
    | Resume
    | Host
    | Watch
    | CreateSession
    | Answer
    | Joker
    | Wager
    | Leave
    | Start
    | Next
    | Close
    | Extend
    | Pause
    | Unpause
    | Reveal
    | Skip
    | ShowLeaderboard
    | Mark
    | Adjust
    | Kick
    | End
    | Ping
)

ServerMessage: TypeAlias = (
    Welcome
    | SessionCreated
    | Ok
    | Pong
    | AnswerAck
    | ErrorReply
    | Redirect
    | You
    | Result
    | State
    | PlayerJoined
    | PlayerLeft
    | PlayerKicked
    | Question
    | Slide
    | AnswerCount
    | Answered
    | Closed
    | Paused
    | Unpaused
    | Extended
    | Revealed
    | Leaderboard
    | RoundSummary
    | ScoreAdjusted
    | Ended
)

AnyMessage: TypeAlias = ClientMessage | ServerMessage


def registry(direction: Direction) -> Mapping[str, type[Message]]:
    """The message classes of one direction, by wire name."""
    return CLIENT_MESSAGES if direction is Direction.CLIENT_TO_SERVER else SERVER_MESSAGES
