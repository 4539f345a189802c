"""pubquiz.v1 as an outsider reads it (issue 19), over real sockets: what SPEC.md promises a
client that has only the spec and the vectors, checked against a running engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import Backoff, Client, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m

WAGER_QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Every seq",
    "rounds": [
        {"title": "One", "items": [
            {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon"],
             "answer": "Paris", "time_limit": 60, "points": 2},
            {"kind": "text", "prompt": "Band of Abbey Road?", "answer": "The Beatles",
             "time_limit": 60},
        ]},
        {"title": "Two", "wager": True, "joker": False, "items": [
            {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True,
             "time_limit": 60},
        ]},
    ],
}


async def _events_until(client: Client, last: type[m.Message]) -> list[m.Message]:
    """Every event ``client`` received, up to and including the first ``last``."""
    out: list[m.Message] = []
    while not out or not isinstance(out[-1], last):
        out.append(await client.next_event())
    return out


def _seqs(events: list[m.Message]) -> list[int]:
    return [e.seq for e in events if isinstance(getattr(e, "seq", None), int)
            and not isinstance(e, m.State)]


@pytest.mark.parametrize("mode", ["solo", "team"])
async def test_hosts_see_every_seq_and_scores_without_results(tmp_path: Path, mode: str) -> None:
    """Issue 19.3 and the host's scores: a host receives every seq of a game with jokers,
    wagers, answer changes, marks and adjustments (no gap: a gap means a lost event), with a
    ``scores`` event at each reveal; players and displays see gaps."""
    team = (lambda name: name) if mode == "team" else (lambda name: None)
    with trio.fail_after(40):
        async with engine_at(tmp_path) as (engine, address):
            quiz = load_quiz_data(WAGER_QUIZ, source="test")
            session, host_token = engine.create_session(quiz, mode=mode)
            url = address.url
            async with open_client(url) as host, open_client(url) as display, \
                    open_client(url) as ann, open_client(url) as ben, open_client(url) as cat:
                await host.host(session.code, host_token)
                await display.watch(session.code)
                a = (await ann.join(session.code, "Ann", team("Owls"))).participant
                b = (await ben.join(session.code, "Ben", team("Larks"))).participant
                await cat.join(session.code, "Cat", team("Owls"))
                assert a is not None and b is not None
                await host.request(m.Adjust, participant=a, delta=5, reason="early")
                await ann.request(m.Wager, round=1, amount=3)
                await ben.request(m.Joker, round=0)
                await host.request(m.Start)
                q0 = await ann.next_event(m.Question)
                await ann.answer(q0.q, 1)
                await ann.answer(q0.q, 0)  # a change of answer takes a seq too
                await ben.answer(q0.q, 0)
                await cat.answer(q0.q, 1)
                await host.request(m.Reveal)  # closes, reveals
                await host.request(m.Mark, q=q0.q, participant=b, correct=False)
                await host.request(m.Next)
                await host.request(m.Skip)  # the text question; on to the round summary
                await host.request(m.Next)  # round two
                q2 = await ann.next_event(m.Question)
                while q2.q != 2:
                    q2 = await ann.next_event(m.Question)
                await ann.answer(q2.q, True)
                await host.request(m.Reveal)  # settles Ann's wager
                await host.request(m.ShowLeaderboard, round=None)
                await host.request(m.End)

                seen = await _events_until(host, m.Ended)
                seqs = _seqs(seen)
                assert seqs == list(range(1, seqs[-1] + 1)), seqs  # every seq, in order
                kinds = {type(e) for e in seen}
                assert {m.Started, m.RoundStarted, m.JokerPlayed, m.WagerPlaced, m.Marked,
                        m.Scores, m.Answered} <= kinds
                answered = [e for e in seen if isinstance(e, m.Answered)]
                assert len(answered) == 5  # four answers to q0 (one a change), one to q2
                # The host's table is right from the protocol alone: the last scores event of
                # each participant is the final standings' score.
                told: dict[int, int] = {}
                for event in seen:
                    if isinstance(event, m.Scores):
                        told.update(dict(event.scores))
                board = next(e for e in reversed(seen) if isinstance(e, m.Leaderboard))
                if mode == "solo":
                    for _rank, ident, _name, score in board.top:
                        assert told.get(ident, 0) == score
                else:
                    assert told[a] == next(row[3] for row in board.top if row[2] == "Owls")

                for other in (display, ann):  # the others see gaps, in order
                    theirs = _seqs(await _events_until(other, m.Ended))
                    assert theirs == sorted(set(theirs)) and len(theirs) < len(seqs)
                    assert set(theirs) <= set(seqs)


async def test_a_reveal_tells_every_player_and_the_end_keeps_the_host(tmp_path: Path) -> None:
    """Issue 19.5 (a result for who did not answer) and the finished leaderboard: shown again
    after the end, the host's connection stays, other commands are wrong_phase."""
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            url = address.url
            async with open_client(url) as host, open_client(url) as ann, \
                    open_client(url) as ben:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                await ben.join(session.code, "Ben")
                await host.request(m.Start)
                q = await ann.next_event(m.Question)
                await ann.answer(q.q, 0)
                with pytest.raises(RemoteError) as refused:  # another question (SPEC 7)
                    await ben.answer(q.q + 1, 0)
                assert refused.value.code is ErrorCode.NOT_CURRENT_QUESTION
                await host.request(m.Reveal)
                mine = await ann.next_event(m.Result)
                theirs = await ben.next_event(m.Result)
                assert (mine.answered, mine.correct) == (True, True)
                assert (theirs.q, theirs.answered, theirs.correct, theirs.points) == (
                    q.q, False, False, 0)
                await host.request(m.End)
                await host.next_event(m.Ended)
                await host.request(m.ShowLeaderboard, round=None)
                again = await host.next_event(m.Leaderboard)
                assert again.top[0][2] == "Ann"
                with pytest.raises(RemoteError) as late:
                    await host.request(m.Next)
                assert late.value.code is ErrorCode.WRONG_PHASE
                with pytest.raises(RemoteError) as late_answer:
                    await ben.answer(q.q, 0)
                assert late_answer.value.code is ErrorCode.QUESTION_CLOSED
                assert isinstance(await host.request(m.Ping), m.Pong)  # still connected
                assert host.closed is None and ben.closed is None


