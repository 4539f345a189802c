"""A person at a terminal: ``pubquiz-engine play`` and ``pubquiz-engine host``.

Both print what the session does as it happens, in sentences, and read commands from standard
input (in a worker thread, so the event loop keeps receiving while the person types).

Rules this module keeps:

1. **Every expected failure is one line and an exit code** (``ExitCode``, listed in the README
   and in ``--help``): no engine at ``--url``, the engine stopping and not coming back, a
   refusal (unknown code, name taken, kicked), Ctrl-C. Tracebacks are for bugs only.
2. **A player keeps their place.** The resume token (and the join code, the name, the next
   request id, the last event seen) is kept in the user's state directory, one file per
   session (``StateFile``). After a dropped connection the terminal resumes by itself with
   back-off; a new ``play CODE`` resumes from the file; ``--new`` joins as someone else.
3. **Request ids never repeat for a participant** (``rid`` is the answer's idempotency key across
   reconnects): ids are reserved in blocks and the file records the end of the block *before*
   any id of it is used, so even a killed process never reuses one.
4. **Output is for people** (``View``): choices by letter, the answer's text at the reveal, the
   explanation, seconds left rather than epoch milliseconds, partial credit and the speed bonus
   named, host marks and adjustments told to the player they concern. Never a dataclass repr.
5. Both commands stop after "The quiz has ended".
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from pubquiz_engine.client import (
    Backoff,
    Client,
    ClientClosed,
    ConnectFailed,
    TooManyRedirects,
    open_client,
    open_session_client,
)
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.protocol.fields import FieldError


class ExitCode(enum.IntEnum):
    """What ``play`` and ``host`` exit with (rule 1)."""

    OK = 0  # the quiz ended, or you quit (your place is kept)
    REFUSED = 1  # the engine refused: unknown join code, name taken, removed by the host, ...
    USAGE = 2  # a bad command line (argparse's own code)
    UNREACHABLE = 3  # no engine at --url, or the connection was lost and did not come back
    INTERRUPTED = 130  # Ctrl-C (your place is kept)


EXIT_CODES_HELP = (
    "exit codes: 0 the quiz ended or you quit, 1 refused by the engine (unknown code, name "
    "taken, removed), 2 bad command line, 3 no engine at --url or the connection did not come "
    "back, 130 Ctrl-C"
)


class TerminalExit(Exception):
    """Stop the terminal with ``code``, telling the person ``message``."""

    def __init__(self, code: ExitCode, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: Close codes after which reconnecting cannot help (SPEC section 12), with what to say.
TERMINAL_CLOSES: Mapping[int, tuple[ExitCode, str]] = {
    CloseCode.KICKED: (ExitCode.REFUSED, "The quiz master removed you from this quiz."),
    CloseCode.SESSION_ENDED: (ExitCode.OK, "The quiz is over."),
    CloseCode.BAD_CREDENTIALS: (ExitCode.REFUSED, "The engine no longer accepts these "
                                "credentials."),
    CloseCode.REPLACED: (ExitCode.REFUSED, "Another terminal or device took over this place; "
                         "this one stops here."),
    CloseCode.NORMAL: (ExitCode.OK, "The engine closed the connection."),
    CloseCode.POLICY_VIOLATION: (ExitCode.REFUSED, "The engine closed the connection (policy "
                                 "violation: too many messages?)."),
    CloseCode.UNSUPPORTED_DATA: (ExitCode.REFUSED, "The engine closed the connection (1003)."),
    CloseCode.MESSAGE_TOO_BIG: (ExitCode.REFUSED, "The engine closed the connection (1009)."),
}
#: Refusals of ``resume``/``host`` that mean the saved identity is dead: forget it.
DEAD_IDENTITY = frozenset({ErrorCode.BAD_TOKEN, ErrorCode.KICKED, ErrorCode.SESSION_ENDED,
                           ErrorCode.BAD_CODE})
#: Request ids reserved (written to the state file) ahead of use (rule 3).
RID_BLOCK = 64
#: Where ``play`` and ``host`` look for the engine when neither ``--url`` nor a saved place
#: says (``serve``'s default port).
DEFAULT_URL = "ws://127.0.0.1:8765/"
#: ``resume``'s ``last_seq`` on a process's first connection: a fresh screen needs the whole
#: state, not the events since the last one a previous run printed. A ``last_seq`` ahead of the
#: server's is answered with one ``state`` (SPEC "Reconnecting", 3); ``host`` says nil instead.
WHOLE_STATE = 2**53 - 1
#: Reconnect back-off: 0.5 s doubling to 10 s (SPEC section 12's example).
RECONNECT = Backoff(first=0.5, factor=2.0, limit=10.0, attempts=1_000_000)
#: Retry of retryable refusals (busy, rate_limited, ...) of one request.
REQUEST_RETRY = Backoff(first=0.25, factor=2.0, limit=5.0, attempts=6)


# --- the state directory (rule 2) ---------------------------------------------------------------

def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where saved places live: ``$PUBQUIZ_STATE_DIR``, else ``$XDG_STATE_HOME/pubquiz-engine``,
    else ``~/.local/state/pubquiz-engine``."""
    if environ.get("PUBQUIZ_STATE_DIR"):
        return Path(environ["PUBQUIZ_STATE_DIR"])
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pubquiz-engine"


@attrs.define
class Saved:
    """A saved place in one session: enough to come back as the same participant or host."""

    role: str  # "player" | "host"
    url: str
    code: str
    token: str
    name: str | None = None
    team: str | None = None
    next_rid: int | None = None  # no id below this has been used (rule 3)
    last_seq: int = 0
    epoch: int | None = None
    question: str | None = None  # the last question event, as a hex frame (to answer it)


