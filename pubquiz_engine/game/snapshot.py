"""A game session as plain data and back: the snapshot format the failover stores.

Rules this module keeps:

1. ``encode(game)`` gives dicts, lists, strs, ints, floats, bools and None only (JSON- and
   msgpack-safe); ``restore(GameSession, data)`` rebuilds an equal session (``==`` compares the
   whole state, derived indexes included). ``GameSession.to_snapshot`` / ``from_snapshot`` are
   these two, so the game restores itself: no caller reads or writes the dict by key.
2. ``SNAPSHOT_FORMAT`` is bumped whenever the layout changes; ``restore`` reads the formats in
   ``READABLE_FORMATS`` (deriving what older ones lacked) and refuses any other with
   ``CorruptData``, as it does for a missing key or a value of the wrong shape.
3. This module is the session's friend: it reads and sets the session's private state, and
   nothing else outside ``game.session`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pubquiz_engine.errors import CorruptData, QuizFileError
from pubquiz_engine.game import events as e
from pubquiz_engine.game.loader import load_quiz_data, quiz_to_data
from pubquiz_engine.game.quiz import Quiz
from pubquiz_engine.game.values import (
    Adjustment,
    Answer,
    Participant,
    Phase,
    QState,
    SessionOptions,
    Team,
)

SNAPSHOT_FORMAT = 3
#: 1: before ``next_team``; 2: before ``question_deadline`` (both derived when restoring).
READABLE_FORMATS = (1, 2, 3)

#: The session type ``restore`` builds (``GameSession``; not imported here, so that the state
#: machine and its encoding do not import each other).
_Game = TypeVar("_Game")


def encode(game: Any) -> dict[str, Any]:
    """The whole state of ``game`` (a ``GameSession``) as plain data (``SNAPSHOT_FORMAT``)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "quiz": quiz_to_data(game.quiz),
        "options": game.options.to_data(),
        "phase": game._phase.value,
        "resume_phase": None if game._resume_phase is None else game._resume_phase.value,
        "step": game._step,
        "deadline": game._deadline,
        "question_deadline": game._question_deadline,
        "remaining": game._remaining,
        "elapsed_base": game._elapsed_base,
        "running_since": game._running_since,
        "finish_reason": game._finish_reason,
        "next_id": game._next_id,
        "next_team": game._next_team,
        "participants": [[p.id, p.name, p.team, p.team_id, p.joined_at, p.kicked, p.left]
                         for p in game._participants.values()],
        "teams": [[t.id, t.name] for t in game._teams.values()],
        "qstate": [s.value for s in game._qstate],
        "answers": [[q, s, a.participant, a.value, a.at, a.elapsed, a.revision, a.request_id]
                    for q, answers in enumerate(game._answers) for s, a in answers.items()],
        "seen": [[a.participant, a.team, a.question, a.value, a.request_id, a.at, a.elapsed,
                  a.revision] for a in game._seen.values()],
        "marks": [[q, s, ok] for q, m in game._marks.items() for s, ok in m.items()],
        "awards": [[q, s, f, pts] for q, aw in game._awards.items()
                   for s, (f, pts) in aw.items()],
        "jokers": [[s, r] for s, r in game._jokers.items()],
        "wagers": [[r, s, amount] for r, w in game._wagers.items() for s, amount in w.items()],
        "wager_results": [[r, s, v] for r, w in game._wager_results.items()
                          for s, v in w.items()],
        "adjustments": [[a.scorer, a.participant, a.delta, a.reason, a.at]
                        for a in game._adjustments],
        "totals": [[s, v] for s, v in game._totals.items()],
        "tiebreak": [[s, d] for s, d in game._tiebreak.items()],
    }


def restore(make: Callable[[Quiz, SessionOptions], _Game], data: Mapping[str, Any]) -> _Game:
    """The session ``data`` was encoded from, rebuilt: ``make(quiz, options)`` (the
    ``GameSession`` class) builds it in the lobby, then its state is set from ``data``.

    Raises ``CorruptData`` (a ``ValueError``) for an unknown format or anything it cannot
    read: a missing key, a value of the wrong shape, a quiz that no longer loads."""
    try:
        game: _Game = _restore(make, data)
        return game
    except CorruptData:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, QuizFileError) as exc:
        raise CorruptData(f"game snapshot unreadable: {exc!r}") from exc


def _restore(make: Callable[[Quiz, SessionOptions], Any], data: Mapping[str, Any]) -> Any:
    if data.get("format") not in READABLE_FORMATS:
        raise CorruptData(f"unknown snapshot format {data.get('format')!r}")
    quiz = load_quiz_data(data["quiz"], source="<snapshot>")
    game = make(quiz, SessionOptions.from_data(data["options"]))
    game._phase = Phase(data["phase"])
    rp = data["resume_phase"]
    game._resume_phase = None if rp is None else Phase(rp)
    game._step = data["step"]
    game._deadline = data["deadline"]
    # Formats 1 and 2 kept only the running deadline: a closed question's is lost there.
    game._question_deadline = data.get("question_deadline", game._deadline)
    game._remaining = data["remaining"]
    game._elapsed_base = data["elapsed_base"]
    game._running_since = data["running_since"]
    game._finish_reason = data["finish_reason"]
    game._next_id = data["next_id"]
    game._participants = {
        row[0]: Participant(row[0], row[1], row[2], row[3], row[4], row[5], row[6])
        for row in data["participants"]
    }
    game._teams = {tid: Team(tid, name) for tid, name in data["teams"]}
    game._next_team = data.get("next_team", max(game._teams, default=0) + 1)
    game._qstate = [QState(s) for s in data["qstate"]]
    for q, s, pid, value, at, elapsed, revision, rid in data["answers"]:
        game._answers[q][s] = Answer(pid, value, at, elapsed, revision, rid)
    for pid, team, q, value, rid, at, elapsed, revision in data["seen"]:
        game._seen[(pid, rid)] = e.AnswerAccepted(pid, team, q, value, rid, at, elapsed,
                                                  revision)
    for q, s, ok in data["marks"]:
        game._marks.setdefault(q, {})[s] = ok
    for q, s, f, pts in data["awards"]:
        game._awards.setdefault(q, {})[s] = (f, pts)
    game._jokers = {s: r for s, r in data["jokers"]}
    for r, s, amount in data["wagers"]:
        game._wagers.setdefault(r, {})[s] = amount
    for r, s, v in data["wager_results"]:
        game._wager_results.setdefault(r, {})[s] = v
    game._adjustments = [Adjustment(*row) for row in data["adjustments"]]
    game._totals = {s: v for s, v in data["totals"]}
    game._tiebreak = {s: d for s, d in data["tiebreak"]}
    game._rebuild_indexes()
    return game