async def test_a_second_host_replaces_the_first_and_gets_the_real_deadline(
    tmp_path: Path,
) -> None:
    """Issue 19.13 (one host connection per token: 4100) and issue 24.4 (a state after the
    question closed carries its deadline, as in the question event)."""
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            url = address.url
            async with open_client(url) as first, open_client(url) as ann:
                await first.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                await first.request(m.Start)
                question = await ann.next_event(m.Question)
                await first.request(m.Close)
                await ann.next_event(m.Closed)
                async with open_client(url) as second:
                    welcome = await second.host(session.code, host_token)
                    assert welcome.replay == "state"
                    state = (await second.next_event(m.State)).state
                    assert state["phase"] == "question_closed"
                    assert state["question"]["deadline_ms"] == question.deadline_ms > 0
                    closed = await first.wait_closed()
                    assert closed.code == CloseCode.REPLACED
                    await second.request(m.Reveal)  # the new host drives the quiz
                    assert (await ann.next_event(m.Revealed)).q == question.q


async def test_resume_with_events_ends_with_your_line(tmp_path: Path) -> None:
    """Issue 19.11: after ``resume`` with ``replay: "events"``, one ``you`` follows the
    replayed events (SPEC 13.3)."""
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            url = address.url
            async with open_client(url) as host:
                await host.host(session.code, host_token)
                async with open_client(url) as ann:
                    welcome = await ann.join(session.code, "Ann")
                    await host.request(m.Start)
                    q = await ann.next_event(m.Question)
                    await ann.answer(q.q, 0)
                    seen = ann.last_seq
                    token = welcome.token
                assert token is not None
                await host.request(m.Reveal)
                await host.next_event(m.Revealed)
                async with open_client(url) as again:
                    back = await again.resume(token, seen)
                    assert back.replay == "events"
                    replayed = await _events_until(again, m.You)
                    assert [type(e) for e in replayed] == [m.Closed, m.Revealed, m.You]
                    you = replayed[-1]
                    assert isinstance(you, m.You) and you.score > 0 and you.rank == 1