@attrs.define
class StateFile:
    """One JSON file per role and session in ``directory``, readable by its owner only."""

    directory: Path
    role: str
    code: str

    @property
    def path(self) -> Path:
        return self.directory / f"{self.role}-{self.code.upper()}.json"

    def load(self) -> Saved | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Saved(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, OSError):
            return None  # a damaged file is as good as none: the player joins anew

    def prepare(self) -> None:
        """Make sure a place can be kept here *before* joining or creating (``TerminalExit``
        if not): a place taken that cannot be saved is a place lost at the next Ctrl-C."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            raise self._cannot(exc) from None

    def _cannot(self, exc: OSError) -> TerminalExit:
        return TerminalExit(ExitCode.USAGE, (
            f"Cannot keep your place in {self.directory}: {exc.strerror or exc}. Give a "
            "directory you can write with --state-dir (or PUBQUIZ_STATE_DIR)."))

    def save(self, saved: Saved) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half). A place
        that cannot be kept stops the terminal (``TerminalExit``): going on would lose it."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(attrs.asdict(saved), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise self._cannot(exc) from None

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


# --- what the person reads (rule 4) ------------------------------------------------------------

def label(index: int) -> str:
    """A choice's label: A..Z, then numbers."""
    return chr(ord("A") + index) if 0 <= index < 26 else str(index + 1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if abs(n) == 1 else f"{n} {word}s"


def _seconds_left(deadline_ms: int, now: float | None = None) -> int:
    now_ms = (time.time() if now is None else now) * 1000
    return max(0, math.ceil((deadline_ms - now_ms) / 1000))


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


KIND_HINTS = {
    "single": "Answer with one letter.",
    "multiple": "Answer with every right letter, e.g. A,C.",
    "ordering": "Answer with all the letters in order, e.g. C,A,B.",
    "truefalse": "Answer true or false.",
    "text": "Type your answer.",
    "numeric": "Answer with a number.",
}


def parse_answer(text: str, question: m.Question) -> Any:
    """The answer value for ``text`` typed at ``question``; ``ValueError`` says what to type."""
    kind = question.kind
    choices = question.choices or ()

    def index(token: str) -> int:
        token = token.strip()
        if len(token) == 1 and token.isalpha():
            i = ord(token.upper()) - ord("A")
        elif token.isdigit():
            i = int(token) - 1
        else:
            raise ValueError(f"{token!r} is not a choice: {KIND_HINTS[kind]}")
        if not 0 <= i < len(choices):
            raise ValueError(f"there is no choice {token.upper()} (choices {label(0)}.."
                             f"{label(len(choices) - 1)})")
        return i

    if kind == "single":
        return index(text)
    if kind in ("multiple", "ordering"):
        tokens = [t for t in text.replace(" ", ",").split(",") if t]
        if len(tokens) == 1 and len(tokens[0]) > 1 and tokens[0].isalpha():
            tokens = list(tokens[0])  # "AC" means A,C
        picked = [index(t) for t in tokens]
        if len(set(picked)) != len(picked):
            raise ValueError("each letter once, please")
        if kind == "ordering" and len(picked) != len(choices):
            raise ValueError(f"put all {len(choices)} letters in order, e.g. "
                             + ",".join(label(i) for i in range(len(choices))))
        return picked
    if kind == "truefalse":
        lowered = text.strip().lower()
        if lowered in ("true", "t", "yes", "y"):
            return True if not choices else _truefalse_index(choices, True)
        if lowered in ("false", "f", "no", "n"):
            return False if not choices else _truefalse_index(choices, False)
        if choices:
            return index(text)
        raise ValueError("answer true or false")
    if kind == "numeric":
        try:
            number = float(text.strip().replace(",", "."))
        except ValueError:
            raise ValueError("answer with a number, e.g. 1969 or 2.5") from None
        if not math.isfinite(number):
            raise ValueError("answer with a number, e.g. 1969 or 2.5")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return text.strip()


def _truefalse_index(choices: tuple[str, ...], value: bool) -> int | bool:
    for i, choice in enumerate(choices):
        if choice.strip().lower() == ("true" if value else "false"):
            return i
    return value


@attrs.define
class View:
    """What one terminal knows of the session, and the sentences each message becomes.

    ``lines(message)`` updates the view and returns what to print (possibly nothing). Pure but
    for the wall clock (``now``), which only turns deadlines into seconds left.
    """

    role: str  # "player" | "host"
    me: int | None = None  # my participant id (player)
    my_name: str | None = None
    code: str | None = None
    mode: str | None = None
    names: dict[int, str] = attrs.Factory(dict)  # participant id -> name (host)
    teams: dict[int, str | None] = attrs.Factory(dict)  # participant id -> team (host)
    gone: dict[int, str] = attrs.Factory(dict)  # participant id -> "left" | "removed" (host)
    rounds: list[dict[str, Any]] = attrs.Factory(list)
    next_round: int | None = None
    question: m.Question | None = None  # the current (or last) question
    open_q: int | None = None  # the question that takes answers now
    answered_open: bool = False
    results: dict[int, m.Result] = attrs.Factory(dict)  # the last result per question
    score: int | None = None
    joker_round: int | None = None  # the round my (team's) joker is on
    expect_you: bool = False  # a leaderboard was just shown: the next ``you`` goes with it
    notice: str | None = None  # why the engine is about to close the connection
    notice_retry_after_ms: int | None = None  # and how long it asked us to wait
    catching_up: bool = False  # just came back: the next ``you`` says what changed meanwhile
    now: Callable[[], float] = time.time

    # --- pieces ---------------------------------------------------------------------------------

    def who(self, participant: int) -> str:
        name = self.names.get(participant)
        return f"{name} (#{participant})" if name else f"participant #{participant}"

    def answer_text(self, value: Any, question: m.Question | None) -> str:
        """An answer value (or a reveal's correct answer) in words."""
        choices = (question.choices if question is not None else None) or ()
        kind = question.kind if question is not None else None

        def choice(i: Any) -> str:
            if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(choices):
                return f"{label(i)}) {choices[i]}"
            return str(i)

        if isinstance(value, bool):
            return "true" if value else "false"
        if kind == "text" and isinstance(value, list | tuple):
            texts = [str(v) for v in value]
            also = f" (also accepted: {', '.join(texts[1:])})" if len(texts) > 1 else ""
            return f"{texts[0]}{also}" if texts else "(none)"
        if isinstance(value, list | tuple):
            if not value:
                return "none of them"
            joiner = ", then " if kind == "ordering" else " and "
            return joiner.join(choice(v) for v in value)
        if isinstance(value, int) and choices:
            return choice(value)
        if isinstance(value, int | float):
            return _number(value)
        return str(value)

    def round_name(self, index: int) -> str:
        if 0 <= index < len(self.rounds):
            title = self.rounds[index].get("title")
            if title:
                return f"round {index + 1} ({title})"
        return f"round {index + 1}"

    def question_lines(self, q: m.Question, seconds: int | None = None) -> list[str]:
        points = _plural(q.points, "point")
        bonus = getattr(q, "speed_bonus", None)
        if bonus:
            points += f" + up to {bonus} for speed"
        if 0 <= q.round < len(self.rounds):
            multiplier = self.rounds[q.round].get("multiplier")
            if isinstance(multiplier, int | float) and multiplier != 1:
                points += f", ×{_number(multiplier)} this round"
        left = seconds if seconds is not None else q.time_limit_ms // 1000
        lines = [f"Q{q.q + 1} ({self.round_name(q.round)}, question {q.number}) · {points} "
                 f"· {left} s", f"  {q.prompt}"]
        if q.media:
            lines.append(f"  [picture or sound: {q.media}]")
        lines.extend(f"    {label(i)}) {choice}" for i, choice in enumerate(q.choices or ()))
        if self.role == "player":
            lines.append(f"  {KIND_HINTS.get(q.kind, 'Type your answer.')}")
        return lines

    def leaderboard_lines(self, board: m.Leaderboard | Mapping[str, Any]) -> list[str]:
        round_index: int | None
        top: Any
        if isinstance(board, m.Leaderboard):
            round_index, teams, top = board.round, board.teams, board.top
        else:
            round_index, teams, top = board.get("round"), bool(board.get("teams")), \
                board.get("top")
        what = "Team standings" if teams else "Standings"
        where = f" after {self.round_name(round_index)}" if round_index is not None else ""
        lines = [f"{what}{where}:"]
        lines.extend(f"  {rank:>3}. {name:<28} {_plural(int(score), 'point')}"
                     for rank, _id, name, score in top or ())
        if not top:
            lines.append("  (nobody yet)")
        return lines

    def result_lines(self, result: m.Result) -> list[str]:
        earlier = self.results.get(result.q)
        self.results[result.q] = result
        self.score = result.score
        points = _plural(result.points, "point")
        if earlier is not None and earlier != result:
            # A second result for one question: the quiz master marked the answer.
            verdict = "right" if result.correct else ("partly right" if result.points > 0
                                                      else "wrong")
            change = result.score - earlier.score
            return [f"The quiz master marked your answer to Q{result.q + 1} {verdict}: now "
                    f"{points} for it ({change:+d}). Your score: {result.score}."]
        if earlier is not None:
            return []  # the same result again (a replay): said already
        if not result.answered:
            return [f"No answer to Q{result.q + 1}: 0 points. Your score: {result.score}."]
        extra = ""
        q = self.question if self.question is not None and self.question.q == result.q else None
        if result.correct and q is not None:
            extra = self._breakdown(q, result.points)
        if result.correct:
            return [f"Right! +{points}{extra}. Your score: {result.score}."]
        if result.points > 0:
            return [f"Partly right: +{points}. Your score: {result.score}."]
        return [f"Not right this time: {points}. Your score: {result.score}."]

    def _breakdown(self, q: m.Question, points: int) -> str:
        """How a right answer's points came about: the joker, and the speed bonus (the part
        above what the question is worth in its round)."""
        multiplier = 1.0
        if 0 <= q.round < len(self.rounds):
            value = self.rounds[q.round].get("multiplier")
            multiplier = float(value) if isinstance(value, int | float) else 1.0
        joker = self.joker_round == q.round
        base = math.floor(q.points * multiplier * (2 if joker else 1) + 0.5)
        parts = []
        if joker:
            parts.append(f"{base} with your joker")
        speed = points - base
        if getattr(q, "speed_bonus", None) and speed > 0:
            parts.append(f"{'' if joker else str(base) + ' '}+ {speed} for speed".strip())
        return f" ({', '.join(parts)})" if parts else ""

    def you_lines(self, you: m.You) -> list[str]:
        previous, self.score = self.score, you.score
        catching_up, self.catching_up = self.catching_up, False
        if not self.expect_you:
            if previous is None or previous == you.score:
                return []
            if catching_up:
                # The ``you`` after a comeback: results are not replayed (SPEC "Reconnecting"),
                # so the difference is what was scored while the connection was down.
                return [f"Your score: {you.score} ({you.score - previous:+d} while you were "
                        "away)."]
            return [f"The quiz master adjusted your score by {you.score - previous:+d}: "
                    f"now {you.score}."]
        self.expect_you = False
        rank = f"rank {you.rank}" if you.rank is not None else "not ranked yet"
        if you.round_score is not None:
            return [f"You: {_plural(you.round_score, 'point')} this round; overall {rank} with "
                    f"{_plural(you.score, 'point')}."]
        return [f"You: {rank} with {_plural(you.score, 'point')}."]

    # --- one message ----------------------------------------------------------------------------

    def lines(self, message: m.Message) -> list[str]:
        now = self.now()
        if isinstance(message, m.Question):
            self.question, self.open_q, self.answered_open = message, message.q, False
            self.next_round = None
            return self.question_lines(message)
        if isinstance(message, m.Slide):
            # A slide is a step of its round: that round has started (a joker or wager on it
            # is too late), so there is no "next round" to default to any more.
            self.next_round = None
            return [f"== {message.title} ==", *(f"  {line}" for line in
                                                message.body.splitlines())]
        if isinstance(message, m.Closed):
            self.open_q = None
            missed = self.role == "player" and not self.answered_open
            return [f"Q{message.q + 1} is closed." + (" You did not answer it." if missed
                                                      else "")]
        if isinstance(message, m.Revealed):
            self.open_q = None
            q = self.question if self.question is not None and self.question.q == message.q \
                else None
            lines = [f"The answer to Q{message.q + 1}: {self.answer_text(message.correct, q)}"]
            explanation = getattr(message, "explanation", None)
            if explanation:
                lines.append(f"  {explanation}")
            if message.distribution is not None and self.role != "player":
                lines.append("  picked: " + " · ".join(
                    f"{label(i)} {n}" for i, n in enumerate(message.distribution)))
            return lines
        if isinstance(message, m.Result):
            return self.result_lines(message)
        if isinstance(message, m.Leaderboard):
            self.expect_you = self.role == "player"
            return self.leaderboard_lines(message)
        if isinstance(message, m.You):
            return self.you_lines(message)
        if isinstance(message, m.RoundSummary):
            self.next_round = message.round + 1 if message.round + 1 < len(self.rounds) \
                else None
            self.expect_you = self.role == "player"
            offers = self.offers(self.next_round) if self.role == "player" and \
                self.next_round is not None else []
            return [f"End of {self.round_name(message.round)}.", *offers]
        if isinstance(message, m.Paused):
            return [f"Paused ({message.remaining_ms // 1000} s left)."]
        if isinstance(message, m.Unpaused):
            return [f"Running again: {_seconds_left(message.deadline_ms, now)} s left."]
        if isinstance(message, m.Extended):
            return [f"More time for Q{message.q + 1}: "
                    f"{_seconds_left(message.deadline_ms, now)} s left."]
        if isinstance(message, m.Ended):
            reason = message.reason.replace("_", " ")
            why = {"finished": "", "completed": "", "ended by host":
                   " (ended by the quiz master)"}.get(
                reason, f" ({reason})")
            return [f"The quiz has ended{why}."]
        if isinstance(message, m.PlayerJoined):
            self.names[message.participant] = message.name
            self.teams[message.participant] = message.team
            team = f", team {message.team}" if message.team else ""
            return [f"+ {message.name} joined (#{message.participant}{team})"]
        if isinstance(message, m.PlayerLeft):
            self.gone[message.participant] = "left"
            return [f"- {self.who(message.participant)} left"]
        if isinstance(message, m.PlayerKicked):
            self.gone[message.participant] = "removed"
            return [f"- {self.who(message.participant)} was removed"]
        if isinstance(message, m.AnswerCount):
            return [f"  answers to Q{message.q + 1}: {message.answered} of {message.total}"]
        if isinstance(message, m.Answered):
            return [f"  {self.who(message.participant)} answered Q{message.q + 1}"]
        if isinstance(message, m.ScoreAdjusted):
            return [f"Score of {self.who(message.participant)} adjusted by {message.delta:+d}: "
                    f"{message.reason}"]
        # Host-only events (SPEC section 5: hosts see every seq).
        if isinstance(message, m.Started):
            return ["The quiz started."]
        if isinstance(message, m.RoundStarted):
            return [f"Round {message.round + 1}: {message.title}"]
        if isinstance(message, m.JokerPlayed):
            return [f"  {self.who(message.participant)} played a joker on round "
                    f"{message.round + 1}"]
        if isinstance(message, m.WagerPlaced):
            return [f"  {self.who(message.participant)} staked {message.amount} on round "
                    f"{message.round + 1}"]
        if isinstance(message, m.Marked):
            verdict = "right" if message.correct else "wrong"
            return [f"  answer of {self.who(message.participant)} to Q{message.q + 1} marked "
                    f"{verdict}"]
        if isinstance(message, m.Scores):
            return []  # the totals show in the standings
        if isinstance(message, m.State):
            return self.state_lines(message.state, now)
        if isinstance(message, m.ErrorReply):
            # Unsolicited: the engine says why it is about to close the connection.
            self.notice = f"{message.message} ({message.code})"
            self.notice_retry_after_ms = message.retry_after_ms
            return []
        return [f"({message.TYPE})"]

    def state_lines(self, state: Mapping[str, Any], now: float) -> list[str]:
        """A (re)connection's full state, as the screen it stands for."""
        self.mode = state.get("mode") or self.mode
        self.rounds = list(state.get("rounds") or self.rounds)
        self.next_round = state.get("next_round")
        for row in state.get("participants") or ():
            self.names[row["participant"]] = row["name"]
            self.teams[row["participant"]] = row.get("team")
            if row.get("kicked"):
                self.gone[row["participant"]] = "removed"
        phase = state.get("phase")
        lines = [f"{state.get('title', 'The quiz')}: {str(phase).replace('_', ' ')}, "
                 f"{_plural(int(state.get('participant_count') or 0), 'participant')}."]
        you = state.get("you")
        if you is not None:
            self.score = you.get("score")
            rank = f", rank {you['rank']}" if you.get("rank") is not None else ""
            team = f" (team {you['team']})" if you.get("team") else ""
            lines.append(f"You are {you.get('name')}{team}: "
                         f"{_plural(int(you.get('score') or 0), 'point')}{rank}.")
            self.joker_round = you.get("joker")
            if you.get("joker") is not None:
                whose = "Your team's" if you.get("team") else "Your"
                lines.append(f"{whose} joker is on {self.round_name(you['joker'])}.")
            for round_index, amount in you.get("stakes") or ():
                lines.append(f"You wagered {amount} on {self.round_name(round_index)}.")
        if phase == "lobby":
            lines.append("Waiting for the quiz master to start.")
        if state.get("slide"):
            lines.append(f"== {state['slide'].get('title')} ==")
            lines.extend(f"  {line}" for line in str(state['slide'].get('body')).splitlines())
        data = state.get("question")
        if data is not None:
            fields: dict[str, Any] = {
                k: (tuple(v) if k == "choices" and v is not None else v)
                for k, v in data.items() if k in m.Question.FIELDS and k != "seq"}
            question = m.Question(seq=1, **fields)
            self.question = question
            self.open_q = question.q if phase == "question_open" else None
            if phase == "question_open":
                paused = data.get("remaining_ms")
                left = paused // 1000 if paused is not None else _seconds_left(
                    question.deadline_ms, now)
                lines.extend(self.question_lines(question, left))
                if paused is not None:
                    lines.append("  (paused)")
                if you is not None and you.get("answer") is not None:
                    self.answered_open = True
                    lines.append("  Your answer so far: "
                                 + self.answer_text(you["answer"], question))
        reveal = state.get("reveal")
        if reveal is not None:
            lines.append(f"The answer to Q{reveal['q'] + 1}: "
                         + self.answer_text(reveal.get("correct"), self.question))
        if state.get("leaderboard") is not None and phase != "question_open":
            lines.extend(self.leaderboard_lines(state["leaderboard"]))
        if self.role == "player" and self.next_round is not None and self.rounds:
            lines.extend(self.offers(self.next_round))
        return lines

    def offers(self, round_index: int) -> list[str]:
        """What a player may do before ``round_index`` starts (joker, wager)."""
        if not 0 <= round_index < len(self.rounds):
            return []
        info, out = self.rounds[round_index], []
        if info.get("joker") and self.joker_round is None:  # one joker a quiz
            out.append(f"You may play your joker on {self.round_name(round_index)}: /joker")
        if info.get("wager"):
            name = self.round_name(round_index)  # "round 4 (Music)": only the first letter up
            out.append(f"{name[:1].upper()}{name[1:]} takes wagers: /wager POINTS")
        return out


