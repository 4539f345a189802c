"""The cluster tests' player itself: what it does with a ``state`` it gets back into.

The kill -9 test failed now and then because a player that resumed after the host had opened
the next question saw it only in its ``state`` (the ``question`` broadcast went out while it
was away), and the player read the phase as "question", not ``question_open``: it never
answered, and the test waited for its ack. No engine or Redis here: a scripted client."""

from __future__ import annotations

import random
from typing import Any

import trio
from clusterkit import Player

from pubquiz_engine.protocol import messages as m


class ScriptedClient:
    """Hands the player ``events`` in order, then ``ended``; records its answers."""

    def __init__(self, events: list[m.Message]) -> None:
        self.events = events
        self.next_rid = 100
        self.answers: list[tuple[int, Any, int | None]] = []

    async def next_event(self, timeout: float = 10.0) -> m.Message:
        if self.events:
            return self.events.pop(0)
        return m.Ended(seq=99, reason="finished")

    async def answer(self, q: int, value: Any, *, rid: int | None = None) -> m.AnswerAck:
        self.answers.append((q, value, rid))
        assert rid is not None
        return m.AnswerAck(rid=rid, q=q)


def _state(phase: str, q: int | None) -> m.State:
    question = {"q": q, "deadline_ms": 1_000} if q is not None else None
    return m.State(seq=5, state={"phase": phase, "question": question, "you": {"score": 0}})


async def test_a_player_back_into_an_open_question_answers_it() -> None:
    acks: list[int] = []
    player = Player("ws://unused/", "CODE", "p0", random.Random(1), lambda: acks.append(1))
    client = ScriptedClient([_state("question_open", 1)])
    with trio.fail_after(5):
        await player._play(client, None)  # type: ignore[arg-type]
    assert [(q, rid) for q, _value, rid in client.answers] == [(1, 100)]
    assert 1 in player.acked and acks == [1]


async def test_a_player_back_into_a_question_it_answered_does_not_answer_again() -> None:
    player = Player("ws://unused/", "CODE", "p0", random.Random(1), lambda: None)
    player.acked[1] = (7, 2)
    client = ScriptedClient([_state("question_open", 1), _state("question_closed", 1)])
    with trio.fail_after(5):
        await player._play(client, None)  # type: ignore[arg-type]
    assert client.answers == []