async def test_a_pub_behind_one_address_joins_at_the_limiters_pace(tmp_path: Path) -> None:
    """Issue 19.14 with the defaults: 30 phones, a host and a display from 127.0.0.1 (32 joins
    against a burst of 30), each retrying as SPEC section 12 says, all get in."""
    with trio.fail_after(60):
        async with engine_at(tmp_path, join_rate=2.0, join_burst=30) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as display:
                await host.host(session.code, host_token)
                await display.watch(session.code)
                joined = await _crowd_joins(address.url, session.code, 30)
                assert sorted(joined) == list(range(1, 31))


async def test_a_retried_join_keeps_its_connection_past_the_join_timeout(
    tmp_path: Path,
) -> None:
    """The slow case of issue 19.14: joins wait longer than the join timeout for their turn
    (1 per second, a burst of 2, a 4 s window: the last of 8 waits about 6 s); each refusal
    says when to retry (at most 1 s, 2 s with jitter) and restarts the connection's window,
    so nobody is closed with handshake_timeout."""
    with trio.fail_after(60):
        async with engine_at(tmp_path, join_rate=1.0, join_burst=2,
                             join_timeout=4.0) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            joined = await _crowd_joins(address.url, session.code, 8)
            assert sorted(joined) == list(range(1, 9))


async def _crowd_joins(url: str, code: str, n: int) -> list[int]:
    """``n`` players join at once on their own connections, retrying ``rate_limited`` as the
    server says (``retry_after_ms`` plus jitter, on the same connection)."""
    joined: list[int] = []
    retry = Backoff(first=0.25, limit=5.0, attempts=60)

    async def one(i: int) -> None:
        async with open_client(url, retry=retry) as phone:
            welcome = await phone.join(code, f"Phone {i}")
            assert welcome.participant is not None
            joined.append(welcome.participant)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return joined


def test_the_leaderboard_shows_ten_lines_in_competition_ranking() -> None:
    """Issue 19.6 (pure: the view of a game): ``top`` holds the first 10 lines; equal scores
    share a rank and the next rank skips (1, 2, 2, 4)."""
    from pubquiz_engine.game import AdjustScore, GameSession, Join, Start
    from pubquiz_engine.game.events import LeaderboardShown
    from pubquiz_engine.server import views

    game = GameSession(short_quiz())
    ids = [game.apply(Join(f"P{i:02}", None), 0.0)[0].participant  # type: ignore[attr-defined]
           for i in range(12)]
    for pid, points in zip(ids, [9, 7, 7, 5, 5, 5, 3, 2, 2, 2, 2, 1], strict=True):
        game.apply(AdjustScore(pid, points, "seeded"), 0.0)
    game.apply(Start(), 0.0)
    ((audience, board),) = list(views.broadcasts(5, game, LeaderboardShown(None)))
    assert audience == views.EVERYONE and isinstance(board, m.Leaderboard)
    assert [(rank, score) for rank, _id, _name, score in board.top] == [
        (1, 9), (2, 7), (2, 7), (4, 5), (4, 5), (4, 5), (7, 3), (8, 2), (8, 2), (8, 2)]


def test_the_join_limiter_says_when_the_next_join_fits() -> None:
    """What a throttled join's ``retry_after_ms`` is made of: the time until the address's
    bucket holds a token again (0 while it holds one)."""
    from pubquiz_engine.server.ratelimit import AddressLimiter

    limiter = AddressLimiter(rate=2.0, burst=2)
    assert limiter.wait_time("10.0.0.1", 0.0) == 0.0  # never seen: a full bucket
    assert limiter.take("10.0.0.1", 0.0) and limiter.take("10.0.0.1", 0.0)
    assert not limiter.take("10.0.0.1", 0.0)
    assert limiter.wait_time("10.0.0.1", 0.0) == pytest.approx(0.5)
    assert limiter.wait_time("10.0.0.1", 0.2) == pytest.approx(0.3)
    assert limiter.wait_time("10.0.0.1", 0.5) == 0.0 and limiter.take("10.0.0.1", 0.5)
    assert limiter.wait_time("10.0.0.2", 0.5) == 0.0  # another address: its own bucket