# --- commands ------------------------------------------------------------------------------------

PLAYER_HELP = (
    "Type your answer and Enter while a question is open (you may change it until it closes). "
    "Commands: /joker [ROUND] play your joker (points count double), /wager POINTS [ROUND], "
    "/leave leave the quiz for good, /quit stop here (your place is kept), /help."
)

HOST_USAGE: dict[str, str] = {
    "start": "start                     show the first slide or question",
    "next": "next                      go on to the next slide or question",
    "close": "close                     stop taking answers to the open question",
    "reveal": "reveal                    show the answer (closes the question first)",
    "skip": "skip                      skip the current question",
    "pause": "pause                     stop the clock",
    "unpause": "unpause                   start the clock again",
    "extend": "extend SECONDS            give the open question more time, e.g. extend 15",
    "board": "board [ROUND]             show the standings (of one round if given)",
    "players": "players                   list the participants with their numbers",
    "kick": "kick ID                   remove participant ID (see players)",
    "adjust": "adjust ID DELTA [REASON]  add DELTA points (negative to take) to participant ID",
    "mark": "mark Q ID right|wrong     overrule the marking of ID's answer to question Q",
    "end": "end                       end the quiz now",
    "help": "help                      this list",
    "quit": "quit                      stop this terminal (the quiz goes on; come back with "
            "host --code)",
}

