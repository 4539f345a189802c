"""Commands: what a host or a player asks a session to do.

Rules this module keeps:

1. A command is a frozen attrs class holding plain data only (ints, strs, bools, floats and
   the answer value). It carries no validators: the server builds commands from decoded wire
   messages, and the *session* checks every field and refuses a bad one with a typed
   ``Rejected``, leaving its state unchanged. A bad command is a peer's doing, not a bug.
2. Who may send which command (host or player) is the server's check: it knows the sender.
   Everything else (phase, membership, deadline, limits) is the session's.
3. Player commands name the participant id that ``Join`` assigned; the server fills it in
   from the connection, never from what the client claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


# --- player commands -------------------------------------------------------------------------
@attrs.frozen
class Join:
    """Join the session. ``team`` is required in team mode, an optional label in solo mode."""

    name: str
    team: str | None = None


@attrs.frozen
class SubmitAnswer:
    """Submit (or change) an answer to the open question.

    Idempotent by ``(participant, request_id)``: a repeat returns the first acceptance again,
    marked ``duplicate=True``, and changes nothing.
    """

    participant: int
    question: int
    value: Any
    request_id: int


@attrs.frozen
class PlayJoker:
    """Double this participant's (team's) points on ``round``. Once per quiz, before the round."""

    participant: int
    round: int


@attrs.frozen
class PlaceWager:
    """Stake ``amount`` points on a wager round, before it starts (0 withdraws the stake)."""

    participant: int
    round: int
    amount: int


@attrs.frozen
class Leave:
    participant: int


# --- host commands ---------------------------------------------------------------------------
@attrs.frozen
class Start:
    """Leave the lobby: show the first slide or open the first question."""


@attrs.frozen
class Next:
    """Move on from a slide, a revealed question, a leaderboard or a round summary."""


@attrs.frozen
class CloseQuestion:
    """Close the open question before its deadline."""


@attrs.frozen
class Extend:
    """Give the open question ``seconds`` more (0 < seconds <= 600)."""

    seconds: float


@attrs.frozen
class Pause:
    pass


@attrs.frozen
class Unpause:
    """Go on from where ``Pause`` stopped: the open question's clock runs again. (Not the
    wire's ``resume``, which is a player reconnecting: that is the server's, not a command.)"""


@attrs.frozen
class AddRound:
    """Append a round to the quiz, in the lobby only (nobody has seen a question yet).

    ``round`` is one round as the quiz format writes it (``docs/quiz-format.md``); the whole
    quiz with it is validated again, and ``source`` names it in the problems found.
    """

    round: Mapping[str, Any]
    source: str = "added round"


@attrs.frozen
class Reveal:
    """Reveal the closed question's answer; this is when its points are awarded."""


@attrs.frozen
class Skip:
    """Void the open or closed question (it scores nothing) and move on."""


@attrs.frozen
class ShowLeaderboard:
    """Show the standings (overall when ``round`` is None)."""

    round: int | None = None


@attrs.frozen
class Mark:
    """Override whether ``participant``'s (team's) answer to ``question`` is right."""

    question: int
    participant: int
    correct: bool


@attrs.frozen
class AdjustScore:
    """Add ``delta`` (may be negative) to a participant's (team's) score, with a reason."""

    participant: int
    delta: int
    reason: str


@attrs.frozen
class Kick:
    participant: int


@attrs.frozen
class End:
    """Finish the quiz now."""

    reason: str = "ended by host"


Command = (
    Join | SubmitAnswer | PlayJoker | PlaceWager | Leave | Start | Next | CloseQuestion | Extend
    | Pause | Unpause | AddRound | Reveal | Skip | ShowLeaderboard | Mark | AdjustScore | Kick
    | End
)
