"""What a player is told (issue 20): the speed bonus with the question, the explanation with
the reveal, and the quiz master's marks and adjustments of their own score."""

from __future__ import annotations

from pathlib import Path

import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.protocol import messages as m


async def test_bonus_explanation_marks_and_adjustments_reach_the_player(tmp_path: Path) -> None:
    quiz = short_quiz(speed_bonus=3, explanation="Because it is.")
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(quiz, mode="team")
            async with open_client(address.url) as host, open_client(address.url) as ann, \
                    open_client(address.url) as ben, open_client(address.url) as cat:
                await host.host(session.code, host_token)
                a = await ann.join(session.code, "Ann", "Owls")
                await ben.join(session.code, "Ben", "Owls")
                await cat.join(session.code, "Cat", "Larks")
                await host.request(m.Start)
                await host.request(m.Reveal)  # Q1 unanswered
                for player in (ann, ben, cat):  # everyone hears "no answer" (issue 19.5)
                    nothing = await player.next_event(m.Result)
                    assert (nothing.q, nothing.answered, nothing.points) == (0, False, 0)
                await host.request(m.Next)  # to the text question
                question = await ann.next_event(m.Question)
                while question.kind != "text":
                    question = await ann.next_event(m.Question)
                assert question.speed_bonus == 3
                await ann.answer(question.q, "The Fab Four")
                await host.request(m.Reveal)
                reveal = await ann.next_event(m.Revealed)
                assert reveal.explanation == "Because it is."
                first = await ann.next_event(m.Result)
                assert not first.correct and first.points == 0
                assert (await ben.next_event(m.Result)) == first  # the team's answer

                await host.request(m.Mark, q=question.q, participant=a.participant,
                                   correct=True)
                marked = await ann.next_event(m.Result)
                # Marked right: the point, and the speed bonus of a quick answer.
                assert marked.correct and 1 <= marked.points <= 1 + 3
                assert marked.score == first.score + marked.points
                assert (await ben.next_event(m.Result)) == marked  # the whole team hears it

                assert a.participant is not None
                await host.request(m.Adjust, participant=a.participant, delta=4,
                                   reason="good sport")
                you = await ann.next_event(m.You)
                assert you.score == marked.score + 4
                assert (await ben.next_event(m.You)).score == you.score
                # Cat (another team) heard of neither (only its own "no answer" to Q2).
                no_answer = await cat.next_event(m.Result)
                assert (no_answer.q, no_answer.answered) == (question.q, False)
                await host.request(m.ShowLeaderboard, round=None)
                after = await cat.next_event()
                while not isinstance(after, m.Leaderboard):
                    assert not isinstance(after, m.Result | m.You), after
                    after = await cat.next_event()