#: A phase id in a refusal, as the host reads it after "cannot be used".
PHASE_WORDS = {
    "lobby": "before the start (in the lobby)",
    "slide": "while a slide is shown",
    "question_open": "while a question is open",
    "question_closed": "while a question is closed and not yet revealed",
    "revealed": "after a reveal",
    "leaderboard": "while the standings are shown",
    "round_summary": "at the end of a round",
    "paused": "while the quiz is paused",
    "finished": "after the end",
}

SIMPLE_HOST_COMMANDS: dict[str, type[m.Message]] = {
    "start": m.Start, "next": m.Next, "close": m.Close, "pause": m.Pause,
    "unpause": m.Unpause, "resume": m.Unpause, "reveal": m.Reveal, "skip": m.Skip,
    "end": m.End,
}


class Usage(ValueError):
    """A command line the terminal could not read; the message says how to write it."""


def _int(word: str, what: str, usage: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise Usage(f"{what} must be a whole number, not {word!r}. Usage: {usage}") from None


def host_request(words: list[str]) -> tuple[type[m.Message], dict[str, Any]]:
    """The request a host command line stands for, or ``Usage`` saying how to write it."""
    verb = words[0].lower()
    args = words[1:]
    if verb in SIMPLE_HOST_COMMANDS:
        if args:
            raise Usage(f"{verb} takes nothing more. Usage: {HOST_USAGE.get(verb, verb)}")
        return SIMPLE_HOST_COMMANDS[verb], {}
    if verb not in HOST_USAGE:
        raise Usage(f"Unknown command {verb!r}. Type help for the list.")
    usage = HOST_USAGE[verb].split("  ")[0].strip()
    if verb == "extend":
        if len(args) != 1:
            raise Usage(f"Usage: {usage}")
        return m.Extend, {"seconds": _int(args[0], "SECONDS", usage)}
    if verb == "board":
        if len(args) > 1:
            raise Usage(f"Usage: {usage}")
        round_index = _int(args[0], "ROUND", usage) - 1 if args else None
        return m.ShowLeaderboard, {"round": round_index}
    if verb == "kick":
        if len(args) != 1:
            raise Usage(f"Usage: {usage}")
        return m.Kick, {"participant": _int(args[0].lstrip("#"), "ID", usage)}
    if verb == "adjust":
        if len(args) < 2:
            raise Usage(f"Usage: {usage}")
        return m.Adjust, {"participant": _int(args[0].lstrip("#"), "ID", usage),
                          "delta": _int(args[1], "DELTA", usage),
                          "reason": " ".join(args[2:]) or "adjusted by the quiz master"}
    if verb == "mark":
        if len(args) != 3 or args[2].lower() not in ("right", "wrong"):
            raise Usage(f"Usage: {usage}")
        return m.Mark, {"q": _int(args[0], "Q", usage) - 1,
                        "participant": _int(args[1].lstrip("#"), "ID", usage),
                        "correct": args[2].lower() == "right"}
    raise Usage(f"Usage: {usage}")  # help, players, quit: handled by the caller


# --- the terminal --------------------------------------------------------------------------------

@attrs.frozen
class Options:
    """What ``play`` and ``host`` were asked for on the command line."""

    url: str | None  # --url; None: the saved place's engine, else DEFAULT_URL
    code: str | None = None
    name: str | None = None
    team: str | None = None
    new: bool = False
    key: str | None = None  # host: operator key, to create a session
    quiz: str = "sample"
    mode: str = "team"
    token: str | None = None  # host: the session's host token
    reconnect_for: float = 120.0  # give up reconnecting after this many seconds
    state_dir: Path = attrs.field(factory=state_dir)
    command: str = "pubquiz-engine"  # how the person ran us, for the hints we print


class Terminal:
    """One person at a terminal: a connection that comes back by itself, and their commands."""

    def __init__(self, role: str, options: Options,
                 write: Callable[[str], None] | None = None) -> None:
        self.role = role
        self.options = options
        self.url = options.url or DEFAULT_URL  # play and host settle it from the saved place
        self.view = View(role=role)
        self._write = write or self._print
        self.saved: Saved | None = None
        self.file: StateFile | None = None
        self.client: Client | None = None
        self._quitting = False  # the person is leaving: a closed connection is expected
        self._exit: TerminalExit | None = None
        self._scope: trio.CancelScope | None = None
        self._pending: tuple[int, int, Any] | None = None  # (rid, q, value) not yet acked
        self._rid_limit = 0  # ids below this are reserved in the state file (rule 3)
        self.attached = False  # this process has been identified once (later: a comeback)
        self.loaded = False  # ``saved`` came from the state file

    @staticmethod
    def _print(text: str) -> None:
        # One write per line, newline included (``print`` writes the end separately): what
        # the person types is echoed between lines, never inside one.
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def say(self, *lines: str) -> None:
        for line in lines:
            self._write(line)

    # --- running ----------------------------------------------------------------------------

    async def run(self, connect: Callable[[], Awaitable[ExitCode]]) -> ExitCode:
        """Run the connection (``connect``) beside the command reader until one of them, or
        Ctrl-C, decides how this ends."""
        lines_send, lines_receive = trio.open_memory_channel[str | None](16)
        with trio.open_signal_receiver(signal.SIGINT) as interrupts:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._guard, connect)
                nursery.start_soon(self._guard, self._interrupted, interrupts)
                nursery.start_soon(_read_stdin, lines_send)
                nursery.start_soon(self._guard, self._commands, lines_receive)
        assert self._exit is not None
        if self._exit.message:
            out = sys.stderr if self._exit.code not in (ExitCode.OK,) else sys.stdout
            print(self._exit.message, file=out, flush=True)
        return self._exit.code

    def finish(self, code: ExitCode, message: str = "") -> None:
        if self._exit is None:
            self._exit = TerminalExit(code, message)
        if self._scope is not None:
            self._scope.cancel()

    async def _guard(self, fn: Callable[..., Awaitable[ExitCode]], *args: Any) -> None:
        try:
            code = await fn(*args)
        except TerminalExit as exc:
            await self._close_connection()
            self.finish(exc.code, exc.message)
        else:
            await self._close_connection()
            self.finish(code)

    async def _close_connection(self) -> None:
        """Say goodbye (WebSocket close handshake) while the connection's reader still runs:
        cancelling first would leave the handshake waiting for a reply nobody reads."""
        client = self.client
        if client is not None:
            self._quitting = True
            with trio.move_on_after(2):
                await client.ws.aclose()

    async def _interrupted(self, interrupts: Any) -> ExitCode:
        async for _ in interrupts:
            self._save()
            raise TerminalExit(ExitCode.INTERRUPTED, "Interrupted. " + self.come_back_hint())
        return ExitCode.INTERRUPTED  # pragma: no cover  # the receiver never ends

    def url_flag(self) -> str:
        """`` --url URL`` when the engine is not at the default address, for the hints."""
        return f" --url {self.url}" if self.url != DEFAULT_URL else ""

    def come_back_hint(self) -> str:
        if self.saved is None:
            return ""
        if self.role == "player":
            return (f"Your place is kept: `{self.options.command} play {self.saved.code}"
                    f"{self.url_flag()}` brings you back.")
        return (f"Come back with `{self.options.command} host --code {self.saved.code}"
                f"{self.url_flag()}`.")

    # --- the connection, again and again (rule 2) ---------------------------------------------

    async def connection_loop(self, code: str, identify: Callable[[Client], Awaitable[m.Welcome]]
                              ) -> ExitCode:
        """Connect, identify, print events; after a drop, come back with back-off (the
        engine's ``retry_after_ms`` when it gives one) for ``--reconnect-for`` seconds."""
        url = self.url
        attempt, give_up_at = 0, None
        while True:
            why = ""
            after_ms: int | None = None  # how long the engine asked us to wait, if it did
            first_rid = self._first_rid()
            if first_rid is not None:  # reserve this connection's first ids before using them
                self._reserve_from(first_rid)
                self._write_file()
            try:
                # No request retry while identifying: a retryable refusal (busy, unavailable)
                # comes back here, to be waited out in the open with a line that says so.
                async with open_session_client(url, code, identify, first_rid=first_rid,
                                               retry=None) as client:
                    client.retry = REQUEST_RETRY  # answers and host commands: retried quietly
                    attempt, give_up_at = 0, None
                    self.client = client
                    try:
                        outcome = await self._receive(client)
                    finally:
                        self._save()
                        self.client = None
                    if isinstance(outcome, ExitCode):
                        return outcome
                    # The connection ended: leave the ``async with`` (closing our side), then
                    # decide below. Raised here, not inside: the client's nursery stays simple.
                raise outcome
            except ConnectFailed as exc:
                if not self.attached:
                    raise TerminalExit(ExitCode.UNREACHABLE, (
                        f"No quiz engine answers at {url}: {exc.reason}. Start one with "
                        f"`{self.options.command} serve`, or give its address with --url."
                    )) from None
                why = exc.reason
            except TooManyRedirects as exc:
                raise TerminalExit(ExitCode.UNREACHABLE, str(exc)) from None
            except ClientClosed as exc:
                ending = TERMINAL_CLOSES.get(exc.code) if exc.code is not None else None
                if ending is not None:
                    if exc.code in (CloseCode.KICKED, CloseCode.SESSION_ENDED):
                        self._forget()
                    raise TerminalExit(ending[0], ending[1]) from None
                why, after_ms = self._closed_reason(exc)
            except RemoteError as exc:
                if not exc.retryable:
                    raise self._refused(exc, code) from None
                why, after_ms = f"{exc.message} ({exc.code})", exc.retry_after_ms
            now = trio.current_time()
            if give_up_at is None:
                give_up_at = now + self.options.reconnect_for
            if now >= give_up_at:
                raise TerminalExit(ExitCode.UNREACHABLE, (
                    f"Lost the connection to {url} ({why}) and could not get back within "
                    f"{self.options.reconnect_for:g} s. {self.come_back_hint()}").strip())
            if after_ms is not None:
                # At least what the engine asked, plus up to as much again of jitter (SPEC
                # section 12): a pub's phones do not all come back in the same instant.
                wait = after_ms / 1000 * (1 + random.random())
                asked = f" (the engine asked for at least {after_ms / 1000:g} s)"
            else:
                wait, asked = RECONNECT.delay(attempt), ""
            delay = max(0.0, min(wait, give_up_at - now))
            if attempt == 0 and self.attached:
                self.say(f"Connection lost: {why}; reconnecting in {delay:.1f} s{asked}...")
            else:
                self.say(f"Still not connected: {why}; trying again in {delay:.1f} s{asked}...")
            attempt += 1
            await trio.sleep(delay)

    def _closed_reason(self, exc: ClientClosed) -> tuple[str, int | None]:
        """Why the connection ended, in words, and the wait the engine asked for (if any)."""
        notice, self.view.notice = self.view.notice, None
        after_ms, self.view.notice_retry_after_ms = self.view.notice_retry_after_ms, None
        if exc.code == CloseCode.SERVICE_RESTART:
            return "the engine is stopping or restarting", after_ms
        if notice:
            return notice, after_ms
        if exc.code is None or exc.code == 1006:
            return "the network dropped", after_ms
        return f"closed with {exc.code}{' ' + exc.reason if exc.reason else ''}", after_ms

    def _refused(self, exc: RemoteError, code: str) -> TerminalExit:
        # The saved place is dead only if it was ours: a wrong --token is not a reason to forget
        # the token this computer saved.
        gone = self.saved is not None and exc.code in DEAD_IDENTITY and (self.attached
                                                                          or self.loaded)
        if gone:
            self._forget()
        if exc.code is ErrorCode.SESSION_ENDED:
            return TerminalExit(ExitCode.OK, "That quiz has ended.")
        if exc.code is ErrorCode.KICKED:
            return TerminalExit(ExitCode.REFUSED, "The quiz master removed you from this quiz.")
        if gone:
            # We were in this quiz (this run, or the saved place says so): it has gone.
            return TerminalExit(ExitCode.REFUSED, (
                f"The engine at {self.url} no longer runs quiz {code} (it ended, or the engine "
                "restarted without keeping it); the saved place is forgotten."
                + (f" To join a new quiz: `{self.options.command} play NEWCODE --name NAME"
                   f"{self.url_flag()}`." if self.role == "player" else "")))
        if exc.code is ErrorCode.BAD_CODE:
            return TerminalExit(ExitCode.REFUSED, f"No quiz is running with the join code {code} "
                                f"at {self.url} (check the code on the big screen).")
        if exc.code is ErrorCode.INVALID_NAME and "team" in exc.message:
            return TerminalExit(ExitCode.REFUSED, f"Refused: {exc.message}. Add --team TEAM "
                                "(a new team name, or the one your team-mates gave).")
        if exc.code is ErrorCode.INVALID_NAME:
            return TerminalExit(ExitCode.REFUSED, f"Refused: {exc.message}. Choose another "
                                "--name.")
        if exc.code is ErrorCode.NAME_TAKEN:
            return TerminalExit(ExitCode.REFUSED, "That name is taken in this quiz: choose "
                                "another with --name (or, if it is you, run the same command "
                                "on the computer you joined from: it resumes your place).")
        if exc.code is ErrorCode.BAD_TOKEN:
            return TerminalExit(ExitCode.REFUSED, f"The engine does not accept this host token "
                                f"for {code}: check --token.")
        return TerminalExit(ExitCode.REFUSED, f"Refused: {exc.message} ({exc.code}).")

    async def _receive(self, client: Client) -> ExitCode | ClientClosed:
        """Print events until the quiz ends (an exit code) or the connection does."""
        try:
            await self._resend_pending(client)
            while True:
                message = await client.next_event(timeout=math.inf)
                if await self._show(client, message):
                    return ExitCode.OK
        except ClientClosed as exc:
            return ExitCode.OK if self._quitting else exc

    async def _show(self, client: Client, message: m.Message) -> bool:
        """Print one message; True when it ended the quiz."""
        if isinstance(message, m.Question) and self.saved is not None:
            self.saved.question = codec.encode(message).hex()
        self.say(*self.view.lines(message))
        if isinstance(message, m.Ended):
            self._forget()
            if self.role == "player":
                await self._final_line(client)
            return True
        if isinstance(message, m.State) and message.state.get("phase") == "finished":
            # Back in a quiz that ended meanwhile (it lingers for its results): the state
            # said how it ended; stop as after ``ended`` (rule 5) instead of waiting forever.
            self.say("The quiz has ended.")
            self._forget()
            return True
        return False

    async def _final_line(self, client: Client) -> None:
        """A player's own final line (``you``) follows ``ended`` on the same connection."""
        with trio.move_on_after(5):
            try:
                while True:
                    message = await client.next_event(timeout=math.inf)
                    self.say(*self.view.lines(message))
                    if isinstance(message, m.You):
                        return
            except ClientClosed:
                return

    # --- saved places and request ids (rules 2 and 3) -----------------------------------------

    def _first_rid(self) -> int | None:
        if self.saved is None or self.saved.next_rid is None:
            return None
        return self.saved.next_rid

    def _save(self) -> None:
        if self.saved is None or self.file is None:
            return
        client = self.client
        if client is not None:
            self.saved.last_seq = client.last_seq
            if client.welcome is not None:
                self.saved.epoch = client.welcome.epoch
            self.saved.next_rid = max(client.next_rid, self._rid_limit)
        self.file.save(self.saved)

    def reserve_rids(self, client: Client) -> None:
        """Before a request: make sure its id is inside the block the file has reserved."""
        if client.next_rid < self._rid_limit:
            return
        self._reserve_from(client.next_rid)
        if self.saved is not None:
            # A connection not yet welcomed has seen nothing: its last_seq (0) is not ours.
            if client.welcome is not None:
                self.saved.last_seq = client.last_seq
            self._write_file()

    def _reserve_from(self, first: int) -> None:
        self._rid_limit = first + RID_BLOCK
        if self.saved is not None:
            self.saved.next_rid = self._rid_limit

    def _write_file(self) -> None:
        if self.saved is not None and self.file is not None:
            self.file.save(self.saved)

    def _forget(self) -> None:
        if self.file is not None:
            self.file.forget()
        self.saved = None

    async def request(self, cls: type[m.Message], **fields: Any) -> m.Message | None:
        """Send a request on the current connection; None (and a line) when disconnected."""
        client = self.client
        if client is None:
            self.say("Not connected right now (reconnecting); try again in a moment.")
            return None
        self.reserve_rids(client)
        return await client.request(cls, **fields)

    async def _resend_pending(self, client: Client) -> None:
        """An answer sent just before a drop may or may not have arrived: send it again with
        its own rid (idempotent, SPEC section 13), if its question is still open."""
        if self._pending is None:
            return
        rid, q, value = self._pending
        if self.view.open_q != q:
            self._pending = None
            return
        try:
            await client.answer(q, value, rid=rid)
            self.say("Your answer is in.")
        except RemoteError as exc:
            self.say(f"Your answer did not count: {exc.message}.")
        self._pending = None

    # --- the person's commands ------------------------------------------------------------------

    async def _commands(self, lines: trio.MemoryReceiveChannel[str | None]) -> ExitCode:
        async for line in lines:
            if line is None:  # end of input (Ctrl-D)
                self._save()
                raise TerminalExit(ExitCode.OK, ("Bye. " + self.come_back_hint()).strip())
            text = line.strip()
            if not text:
                continue
            try:
                if self.role == "player":
                    await self.player_line(text)
                else:
                    await self.host_line(text)
            except Usage as exc:
                self.say(str(exc))
            except FieldError as exc:  # e.g. /wager with a number past the protocol's range
                self.say(f"Could not send that: {exc}.")
            except RemoteError as exc:
                self.say(f"Refused: {exc.message} ({exc.code}).")
            except ClientClosed:
                self.say("The connection dropped before the engine answered; reconnecting.")
        return ExitCode.OK

    async def player_line(self, text: str) -> None:
        if text.startswith("/"):
            words = text[1:].split()
            verb = words[0].lower() if words else ""
            if verb in ("quit", "exit"):
                self._save()
                raise TerminalExit(ExitCode.OK, ("Bye. " + self.come_back_hint()).strip())
            if verb == "help":
                self.say(PLAYER_HELP)
            elif verb == "leave":
                if await self.request(m.Leave) is not None:
                    self._forget()
                    raise TerminalExit(ExitCode.OK, "You left the quiz.")
            elif verb == "joker":
                round_index = self._round_arg(words[1:], "/joker [ROUND]")
                if await self.request(m.Joker, round=round_index) is not None:
                    self.view.joker_round = round_index
                    self.say(f"Joker played on {self.view.round_name(round_index)}: its points "
                             "count double for you.")
            elif verb == "wager":
                if not 2 <= len(words) <= 3:
                    raise Usage("Usage: /wager POINTS [ROUND]")
                amount = _int(words[1], "POINTS", "/wager POINTS [ROUND]")
                if amount < 0:
                    raise Usage("Wager 0 or more points. Usage: /wager POINTS [ROUND]")
                round_index = self._round_arg(words[2:], "/wager POINTS [ROUND]")
                if await self.request(m.Wager, round=round_index, amount=amount) is not None:
                    self.say(f"You wagered {_plural(amount, 'point')} on "
                             f"{self.view.round_name(round_index)}.")
            else:
                raise Usage(f"Unknown command /{verb}. {PLAYER_HELP}")
            return
        question = self.view.question
        if self.view.open_q is None or question is None:
            self.say("No question is open right now.")
            return
        try:
            value = parse_answer(text, question)
        except ValueError as exc:
            raise Usage(f"Could not read that answer: {exc}") from None
        client = self.client
        if client is None:
            self.say("Not connected right now (reconnecting); type it again in a moment.")
            return
        self.reserve_rids(client)
        rid = client.next_rid
        try:  # what the protocol cannot carry (a text too long, a number too big) is said here
            m.Answer(rid=rid, q=question.q, value=value)
        except FieldError as exc:
            raise Usage(f"Could not send that answer: {exc}.") from None
        self._pending = (rid, question.q, value)
        try:
            await client.answer(question.q, value)
        except ClientClosed:
            self.say("The connection dropped before your answer was confirmed; it goes again "
                     "when the connection is back.")
            return
        except RemoteError:
            self._pending = None
            raise
        self._pending = None
        self.view.answered_open = True
        self.say(f"Answer received: {self.view.answer_text(value, question)}. You may change "
                 "it until the question closes.")

    def _round_arg(self, words: list[str], usage: str) -> int:
        if len(words) > 1:
            raise Usage(f"Usage: {usage}")
        if words:
            return _int(words[0], "ROUND", usage) - 1
        if self.view.next_round is None:
            raise Usage(f"Which round? Usage: {usage} (rounds count from 1; a round takes "
                        "them until it starts).")
        return self.view.next_round

    async def host_line(self, text: str) -> None:
        words = text.lstrip("/").split()
        if not words:
            return
        verb = words[0].lower()
        if verb in ("quit", "exit"):
            self._save()
            raise TerminalExit(ExitCode.OK, ("Bye. The quiz goes on. " + self.come_back_hint())
                               .strip())
        if verb == "help":
            self.say("Commands:", *(f"  {usage}" for usage in HOST_USAGE.values()))
            return
        if verb == "players":
            rows = sorted(self.view.names.items())
            teams, gone = self.view.teams, self.view.gone
            self.say(*(f"  #{pid} {name}" + (f" (team {teams[pid]})" if teams.get(pid) else "")
                       + (f" [{gone[pid]}]" if pid in gone else "")
                       for pid, name in rows) if rows else ["  (no participants yet)"])
            return
        cls, fields = host_request(words)
        try:  # a value the protocol does not carry (extend -5, a huge delta): its usage
            cls(rid=0, **fields)
        except FieldError as exc:
            raise Usage(f"{exc}. Usage: {HOST_USAGE[verb].split('  ')[0].strip()}") from None
        try:
            await self.request(cls, **fields)
        except RemoteError as exc:
            wrong = re.match(r"\w+ is not possible during (\w+)", exc.message)
            if exc.code is not ErrorCode.WRONG_PHASE or wrong is None:
                raise
            # The rules name their own command class and phase id: say the typed word.
            phase = PHASE_WORDS.get(wrong[1], wrong[1].replace("_", " "))
            raise Usage(f"Not now: {verb} cannot be used {phase} (wrong_phase).") from None


