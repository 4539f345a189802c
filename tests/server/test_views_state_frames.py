"""The session sends ``state`` frames packed straight from ``views.state`` (its validator's walk
was most of a join's cost of its frames): in every phase, for every role and in both modes, the
bytes must be those of the ``State`` message built and validated, which a client written from
the SPEC decodes. So must every broadcast ``views.broadcast_frames`` packs (a join's
``player_joined`` without building its message)."""

from __future__ import annotations

from typing import Any

import pytest

from pubquiz_engine.game import (
    AdjustScore,
    CloseQuestion,
    End,
    GameSession,
    Join,
    Mode,
    Next,
    Pause,
    PlaceWager,
    PlayJoker,
    Reveal,
    SessionOptions,
    ShowLeaderboard,
    Start,
    SubmitAnswer,
    load_quiz_data,
)
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server import views

QUIZ = {"title": "Friday Night Quiz", "rounds": [
    {"title": "General knowledge", "items": [
        {"kind": "single", "prompt": "Which planet is known as the Red Planet?",
         "choices": ["Venus", "Mars", "Jupiter"], "answer": "Mars", "points": 10,
         "time_limit": 20},
        {"kind": "numeric", "prompt": "Year of the first moon landing?", "answer": 1969}]},
    {"title": "Music", "wager": True, "joker": False, "items": [
        {"kind": "slide", "title": "Round 2: Music", "text": "Stakes are in. Phones ready."},
        {"kind": "text", "prompt": "Who recorded Abbey Road?", "answer": "The Beatles"}]},
]}


def _frames_agree(game: GameSession, seq: int, players: list[int]) -> None:
    """Every role's view of ``game`` now, packed both ways."""
    encoder = codec.Encoder()
    for role, who in [("host", None), ("display", None), *[("player", p) for p in players]]:
        state = views.state(game, role=role, participant=who, code="K7QX",
                            connected=players[:1])
        assert encoder.encode_state(seq, state) == codec.encode(m.State(seq=seq, state=state))


def _broadcasts_agree(game: GameSession, seq: int, events: list[Any]) -> None:
    """Each event's frames from ``broadcast_frames`` are its ``broadcasts`` messages encoded,
    with their audiences and seqs."""
    for event in events:
        expected = [(audience, message.seq, codec.encode(message))  # type: ignore[attr-defined]
                    for audience, message in views.broadcasts(seq, game, event)]
        assert list(views.broadcast_frames(seq, game, event)) == expected, event


@pytest.mark.parametrize("mode", [Mode.SOLO, Mode.TEAM])
def test_state_frames_packed_unbuilt_are_the_state_messages_bytes(mode: Mode) -> None:
    game = GameSession(load_quiz_data(QUIZ, source="test"), SessionOptions(mode=mode))
    t = 1767225600.0
    team = "The Quizzly Bears" if mode is Mode.TEAM else None
    _frames_agree(game, 1, [])  # an empty lobby
    players = []
    for seq, name in enumerate(("Ada", "Bob", "Zoë 🦉"), start=1):
        events = game.apply(Join(name, team), t)
        _broadcasts_agree(game, seq, events)
        players.append(events[0].participant)  # type: ignore[attr-defined]
    ada, bob, zoe = players
    steps = [AdjustScore(ada, 40, "warm-up"), PlaceWager(ada, 1, 20), PlayJoker(bob, 0),
             Start(), SubmitAnswer(ada, 0, 1, 3), SubmitAnswer(bob, 0, 0, 4), Pause(),
             CloseQuestion(), Reveal(), ShowLeaderboard(), Next(),
             SubmitAnswer(zoe, 1, 1969, 5), CloseQuestion(), Reveal(), Next(), Next(), Next(),
             SubmitAnswer(ada, 2, "the beatles", 6), End()]
    phases = {str(game.phase)}
    _frames_agree(game, 2, players)
    for seq, step in enumerate(steps, start=3):
        _broadcasts_agree(game, seq, game.apply(step, t))
        t += 1
        phases.add(str(game.phase))
        _frames_agree(game, seq, players)
    assert phases >= {"lobby", "question_open", "paused", "revealed", "leaderboard",
                      "round_summary", "slide", "finished"}
