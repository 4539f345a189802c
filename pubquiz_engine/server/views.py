"""What each audience sees of a game event: the map from game events to wire messages.

The game says what happened; this module decides who is told and in which message. It is the
only place that knows both ``game`` events and ``protocol`` messages.

Rules this module keeps:

1. Audiences are bit flags (players, hosts, displays). A broadcast is rendered and encoded
   once per event (``broadcast_frames``), whatever the number of recipients.
2. Nothing O(members) is broadcast per answer: the answer counter and the "who answered" list go
   to hosts and displays only. With 1,000 players a counter to every phone would cost a million
   frames per question.
3. Players never receive another player's answer or a token; hosts get the participant list.
4. Personal frames (``result``, ``you``) are small and built only where a player is connected.
5. **Hosts see every seq.** Every game event that takes a seq becomes at least one message
   for hosts (``started``, ``round_started``, ``joker_played``, ``wager_placed``, ``marked``
   and ``scores`` exist for them alone), so a host that sees a gap lost an event; players and
   displays see gaps by design (SPEC section 5).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, Final

from pubquiz_engine.game import events as ev
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m

if TYPE_CHECKING:
    from pubquiz_engine.game import GameSession

PLAYERS = 1
HOSTS = 2
DISPLAYS = 4
WATCHERS = HOSTS | DISPLAYS
EVERYONE = PLAYERS | HOSTS | DISPLAYS

ROLE_AUDIENCE = {"player": PLAYERS, "host": HOSTS, "display": DISPLAYS}

#: Rows of a leaderboard broadcast; each player also gets their own line (``you``).
LEADERBOARD_TOP = 10


def ms(seconds: float) -> int:
    """Seconds (float) to whole milliseconds for the wire."""
    return max(0, math.floor(seconds * 1000 + 0.5))


def _question(seq: int, game: GameSession, index: int, deadline: float) -> m.Question:
    view = game.question_view(index)
    return m.Question(
        seq=seq,
        q=index,
        round=view.round,
        number=view.number,
        kind=str(view.kind),
        prompt=view.prompt,
        choices=tuple(view.choices) or None,
        media=view.media,
        points=int(view.points),
        time_limit_ms=ms(view.time_limit),
        deadline_ms=ms(deadline),
        speed_bonus=view.speed_bonus or None,
    )


def _top(game: GameSession, round_index: int | None
         ) -> tuple[bool, tuple[tuple[int, int, str, int], ...]]:
    teams = game.options.mode == "team"
    rows = game.standings(round_index=round_index, teams=teams)[:LEADERBOARD_TOP]
    return teams, tuple((r.rank, r.id, r.name, int(r.score)) for r in rows)


# ``isinstance`` with tuples, not ``A | B`` (a new union object at every call): once per event.
_CLOSED: Final = (ev.QuestionClosed, ev.QuestionSkipped)
_PERSONAL_LINE: Final = (ev.LeaderboardShown, ev.RoundSummary, ev.Finished)


def broadcasts(seq: int, game: GameSession, event: ev.Event) -> Iterator[tuple[int, m.Message]]:
    """The (audience, message) pairs one event becomes; ``seq`` is the number to stamp on it.

    An event may become no message at all (persisted only). Each yielded message takes a new
    seq: the caller passes ``seq`` as the next free number and advances it by what it used,
    so at most one message per event carries the given ``seq``.
    """
    if isinstance(event, ev.ParticipantJoined):
        yield WATCHERS, m.PlayerJoined(
            seq=seq, participant=event.participant, name=event.name, team=event.team
        )
    elif isinstance(event, ev.ParticipantLeft):
        yield WATCHERS, m.PlayerLeft(seq=seq, participant=event.participant)
    elif isinstance(event, ev.ParticipantKicked):
        yield WATCHERS, m.PlayerKicked(seq=seq, participant=event.participant)
    elif isinstance(event, ev.SlideShown):
        yield EVERYONE, m.Slide(seq=seq, title=event.title, body=event.text)
    elif isinstance(event, ev.QuestionOpened):
        yield EVERYONE, _question(seq, game, event.question, event.deadline)
    elif isinstance(event, ev.AnswerCountChanged):
        yield WATCHERS, m.AnswerCount(
            seq=seq, q=event.question, answered=event.answered, total=event.total
        )
    elif isinstance(event, ev.AnswerAccepted):
        # Every accepted answer takes a seq (the failover replay order): a change of answer
        # too. A resend takes none and is no event.
        if not event.duplicate:
            yield HOSTS, m.Answered(seq=seq, q=event.question, participant=event.participant)
    elif isinstance(event, _CLOSED):
        yield EVERYONE, m.Closed(seq=seq, q=event.question)
    elif isinstance(event, ev.Paused):
        remaining = event.remaining if event.remaining is not None else 0.0
        yield EVERYONE, m.Paused(seq=seq, remaining_ms=ms(remaining))
    elif isinstance(event, ev.Resumed):
        yield EVERYONE, m.Unpaused(
            seq=seq, deadline_ms=ms(event.deadline) if event.deadline is not None else 0
        )
    elif isinstance(event, ev.TimeExtended):
        deadline = event.deadline if event.deadline is not None else 0.0
        yield EVERYONE, m.Extended(seq=seq, q=event.question, deadline_ms=ms(deadline))
    elif isinstance(event, ev.Revealed):
        yield EVERYONE, m.Revealed(
            seq=seq,
            q=event.question,
            correct=event.answer,
            distribution=tuple(event.distribution) if event.distribution is not None else None,
            explanation=event.explanation or None,
        )
    elif isinstance(event, ev.LeaderboardShown):
        teams, top = _top(game, event.round)
        yield EVERYONE, m.Leaderboard(seq=seq, round=event.round, teams=teams, top=top)
    elif isinstance(event, ev.RoundSummary):
        title = game.quiz.rounds[event.round].title
        yield EVERYONE, m.RoundSummary(seq=seq, round=event.round, title=title)
    elif isinstance(event, ev.ScoreAdjusted):
        yield WATCHERS, m.ScoreAdjusted(
            seq=seq, participant=event.participant, delta=event.delta, reason=event.reason
        )
    elif isinstance(event, ev.Started):
        yield HOSTS, m.Started(seq=seq)
    elif isinstance(event, ev.RoundStarted):
        yield HOSTS, m.RoundStarted(seq=seq, round=event.round, title=event.title)
    elif isinstance(event, ev.JokerPlayed):
        yield HOSTS, m.JokerPlayed(seq=seq, participant=event.participant, round=event.round)
    elif isinstance(event, ev.WagerPlaced):
        yield HOSTS, m.WagerPlaced(seq=seq, participant=event.participant, round=event.round,
                                   amount=event.amount)
    elif isinstance(event, ev.AnswerMarked):
        yield HOSTS, m.Marked(seq=seq, q=event.question, participant=event.participant,
                              correct=event.correct)
    elif isinstance(event, ev.ScoresChanged):
        # The hosts' scores at each reveal, mark, adjustment and settled wager, in the
        # protocol (a host need not download the results to keep its table right).
        yield HOSTS, m.Scores(seq=seq, reason=event.reason, q=event.question,
                              scores=tuple((pid, int(total)) for pid, total in event.scores))
    elif isinstance(event, ev.Finished):
        teams, top = _top(game, None)
        yield EVERYONE, m.Leaderboard(seq=seq, round=None, teams=teams, top=top)
        yield EVERYONE, m.Ended(seq=seq + 1, reason=event.reason)


#: The session's broadcasts are encoded on the trio thread only: one reused packer.
_encoder = codec.Encoder()


def broadcast_frames(seq: int, game: GameSession, event: ev.Event
                     ) -> Iterator[tuple[int, int, bytes]]:
    """``broadcasts``, encoded: (audience, the message's seq, its bytes).

    A join's ``player_joined`` (one per join in a filling lobby) is packed without building
    the message (``Encoder.encode_player_joined``: its validated fields cost more than the
    packing); a test holds every event's frames to ``broadcasts``' messages encoded."""
    if type(event) is ev.ParticipantJoined:
        yield WATCHERS, seq, _encoder.encode_player_joined(seq, event.participant, event.name,
                                                           event.team)
        return
    for audience, message in broadcasts(seq, game, event):
        yield audience, message.seq, _encoder.encode(message)  # type: ignore[attr-defined]


def wants_personal_line(event: ev.Event) -> bool:
    """Whether each connected player should get their own ``you`` line after this event."""
    return isinstance(event, _PERSONAL_LINE)


def you(game: GameSession, participant: int, round_index: int | None = None) -> m.You:
    """A player's own line: rank and score overall (and in ``round_index`` if given)."""
    teams = game.options.mode == "team"
    line = game.rank_of(participant, teams=teams)
    round_score = None
    if round_index is not None:
        round_line = game.rank_of(participant, round_index=round_index, teams=teams)
        round_score = int(round_line.score) if round_line is not None else None
    if line is None:
        return m.You(rank=None, score=0, round_score=round_score)
    return m.You(rank=line.rank, score=int(line.score), round_score=round_score)


def result(game: GameSession, participant: int, question: int) -> m.Result | None:
    """A player's own outcome of a revealed question: ``answered: false`` (0 points) when
    they (their team) gave no answer, so every player can show "no answer". None before the
    reveal (a mark of a closed question tells nobody yet) and for a participant the game does
    not know."""
    if game.question_state(question) != "revealed":
        return None
    fields = result_fields(game, participant, question)
    return None if fields is None else result_message(question, fields)


def result_message(question: int, fields: tuple[bool, int, int, bool]) -> m.Result:
    correct, points, score, answered = fields
    return m.Result(q=question, correct=correct, points=points, score=score, answered=answered)


def result_fields(game: GameSession, participant: int, question: int
                  ) -> tuple[bool, int, int, bool] | None:
    """``(correct, points, score, answered)`` of ``result`` for a question the caller knows
    is revealed: what a reveal to every player compares, so that players with equal lines
    share one frame without a ``Result`` built per player (measured: building and hashing one
    was most of the reveal's cost per player)."""
    if participant not in game.participants:
        return None
    outcome = game.outcome_of(participant, question)
    correct, points = outcome if outcome is not None else (False, 0)
    # The scorer's total (the team's in team mode), as the standings line would show it,
    # without ranking every participant (measured: a full ranking per reveal).
    return correct, int(points), int(game.score_of(participant)), outcome is not None


def _question_map(game: GameSession, index: int) -> dict[str, Any]:
    """The current question as in the ``question`` event, plus ``remaining_ms`` while paused.

    ``deadline_ms`` is the deadline last announced for it (``question``, ``extended`` or
    ``unpaused``), also once it closed or was revealed: never a placeholder (issue 24.4)."""
    deadline = game.question_deadline
    data = _question(1, game, index, deadline if deadline is not None else 0.0).to_wire()
    for key in ("t", "seq"):
        data.pop(key, None)
    if data.get("choices") is not None:
        data["choices"] = list(data["choices"])
    remaining = game.remaining
    data["remaining_ms"] = ms(remaining) if remaining is not None else None
    return data


def _slide_map(game: GameSession) -> dict[str, Any] | None:
    """The slide on screen as in the ``slide`` event (``{title, body}``), or None."""
    slide = game.current_slide
    return None if slide is None else {"title": slide.title, "body": slide.text}


def state(game: GameSession, *, role: str, participant: int | None, code: str,
          connected: Collection[int] = ()) -> dict[str, Any]:
    """The full state a (re)connecting member needs to render the current screen (SPEC §11)."""
    phase = str(game.phase)
    index = game.current_question
    teams = game.options.mode == "team"
    # Ranking everyone is O(n log n) and every join invalidates it: a newcomer in the lobby
    # (ranks are all equal there) must not pay it, or a busy lobby goes quadratic (measured:
    # ack latency growing with every churned join in the sustained bench).
    ranked = phase != "lobby"
    board_round = game.current_round if phase == "round_summary" else None
    data: dict[str, Any] = {
        "code": code,
        "phase": phase,
        "mode": str(game.options.mode),
        "title": game.quiz.title,
        "round": game.current_round,
        "next_round": game.next_round,
        "question": _question_map(game, index) if index is not None else None,
        "slide": _slide_map(game),
        "answered": len(game.answers(index)) if index is not None else None,
        "total": game.active_count() if index is not None else None,
        "reveal": None,
        "leaderboard": None,
        "participant_count": len(game.participants),
        "rounds": [{"title": r.title, "questions": len(r.questions), "multiplier": r.multiplier,
                    "wager": r.wager, "joker": r.joker} for r in game.quiz.rounds],
        "participants": None,
        "you": None,
    }
    if index is not None and phase == "revealed":
        distribution = game.answer_distribution(index)
        correct = game.correct_view(index)
        data["reveal"] = {"q": index, "correct": correct.answer,
                          "distribution": distribution,
                          "explanation": correct.explanation or None}
    if phase in ("leaderboard", "round_summary", "finished"):
        _, top = _top(game, None)
        data["leaderboard"] = {"round": board_round, "teams": teams,
                               "top": [list(row) for row in top]}
    if role == "host":
        data["participants"] = [
            {"participant": p.id, "name": p.name, "team": p.team,
             "connected": p.id in connected, "score": game.score_of(p.id),
             "kicked": bool(p.kicked)}
            for p in game.participants.values()
        ]
    if role == "player" and participant is not None:
        mine = game.participants.get(participant)
        line = game.rank_of(participant, teams=teams) if ranked else None
        answer = None
        if mine is not None and index is not None:
            current = game.answers(index).get(game.scorer_of(participant))
            answer = current.value if current is not None else None
        data["you"] = {
            "participant": participant,
            "name": mine.name if mine is not None else None,
            "team": mine.team if mine is not None else None,
            "score": game.score_of(participant) if mine is not None else 0,
            "rank": line.rank if line is not None else None,
            "answer": list(answer) if isinstance(answer, tuple) else answer,
            "joker": game.joker_of(participant) if mine is not None else None,
            "stakes": [[r, amount] for r, amount in game.stakes_of(participant).items()]
            if mine is not None else [],
        }
    return data