async def _read_stdin(lines: trio.MemorySendChannel[str | None]) -> None:
    """Lines typed on standard input; None at its end. ``os.read`` on the descriptor (no
    Python buffer lock), so a thread still waiting at exit cannot hold up the interpreter."""

    def read() -> bytes:
        try:
            return os.read(sys.stdin.fileno(), 65536)
        except (AttributeError, ValueError, OSError):
            # No standard input at all (``<&-``: sys.stdin is None), a closed one, or a
            # terminal that went away (EIO): as Ctrl-D, the end of the person's input.
            return b""

    pending = b""
    async with lines:
        while True:
            chunk = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
            if not chunk:
                if pending:
                    await lines.send(pending.decode(errors="replace"))
                await lines.send(None)
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                await lines.send(line.decode(errors="replace"))


# --- play ----------------------------------------------------------------------------------------

async def play(options: Options) -> ExitCode:
    """Join (or come back to) session ``options.code`` as a player."""
    assert options.code is not None
    code = options.code.upper()
    term = Terminal("player", options)
    term.file = StateFile(options.state_dir, "player", code)
    saved = None if options.new else term.file.load()
    if saved is not None and options.url is not None and saved.url != options.url:
        saved = None  # a place on another engine is not this one
    if saved is not None:
        term.url = options.url or saved.url  # no --url: the engine the place is on
    if saved is None and not options.name:
        elsewhere = None if options.new else term.file.load()
        raise TerminalExit(ExitCode.USAGE, f"Give your name: {options.command} play {code} "
                           f"--name NAME{term.url_flag()}" + (
                               f" (the place this computer keeps in {code} is on "
                               f"{elsewhere.url}: leave out --url to go back to it)"
                               if elsewhere is not None else ""))
    term.file.prepare()
    if saved is not None:
        term.saved, term.loaded = saved, True
        term.view.my_name = saved.name
        if saved.question is not None:
            try:
                question = codec.decode(bytes.fromhex(saved.question),
                                        direction=m.Direction.SERVER_TO_CLIENT)
            except Exception:  # a damaged file: do without the question
                question = None
            if isinstance(question, m.Question):
                term.view.question = question
                term.view.open_q = question.q
        if options.name and options.name != saved.name:
            term.say(f"Coming back as {saved.name} (this computer's place in {code}); to join "
                     f"as {options.name} instead, add --new.")

    async def identify(client: Client) -> m.Welcome:
        if term.saved is not None:
            # A comeback in this run asks for what it missed; a new run for the whole state.
            # The epoch its last_seq counts in: after a takeover the server sends a full state.
            last_seq = term.saved.last_seq if term.attached else WHOLE_STATE
            epoch = term.saved.epoch if term.attached else None
            welcome = await client.resume(term.saved.token, last_seq, epoch)
            term.view.catching_up = True
            term.say(f"Back in {welcome.code} as {welcome.name}"
                     f"{' (team ' + welcome.team + ')' if welcome.team else ''}.")
        else:
            assert options.name is not None
            welcome = await client.join(code, options.name, options.team)
            assert welcome.token is not None
            term.saved = Saved(role="player", url=term.url, code=welcome.code,
                               token=welcome.token, name=welcome.name, team=welcome.team)
            term.say(f"Joined {welcome.code} as {welcome.name}"
                     f"{' (team ' + welcome.team + ')' if welcome.team else ''}. {PLAYER_HELP}")
        term.view.me, term.view.my_name = welcome.participant, welcome.name
        term.client = client
        term.attached = True
        term.reserve_rids(client)
        term._save()
        return welcome

    return await term.run(lambda: term.connection_loop(code, identify))


