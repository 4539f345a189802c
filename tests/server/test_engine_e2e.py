"""End-to-end over real sockets: a whole quiz with host, display and players, both modes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from engine_fixtures import SHORT_QUIZ, engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m


@pytest.mark.parametrize("mode", ["solo", "team"])
async def test_complete_quiz(tmp_path: Path, mode: str) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode=mode)
            url = address.url
            async with open_client(url) as host, open_client(url) as display, \
                    open_client(url) as ann, open_client(url) as bob, open_client(url) as cat:
                hw = await host.host(session.code, host_token)
                assert hw.role == "host" and hw.token is None
                await display.watch(session.code)
                wa = await ann.join(session.code, "Ann", "Reds")
                wb = await bob.join(session.code, "Bob", "Blues")
                wc = await cat.join(session.code, "Cat", "Reds")
                assert wa.token and wb.token and wc.token and len({wa.token, wb.token}) == 2
                joined = [await display.next_event(m.PlayerJoined) for _ in range(3)]
                assert [j.name for j in joined] == ["Ann", "Bob", "Cat"]
                assert [j.participant for j in joined] == [
                    wa.participant, wb.participant, wc.participant]
                assert [j.team for j in joined] == ["Reds", "Blues", "Reds"]
                assert joined[0].seq < joined[1].seq < joined[2].seq

                await host.request(m.Start)
                q0 = await ann.next_event(m.Question)
                assert q0.q == 0 and q0.choices == ("Paris", "Lyon", "Nice")
                assert (await display.next_event(m.Question)).q == 0
                await ann.answer(0, 0)  # right
                await bob.answer(0, 1)  # wrong
                await cat.answer(0, 2)  # wrong; in team mode replaces Ann's answer for Reds
                expected = 3 if mode == "solo" else 2  # one answer per team in team mode
                count = await display.next_event(m.AnswerCount)
                while count.answered < expected:
                    count = await display.next_event(m.AnswerCount)
                assert (count.answered, count.total) == (expected, expected)
                await host.request(m.Close)
                assert (await bob.next_event(m.Closed)).q == 0
                with pytest.raises(RemoteError) as late:
                    await bob.answer(0, 0)
                assert late.value.code is ErrorCode.QUESTION_CLOSED
                await host.request(m.Reveal)
                reveal = await ann.next_event(m.Revealed)
                assert reveal.correct == 0
                result = await ann.next_event(m.Result)
                if mode == "solo":
                    assert result.correct and result.points >= 2
                else:
                    assert not result.correct  # Cat's later answer counts for the Reds

                for _ in range(2):  # question 2 (text), then on to round two
                    await host.request(m.Next)
                    event = await ann.next_event()
                    while not isinstance(event, m.Question):
                        event = await ann.next_event()
                    await ann.answer(event.q, "beatles" if event.kind == "text" else True)
                    await host.request(m.Close)
                    await host.request(m.Reveal)
                    await ann.next_event(m.Result)
                    if event.q == 1:
                        await host.request(m.Next)
                        await host.next_event(m.RoundSummary)
                await host.request(m.End)
                ended = await bob.next_event(m.Ended)
                assert ended.reason
                board = await display.next_event(m.Leaderboard)
                assert board.top[0][0] == 1

            await engine.persister.drain(timeout=10)
            results = await engine.store.session_results(session.code)
            assert len(results.answers) == 5
            assert {a.participant_id for a in results.answers} == {1, 2, 3}


async def test_host_commands_need_the_host_and_tokens_are_checked(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as player, open_client(address.url) as fake:
                await player.join(session.code, "Ann")
                with pytest.raises(RemoteError) as forbidden:
                    await player.request(m.Start)
                assert forbidden.value.code is ErrorCode.FORBIDDEN
                # Another last character, whatever the token ends in (it may end in "x").
                wrong_token = host_token[:-1] + ("y" if host_token.endswith("x") else "x")
                with pytest.raises(RemoteError) as wrong:
                    await fake.host(session.code, wrong_token)
                assert wrong.value.code is ErrorCode.BAD_TOKEN
                with pytest.raises(RemoteError) as bad_code:
                    await fake.join("ZZZZZZ", "Eve")
                assert bad_code.value.code is ErrorCode.BAD_CODE
                with pytest.raises(RemoteError) as no_session:
                    await fake.join("not a code", "Eve")
                assert no_session.value.code is ErrorCode.BAD_CODE
                assert str(no_session.value) == str(bad_code.value)


async def test_deadline_closes_the_question(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(time_limit=1), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                await host.request(m.Start)
                question = await ann.next_event(m.Question)
                closed = await ann.next_event(m.Closed, timeout=5)
                assert closed.q == question.q
                with pytest.raises(RemoteError) as late:
                    await ann.answer(question.q, 0)
                assert late.value.code is ErrorCode.QUESTION_CLOSED


async def test_resume_replays_missed_events_exactly_once(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host:
                await host.host(session.code, host_token)
                async with open_client(address.url) as ann:
                    await ann.join(session.code, "Ann", None)
                    await host.request(m.Start)
                    q0 = await ann.next_event(m.Question)
                    rid0 = (await ann.answer(q0.q, 0)).rid
                    token, last_seq = ann.token, ann.last_seq
                assert token is not None
                # While Ann is away: close, reveal, next question.
                await host.request(m.Close)
                await host.request(m.Reveal)
                await host.request(m.Next)
                async with open_client(address.url) as again:
                    welcome = await again.resume(token, last_seq)
                    assert welcome.participant == 1 and welcome.replay == "events"
                    missed = [await again.next_event() for _ in range(4)]
                    kinds = [type(e) for e in missed]
                    assert kinds[:3] == [m.Closed, m.Revealed, m.Question]
                    seqs = [e.seq for e in missed[:3]]  # type: ignore[attr-defined]
                    assert seqs == sorted(seqs) and seqs[0] > last_seq
                    assert isinstance(missed[3], m.You) and missed[3].score >= 2
                    # The same identity answers the new question with the rid of its answer
                    # to q0, as a client that restarted its rid counter on the new connection
                    # would (ours no longer does). It must be applied, not acked as a
                    # duplicate (issue 16.1).
                    q1 = missed[2].q  # type: ignore[attr-defined]
                    ack = await again.answer(q1, "Beatles", rid=rid0)
                    assert ack.q == q1
                # In the store (durable: the ack came after the commit) and in `state`.
                results = await engine.store.session_results(session.code)
                assert sorted((a.question, a.request_id, a.value) for a in results.answers) == [
                    (q0.q, rid0, 0), (q1, rid0, "Beatles")]
                async with open_client(address.url) as view:
                    assert (await view.resume(token, 2**53 - 1)).replay == "state"
                    state = await view.next_event(m.State)
                    assert state.state["you"]["answer"] == "Beatles"


async def test_second_connection_with_same_token_replaces_first(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as first, open_client(address.url) as second:
                await first.join(session.code, "Ann")
                assert first.token is not None
                await second.resume(first.token, first.last_seq)
                closed = await first.wait_closed()
                assert closed.code == CloseCode.REPLACED


async def test_gap_older_than_buffer_gets_full_state(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, replay_events=2) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                token = ann.token
                assert token is not None
                await host.request(m.Start)
                await host.request(m.Close)
                await host.request(m.Reveal)
                await host.request(m.Next)
                async with open_client(address.url) as again:
                    welcome = await again.resume(token, 0)
                    assert welcome.replay == "state"
                    state = await again.next_event(m.State)
                    assert state.state["phase"] == "question_open"
                    assert state.state["you"]["participant"] == 1


async def test_state_tells_the_rounds_flags_and_your_joker(tmp_path: Path) -> None:
    quiz = load_quiz_data({**SHORT_QUIZ, "rounds": [
        {**SHORT_QUIZ["rounds"][0], "joker": False},
        {**SHORT_QUIZ["rounds"][1], "wager": True, "multiplier": 2.0},
    ]}, source="test")
    with trio.fail_after(20):
        # replay_events=1: the resume below finds its gap too old and gets a full state.
        async with engine_at(tmp_path, replay_events=1) as (engine, address):
            session, host_token = engine.create_session(quiz, mode="solo")
            async with open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
                state = await ann.next_event(m.State)
                assert state.state["rounds"] == [
                    {"title": "Round one", "questions": 2, "multiplier": 1.0, "wager": False,
                     "joker": False},
                    {"title": "Round two", "questions": 1, "multiplier": 2.0, "wager": True,
                     "joker": True},
                ]
                assert state.state["you"]["joker"] is None
                assert state.state["you"]["stakes"] == []
                assert state.state["next_round"] == 0  # the lobby: offer for round 0
                await ann.request(m.Joker, round=1)
                token = ann.token
                assert token is not None
            async with open_client(address.url) as host:
                await host.host(session.code, host_token)
                await host.request(m.Start)  # events past the one-event replay buffer
            async with open_client(address.url) as again:
                assert (await again.resume(token, 0)).replay == "state"
                state = await again.next_event(m.State)
                assert state.state["you"]["joker"] == 1  # a reloaded phone still knows


async def test_reveal_closes_an_open_question_first(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                await host.request(m.Start)
                question = await ann.next_event(m.Question)
                await ann.answer(question.q, 0)
                await host.request(m.Reveal)  # still open: closed, then revealed
                assert (await ann.next_event(m.Closed)).q == question.q
                assert (await ann.next_event(m.Revealed)).q == question.q
                assert (await ann.next_event(m.Result)).correct


async def test_a_stop_logs_what_each_session_and_member_connection_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At a stop the engine logs each session (info) and each member's connection (debug):
    what a failed cluster test or an operator reads to know what each client was left with."""
    with trio.fail_after(30), caplog.at_level(logging.DEBUG, logger="pubquiz_engine"):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                welcome = await ann.join(session.code, "Ann")
                await host.next_event(m.PlayerJoined)
                await engine.shutdown()
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("shutdown: session")]
    assert any(line.startswith(f"shutdown: session {session.code} at seq ") and "2 members" in line
               for line in lines), lines
    player = [line for line in lines if f" player {welcome.participant} conn " in line]
    assert len(player) == 1 and ": open close=None pending=0 backlog=0" in player[0], lines
    assert any(" host None conn " in line for line in lines), lines
    entered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("entered")]
    assert f"entered session {session.code} (epoch 1) as player {welcome.participant}" in entered