# --- host ----------------------------------------------------------------------------------------

async def host(options: Options) -> ExitCode:
    """Create a session (with the operator key) or come back to one, and run it."""
    term = Terminal("host", options)
    code, token = options.code, options.token
    if code is not None:
        code = code.upper()
        term.file = StateFile(options.state_dir, "host", code)
        saved = term.file.load()
        if saved is not None and options.url is not None and saved.url != options.url:
            saved = None  # a place on another engine is not this one
        if token is None:
            if saved is None:
                raise TerminalExit(ExitCode.USAGE, f"No host token saved for {code}"
                                   f"{' at ' + options.url if options.url else ''}: give it "
                                   "with --token.")
            token = saved.token
        if saved is not None and saved.token == token:
            term.saved, term.loaded = saved, True
            term.url = options.url or saved.url
        else:
            term.saved = Saved(role="host", url=term.url, code=code, token=token)
    else:
        if not options.key:
            raise TerminalExit(ExitCode.USAGE, "Give the operator key (--key) to create a "
                               "session, or --code (and --token) to host an existing one.")
        StateFile(options.state_dir, "host", "").prepare()
        try:
            async with open_client(term.url, retry=REQUEST_RETRY) as client:
                created = await client.create_session(options.key, quiz_path=options.quiz,
                                                      mode=options.mode)
        except ConnectFailed as exc:
            raise TerminalExit(ExitCode.UNREACHABLE, (
                f"No quiz engine answers at {term.url}: {exc.reason}. Start one with "
                f"`{options.command} serve`, or give its address with --url.")) from None
        except ClientClosed as exc:
            raise TerminalExit(ExitCode.REFUSED, "The engine closed the connection before "
                               f"creating the session ({exc.code} {exc.reason or ''})."
                               .replace(" )", ")")) from None
        except RemoteError as exc:
            raise TerminalExit(ExitCode.REFUSED, f"Could not create the session: "
                               f"{exc.message} ({exc.code}).") from None
        code, token = created.code, created.host_token
        term.file = StateFile(options.state_dir, "host", code)
        term.saved = Saved(role="host", url=term.url, code=code, token=token)
        term.file.save(term.saved)
        term.say(f"Session {code} created ({options.mode} mode). Players join with: "
                 f"{options.command} play {code} --name NAME"
                 + (" --team TEAM" if options.mode == "team" else "") + term.url_flag(),
                 f"Host token (keep it secret; it is saved in {term.file.path}): {token}")
    session_code = code

    async def identify(client: Client) -> m.Welcome:
        assert term.saved is not None
        # A comeback in this run asks for what it missed; a new run for the whole state.
        last_seq = (term.saved.last_seq or None) if term.attached else None
        epoch = term.saved.epoch if last_seq is not None else None
        welcome = await client.host(session_code, term.saved.token, last_seq, epoch)
        term.client = client
        term.attached = True
        term.reserve_rids(client)
        term._save()
        term.say(f"Hosting {welcome.code}. Type help for the commands.")
        return welcome

    return await term.run(lambda: term.connection_loop(session_code, identify))
