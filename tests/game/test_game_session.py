"""The session state machine, step by step: phases, answers, scoring, standings, snapshots."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from gamekit import RIGHT, T0, WRONG, Game, make_quiz, round_trip

from pubquiz_engine.errors import CorruptData, ErrorCode, Rejected
from pubquiz_engine.game import (
    AddRound,
    AdjustScore,
    CloseQuestion,
    End,
    Extend,
    GameSession,
    Join,
    Kick,
    Leave,
    Mark,
    Mode,
    Next,
    Pause,
    Phase,
    PlaceWager,
    PlayJoker,
    QState,
    QuestionKind,
    QuestionView,
    Reveal,
    SessionOptions,
    ShowLeaderboard,
    Skip,
    Standing,
    Start,
    SubmitAnswer,
    Unpause,
    event_to_data,
)
from pubquiz_engine.game import events as ev


def joined(g: Game, *names: str, team: str | None = None) -> list[int]:
    ids = []
    for name in names:
        (joined_event, *_) = g.do(Join(name, team))
        assert isinstance(joined_event, ev.ParticipantJoined)
        ids.append(joined_event.participant)
    return ids


def to_question(g: Game, q: int) -> None:
    """Advance (from the lobby or between steps) until question ``q`` is open."""
    if g.session.phase is Phase.LOBBY:
        g.do(Start())
    while g.session.current_question != q or g.session.phase is not Phase.QUESTION_OPEN:
        phase = g.session.phase
        if phase is Phase.QUESTION_OPEN:
            g.do(CloseQuestion())
        elif phase is Phase.QUESTION_CLOSED:
            g.do(Reveal())
        else:
            g.do(Next())


def answer(g: Game, pid: int, value: Any, q: int | None = None) -> list[ev.Event]:
    question = g.session.current_question if q is None else q
    assert question is not None
    return g.do(SubmitAnswer(pid, question, value, g.next_rid()))


def finish_question(g: Game) -> list[ev.Event]:
    return g.do(CloseQuestion()) + g.do(Reveal())


# --- a whole short game, asserting the whole state -------------------------------------------
def test_first_question_whole_state() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    assert g.do(Start()) == [
        ev.Started(T0), ev.RoundStarted(0, "Warm-up", 1.0, False, 3),
        ev.SlideShown(0, "Welcome", "Rules", None)]
    assert g.session.phase is Phase.SLIDE
    assert g.do(Next()) == [ev.QuestionOpened(0, T0 + 30, 30.0, 0), ev.AnswerCountChanged(0, 0, 2)]
    g.now += 6
    assert answer(g, alice, 1) == [
        ev.AnswerAccepted(alice, None, 0, 1, 1, T0 + 6, 6.0, 1),
        ev.AnswerCountChanged(0, 1, 2)]
    g.now += 3
    answer(g, bob, 0)
    g.now += 1
    assert g.do(CloseQuestion()) == [ev.QuestionClosed(0, "host")]
    assert g.do(Reveal()) == [
        ev.Revealed(0, 1, "", [1, 1, 0]),
        # Alice: 2 points + speed bonus 2 * (1 - 6/30) = 1.6 -> round(3.6) = 4
        ev.ScoresChanged([(alice, 4)], [], "reveal", 0)]
    snapshot = g.session.to_snapshot()
    del snapshot["quiz"]
    assert snapshot == {
        "format": 3,
        "options": {"mode": "solo", "close_when_all_answered": False, "max_participants": 1000,
                    "max_team_size": 10, "speed_bonus": True},
        "phase": "revealed", "resume_phase": None, "step": 1, "deadline": None,
        "question_deadline": T0 + 30,
        "remaining": None, "elapsed_base": 10.0, "running_since": None, "finish_reason": None,
        "next_id": 3, "next_team": 1,
        "participants": [[1, "Alice", None, None, T0, False, False],
                         [2, "Bob", None, None, T0, False, False]],
        "teams": [],
        "qstate": ["revealed"] + ["pending"] * 7,
        "answers": [[0, 1, 1, 1, T0 + 6, 6.0, 1, 1], [0, 2, 2, 0, T0 + 9, 9.0, 1, 2]],
        "seen": [[1, None, 0, 1, 1, T0 + 6, 6.0, 1], [2, None, 0, 0, 2, T0 + 9, 9.0, 1]],
        "marks": [], "awards": [[0, 1, 1.0, 4], [0, 2, 0.0, 0]], "jokers": [], "wagers": [],
        "wager_results": [], "adjustments": [], "totals": [[1, 4]], "tiebreak": [],
    }
    assert round_trip(g.session) == g.session


def test_play_through_to_the_end() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    seen_phases = []
    for q in range(8):
        to_question(g, q)
        answer(g, alice, RIGHT[q])
        finish_question(g)
        seen_phases.append(g.session.phase)
    assert g.do(Next()) == [ev.RoundSummary(3)]
    assert g.do(Next()) == [ev.Finished("completed")]
    assert g.session.phase is Phase.FINISHED
    assert g.session.recompute_scores() == dict(g.session.totals)
    assert g.session.standings() == [Standing(1, alice, "Alice", g.session.score_of(alice))]
    # One phase rule (SPEC 7): wrong_phase, the connection stays; only a join is told the
    # session is over.
    g.refuse(Next(), ErrorCode.WRONG_PHASE)
    g.refuse(PlayJoker(alice, 0), ErrorCode.WRONG_PHASE)
    g.refuse(Join("Late", None), ErrorCode.SESSION_ENDED)
    g.refuse(SubmitAnswer(alice, 7, RIGHT[7], 999), ErrorCode.QUESTION_CLOSED)
    # The final standings can be shown again, and the quiz stays finished (issue 19).
    assert g.do(ShowLeaderboard()) == [ev.LeaderboardShown(None)]
    assert g.do(ShowLeaderboard(1)) == [ev.LeaderboardShown(1)]
    assert g.session.phase is Phase.FINISHED


# --- answers ---------------------------------------------------------------------------------
def test_duplicate_request_returns_the_first_acceptance_even_after_close() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    first = g.do(SubmitAnswer(alice, 0, 1, 77))
    g.now += 1
    before = g.session.to_snapshot()
    again = g.do(SubmitAnswer(alice, 0, 1, 77))  # a resend: same rid, question and value
    assert again == [ev.AnswerAccepted(alice, None, 0, 1, 77, T0, 0.0, 1, duplicate=True)]
    assert first[0] == ev.AnswerAccepted(alice, None, 0, 1, 77, T0, 0.0, 1)
    assert g.session.to_snapshot() == before
    g.do(CloseQuestion())
    assert g.do(SubmitAnswer(alice, 0, 1, 77))[0].duplicate  # type: ignore[union-attr]
    g.refuse(SubmitAnswer(alice, 0, 1, 78), ErrorCode.QUESTION_CLOSED)
    # The same rid with another value after the close is a new submission: refused, not acked.
    g.refuse(SubmitAnswer(alice, 0, 2, 77), ErrorCode.QUESTION_CLOSED)


def test_submit_returns_the_refusal_apply_raises_for_the_phase_rule() -> None:
    """``GameSession.submit`` (the session's answer batches) refuses exactly as ``apply``: the
    phase rule's refusals are returned, not raised, the constant ones shared and never raised
    (no traceback kept), and ``apply`` raises a new exception with the same code and message
    every time. Nothing changes either way."""
    g = Game()
    (alice,) = joined(g, "Alice")

    def check(question: int, code: ErrorCode) -> Rejected:
        before = g.session.to_snapshot()
        got = g.session.submit(alice, question, 1, g.next_rid(), g.now)
        assert isinstance(got, Rejected) and got.code is code, got
        assert got.__traceback__ is None
        raised = g.refuse(SubmitAnswer(alice, question, 1, g.next_rid()), code)
        assert raised is not got and raised.message == got.message
        assert g.session.to_snapshot() == before
        return got

    assert check(0, ErrorCode.WRONG_PHASE).message == "no question is open"  # the lobby
    to_question(g, 0)
    assert check(1, ErrorCode.NOT_CURRENT_QUESTION).message == "question 1 is not the open one"
    g.do(Pause())
    assert check(0, ErrorCode.WRONG_PHASE).message == "the question is paused"
    g.do(Unpause())
    accepted = g.do(SubmitAnswer(alice, 0, 1, 500))
    deadline = g.session.question_deadline
    assert deadline is not None
    g.now = deadline + 1  # past the deadline, before the timer closed it
    assert check(0, ErrorCode.QUESTION_CLOSED).message == "time is up"
    g.do(CloseQuestion())
    closed = check(0, ErrorCode.QUESTION_CLOSED)
    assert closed.message == "that question is closed"
    assert check(0, ErrorCode.QUESTION_CLOSED) is closed  # one shared refusal
    # Rule 4 still comes first: a resend of the accepted answer is its acceptance again.
    again = g.session.submit(alice, 0, 1, 500, g.now)
    assert again == [attrs.evolve(accepted[0], duplicate=True)]


def test_a_reused_rid_with_another_answer_is_applied_as_the_new_answer_it_is() -> None:
    """Issue 16.1: a client that restarts its rid counter (a reconnect, a reload) reuses a rid.
    The engine never acks what it did not apply: another value or another question under the
    same (participant, rid) is a new submission, and a resend of it is its duplicate."""
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    g.do(SubmitAnswer(alice, 0, 1, 2))
    changed = g.do(SubmitAnswer(alice, 0, 2, 2))  # same question, same rid, another value
    assert changed[0] == ev.AnswerAccepted(alice, None, 0, 2, 2, T0, 0.0, 2)
    assert g.session.answers(0)[alice].value == 2
    to_question(g, 1)
    q = 1
    accepted = g.do(SubmitAnswer(alice, q, RIGHT[q], 2))  # the next question, the same rid
    assert accepted[0] == ev.AnswerAccepted(alice, None, q, RIGHT[q], 2, g.now, 0.0, 1)
    assert g.session.answers(q)[alice].value == RIGHT[q]
    assert g.session.answers(0)[alice].value == 2  # the first question keeps its answer
    before = g.session.to_snapshot()
    again = g.do(SubmitAnswer(alice, q, RIGHT[q], 2))
    assert again == [attrs.evolve(accepted[0], duplicate=True)]
    assert g.session.to_snapshot() == before
    restored = GameSession.from_snapshot(before)
    assert restored.apply(SubmitAnswer(alice, q, RIGHT[q], 2), g.now)[0] == again[0]


def test_changing_an_answer_keeps_one_answer_and_the_last_counts() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    answer(g, alice, 1)
    g.now += 2
    assert answer(g, alice, 0) == [ev.AnswerAccepted(alice, None, 0, 0, 2, T0 + 2, 2.0, 2)]
    assert dict(g.session.answers(0))[alice].value == 0
    finish_question(g)
    assert g.session.score_of(alice) == 0


def test_deadline_is_inclusive_and_tick_closes() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    to_question(g, 0)
    assert g.session.next_deadline == T0 + 30
    g.now = T0 + 30
    answer(g, alice, 1)  # exactly at the deadline: accepted
    g.now = T0 + 30.001
    g.refuse(SubmitAnswer(bob, 0, 1, 99), ErrorCode.QUESTION_CLOSED)
    assert g.session.tick(T0 + 29) == []
    assert g.session.tick(g.now) == [ev.QuestionClosed(0, "deadline")]
    assert g.session.next_deadline is None
    assert g.session.tick(g.now + 100) == []


def test_answer_rules_are_checked() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    g.refuse(SubmitAnswer(alice, 0, 1, 1), ErrorCode.WRONG_PHASE)  # the lobby: none is open
    g.refuse(SubmitAnswer(alice, 50, 1, 1), ErrorCode.WRONG_PHASE)
    g.do(Start())
    g.refuse(SubmitAnswer(alice, 0, 1, 1), ErrorCode.WRONG_PHASE)  # a slide: none is open
    to_question(g, 0)
    g.refuse(SubmitAnswer(99, 0, 1, 1), ErrorCode.UNKNOWN_PARTICIPANT)
    g.refuse(SubmitAnswer(alice, 1, 1, 1), ErrorCode.NOT_CURRENT_QUESTION)
    g.refuse(SubmitAnswer(alice, 50, 1, 1), ErrorCode.NOT_CURRENT_QUESTION)
    g.refuse(SubmitAnswer(alice, 0, 7, 1), ErrorCode.INVALID_ANSWER)
    g.refuse(SubmitAnswer(alice, 0, 1, "x"), ErrorCode.INVALID_COMMAND)  # type: ignore[arg-type]
    g.do(CloseQuestion())
    g.refuse(SubmitAnswer(alice, 0, 1, 5), ErrorCode.QUESTION_CLOSED)  # too late, any phase
    g.refuse(SubmitAnswer(alice, 1, 1, 5), ErrorCode.WRONG_PHASE)  # never opened: none is open
    g.do(Reveal())
    g.do(Next())
    g.refuse(SubmitAnswer(alice, 0, 1, 5), ErrorCode.QUESTION_CLOSED)
    g.refuse(SubmitAnswer(alice, 2, True, 5), ErrorCode.NOT_CURRENT_QUESTION)  # 1 is open


def test_multiple_choice_needs_at_least_one_choice() -> None:
    """Issue 19.7, settled: an empty choice list is no answer (SPEC section 10)."""
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 3)
    g.refuse(SubmitAnswer(alice, 3, [], 1), ErrorCode.INVALID_ANSWER)
    assert isinstance(answer(g, alice, [2]), list)


def test_close_reveal_and_skip_act_on_the_paused_question() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    answer(g, alice, RIGHT[0])
    g.do(Pause())
    assert g.do(Reveal())[:2] == [ev.QuestionClosed(0, "host"), ev.Revealed(0, 1, "", [0, 1, 0])]
    assert g.session.phase is Phase.REVEALED and g.session.remaining is None
    g.do(Next())
    g.do(Pause())
    assert g.do(CloseQuestion()) == [ev.QuestionClosed(1, "host")]
    g.do(Pause())  # paused on a closed question: close is wrong, reveal and skip act
    g.refuse(CloseQuestion(), ErrorCode.WRONG_PHASE)
    assert g.do(Skip())[0] == ev.QuestionSkipped(1)
    assert g.session.phase is Phase.QUESTION_OPEN and g.session.current_question == 2
    g.do(Pause())  # paused on an open question: skip drops it
    assert g.do(Skip())[0] == ev.QuestionSkipped(2)
    assert g.session.phase is Phase.ROUND_SUMMARY and g.session.remaining is None


def test_team_mode_one_answer_per_team_last_member_counts() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    a1, a2 = joined(g, "Ann", "Abe", team="Aces")
    (b1,) = joined(g, "Bea", team="Bees")
    to_question(g, 0)
    assert answer(g, a1, 0)[1] == ev.AnswerCountChanged(0, 1, 2)
    g.now += 1
    # A second member changes the team's answer: revision 2, the count does not move.
    assert answer(g, a2, 1) == [ev.AnswerAccepted(a2, 1, 0, 1, 2, T0 + 1, 1.0, 2)]
    answer(g, b1, 0)
    assert set(g.session.answers(0)) == {1, 2}
    events = finish_question(g)
    assert events[-1] == ev.ScoresChanged([(a1, 4), (a2, 4)], [(1, 4)], "reveal", 0)
    assert g.session.standings(teams=True) == [Standing(1, 1, "Aces", 4), Standing(2, 2, "Bees", 0)]
    assert g.session.rank_of(a2) == Standing(1, a2, "Abe", 4)
    assert g.session.rank_of(b1, teams=True) == Standing(2, 2, "Bees", 0)


def test_close_when_all_answered_and_kick_updates_the_count() -> None:
    g = Game(SessionOptions(close_when_all_answered=True))
    alice, bob, carl = joined(g, "Alice", "Bob", "Carl")
    to_question(g, 0)
    answer(g, alice, 1)
    answer(g, bob, 1)
    assert g.do(Kick(carl)) == [
        ev.ParticipantKicked(carl), ev.AnswerCountChanged(0, 2, 2),
        ev.QuestionClosed(0, "all_answered")]
    assert g.session.phase is Phase.QUESTION_CLOSED
    g.do(Reveal())
    g.do(Next())
    g.refuse(SubmitAnswer(carl, 1, "beatles", 500), ErrorCode.KICKED)
    assert [s.id for s in g.session.standings()] == [alice, bob]


def test_all_answered_closes_on_the_last_answer() -> None:
    g = Game(SessionOptions(close_when_all_answered=True))
    alice, bob = joined(g, "Alice", "Bob")
    to_question(g, 0)
    answer(g, alice, 1)
    assert answer(g, bob, 2)[-1] == ev.QuestionClosed(0, "all_answered")


# --- the clock: pause, resume, extend ---------------------------------------------------------
def test_pause_freezes_the_clock_and_the_speed_bonus() -> None:
    g = Game()
    (alice,) = joined(g, "Alice")
    to_question(g, 0)
    g.now += 10
    assert g.do(Pause()) == [ev.Paused(20.0)]
    assert g.session.next_deadline is None
    assert g.session.tick(g.now + 1000) == []
    g.now += 500
    # A pause stops the answers with the clock (SPEC 7; else an answer thought over during a
    # pause would earn the speed bonus of the moment it began).
    g.refuse(SubmitAnswer(alice, 0, 1, g.next_rid()), ErrorCode.WRONG_PHASE)
    assert g.do(Extend(5)) == [ev.TimeExtended(0, None, 25.0)]
    assert g.do(Unpause()) == [ev.Resumed(g.now + 25.0)]
    answer(g, alice, 1)  # at once: 10 s of running time, the pause not counted
    assert g.session.answers(0)[alice].elapsed == 10.0
    g.now += 3
    assert g.do(Extend(10)) == [ev.TimeExtended(0, g.now + 32.0, 32.0)]
    finish_question(g)
    assert g.session.score_of(alice) == 3  # 2 + 2 * (1 - 10/30) = 3.33 -> 3


def test_extend_and_pause_refused_after_the_deadline() -> None:
    g = Game()
    joined(g, "Alice")
    to_question(g, 0)
    g.now += 31
    g.refuse(Extend(10), ErrorCode.QUESTION_CLOSED)
    g.refuse(Pause(), ErrorCode.QUESTION_CLOSED)
    g.now = T0
    for bad in (0, -1, 601, float("nan"), True, "5"):
        g.refuse(Extend(bad), ErrorCode.INVALID_COMMAND)  # type: ignore[arg-type]
    for _ in range(5):
        g.do(Extend(600))  # 30 + 5 * 600 = 3030 seconds left
    g.refuse(Extend(600), ErrorCode.INVALID_COMMAND)  # would pass the one-hour cap


def test_pause_between_questions_resumes_to_the_same_phase() -> None:
    g = Game()
    joined(g, "Alice")
    g.do(Start())
    assert g.do(Pause()) == [ev.Paused(None)]
    g.refuse(Next(), ErrorCode.WRONG_PHASE)
    g.refuse(Pause(), ErrorCode.WRONG_PHASE)
    for command in (CloseQuestion(), Reveal(), Skip()):  # the pause is on a slide
        g.refuse(command, ErrorCode.WRONG_PHASE)
    assert g.do(Unpause()) == [ev.Resumed(None)]
    assert g.session.phase is Phase.SLIDE


# --- scoring rules ---------------------------------------------------------------------------
def test_text_marking_rescores_consistently() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    to_question(g, 1)
    answer(g, alice, "The Beetles")
    answer(g, bob, "Fab Four")
    g.do(CloseQuestion())
    assert g.do(Mark(1, bob, True)) == [ev.AnswerMarked(1, bob, None, True)]  # before reveal
    events = g.do(Reveal())
    assert events[-1] == ev.ScoresChanged([(alice, 1), (bob, 1)], [], "reveal", 1)
    assert g.do(Mark(1, alice, False)) == [
        ev.AnswerMarked(1, alice, None, False), ev.ScoresChanged([(alice, 0)], [], "mark", 1)]
    assert g.do(Mark(1, alice, False)) == [ev.AnswerMarked(1, alice, None, False)]
    assert g.session.recompute_scores() == {bob: 1}
    g.refuse(Mark(2, alice, True), ErrorCode.WRONG_PHASE)  # not played yet
    g.refuse(Mark(1, 99, True), ErrorCode.UNKNOWN_PARTICIPANT)
    g.refuse(Mark(9, alice, True), ErrorCode.INVALID_COMMAND)


def test_mark_needs_an_answer_and_refuses_skipped_questions() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    to_question(g, 0)
    answer(g, alice, 1)
    g.do(Skip())
    assert g.session.question_state(0) is QState.SKIPPED
    assert g.session.current_question == 1
    g.refuse(Mark(0, alice, True), ErrorCode.INVALID_COMMAND)
    g.do(CloseQuestion())
    g.refuse(Mark(1, bob, True), ErrorCode.INVALID_COMMAND)
    assert dict(g.session.totals) == {}


def test_joker_doubles_one_round_once_and_only_before_it() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    assert g.do(PlayJoker(alice, 1)) == [ev.JokerPlayed(alice, None, 1)]
    assert (g.session.joker_of(alice), g.session.joker_of(bob)) == (1, None)
    g.refuse(PlayJoker(alice, 0), ErrorCode.JOKER_USED)
    g.refuse(PlayJoker(bob, 2), ErrorCode.INVALID_COMMAND)  # round 2 takes no jokers
    g.refuse(PlayJoker(bob, 9), ErrorCode.UNKNOWN_ROUND)
    to_question(g, 0)
    g.refuse(PlayJoker(bob, 0), ErrorCode.JOKER_TOO_LATE)
    to_question(g, 3)
    answer(g, alice, [0, 2])
    answer(g, bob, [0, 2])
    finish_question(g)
    # 1 point x 2 (double round) x 2 (joker)
    assert (g.session.score_of(alice), g.session.score_of(bob)) == (4, 2)
    assert g.session.standings(round_index=1)[0] == Standing(1, alice, "Alice", 4)


def test_outcome_of_a_revealed_question() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    a1, a2 = joined(g, "Ann", "Abe", team="Aces")
    (b1,) = joined(g, "Bea", team="Bees")
    (c1,) = joined(g, "Cy", team="Cats")
    to_question(g, 3)
    answer(g, a1, [0, 2])
    answer(g, b1, [0])  # partial credit: half of 1 point x 2 (double round) = 1
    g.do(CloseQuestion())
    assert g.session.outcome_of(a1, 3) is None  # not revealed yet
    g.do(Reveal())
    assert g.session.outcome_of(a2, 3) == (True, 2)  # the team's answer, sent by Ann
    assert g.session.outcome_of(b1, 3) == (False, 1)
    assert g.session.outcome_of(c1, 3) is None  # no answer
    assert g.session.outcome_of(999, 3) is None


def test_closest_wins_numeric_gives_all_ties_full_points() -> None:
    g = Game()
    a, b, c = joined(g, "A", "B", "C")
    to_question(g, 4)
    answer(g, a, 200)
    answer(g, b, 212)
    answer(g, c, 150)
    finish_question(g)
    assert dict(g.session.totals) == {a: 2, b: 2}


def test_wager_won_and_lost_and_limits() -> None:
    g = Game()
    a, b = joined(g, "A", "B")
    g.refuse(PlaceWager(a, 2, 1), ErrorCode.INVALID_WAGER)  # no points to stake yet
    g.refuse(PlaceWager(a, 0, 0), ErrorCode.NOT_A_WAGER_ROUND)
    to_question(g, 0)
    answer(g, a, 1)
    answer(g, b, 1)
    finish_question(g)
    score = g.session.score_of(a)
    assert score == g.session.score_of(b) == 4
    g.refuse(PlaceWager(a, 2, score + 1), ErrorCode.INVALID_WAGER)
    g.refuse(PlaceWager(a, 2, -1), ErrorCode.INVALID_WAGER)
    g.refuse(PlaceWager(a, 2, 1.5), ErrorCode.INVALID_WAGER)  # type: ignore[arg-type]
    assert g.do(PlaceWager(a, 2, 3)) == [ev.WagerPlaced(a, None, 2, 3)]
    g.do(PlaceWager(b, 2, 4))
    assert (g.session.stakes_of(a), g.session.stakes_of(b)) == ({2: 3}, {2: 4})
    g.do(PlaceWager(b, 2, 0))  # 0 takes the stake back
    assert g.session.stakes_of(b) == {}
    g.do(PlaceWager(b, 2, 4))
    to_question(g, 5)
    g.refuse(PlaceWager(a, 2, 1), ErrorCode.INVALID_WAGER)  # the round has started
    answer(g, a, RIGHT[5])
    answer(g, b, RIGHT[5])
    finish_question(g)
    g.do(Next())
    answer(g, a, RIGHT[6])
    answer(g, b, WRONG[6])
    events = finish_question(g)
    # One event for the question's points and the stakes it settled.
    assert events[-1] == ev.ScoresChanged([(a, 4 + 2 + 3), (b, 4 + 1 - 4)], [], "reveal", 6)
    # The host decides b's answer was right after all: the stake flips from -4 to +4.
    events = g.do(Mark(6, b, True))
    assert events[-1] == ev.ScoresChanged([(b, 4 + 2 + 4)], [], "mark", 6)
    assert g.session.recompute_scores() == dict(g.session.totals)
    assert g.session.standings(round_index=2) == [Standing(1, b, "B", 6), Standing(2, a, "A", 5)]


def test_adjust_score_with_a_reason() -> None:
    g = Game()
    (a,) = joined(g, "A")
    assert g.do(AdjustScore(a, -3, " shouted the answer ")) == [
        ev.ScoreAdjusted(a, None, -3, "shouted the answer"),
        ev.ScoresChanged([(a, -3)], [], "adjust", None)]
    for delta, reason in ((0, "x"), (True, "x"), (10**9, "x"), (1, " "), (1, None)):
        g.refuse(AdjustScore(a, delta, reason), ErrorCode.INVALID_COMMAND)  # type: ignore[arg-type]
    assert g.session.recompute_scores() == {a: -3}


def test_tiebreak_orders_equal_scores_but_scores_nothing() -> None:
    g = Game()
    a, b, c, d = joined(g, "Dee", "Cee", "Bee", "Aye")
    to_question(g, 7)
    answer(g, a, 300)
    answer(g, b, 340)
    answer(g, c, 320)
    finish_question(g)
    assert dict(g.session.totals) == {}
    # b and c are both 10 away: they share first place, listed by name (Bee, Cee).
    assert [(s.rank, s.id) for s in g.session.standings()] == [(1, c), (1, b), (3, a), (4, d)]
    assert [s.rank for s in g.session.standings(round_index=3)] == [1, 1, 1, 1]
    g.refuse(Mark(7, a, True), ErrorCode.INVALID_COMMAND)


def test_speed_bonus_can_be_switched_off() -> None:
    g = Game(SessionOptions(speed_bonus=False))
    (a,) = joined(g, "A")
    to_question(g, 0)
    answer(g, a, 1)
    finish_question(g)
    assert g.session.score_of(a) == 2
    assert g.session.question_view(0).speed_bonus == 0


# --- standings -------------------------------------------------------------------------------
def test_standings_share_ranks_1_2_2_4_and_hide_kicked_players() -> None:
    g = Game()
    ids = joined(g, "Ann", "Bob", "Cid", "Dan", "Eve")
    for pid, delta in zip(ids, (5, 3, 3, 1, 9), strict=True):
        g.do(AdjustScore(pid, delta, "test"))
    g.do(Kick(ids[4]))
    assert [(s.rank, s.name, s.score) for s in g.session.standings()] == [
        (1, "Ann", 5), (2, "Bob", 3), (2, "Cid", 3), (4, "Dan", 1)]
    assert g.session.rank_of(ids[2]) == Standing(2, ids[2], "Cid", 3)
    assert g.session.rank_of(ids[4]) is None
    assert g.session.rank_of(999) is None


def test_solo_team_labels_sum_member_scores() -> None:
    g = Game()
    a, b = joined(g, "A", "B", team="Reds")
    (c,) = joined(g, "C", team="Blues")
    g.do(AdjustScore(a, 2, "t"))
    g.do(AdjustScore(b, 3, "t"))
    g.do(AdjustScore(c, 4, "t"))
    assert g.session.standings(teams=True) == [Standing(1, 1, "Reds", 5),
                                                Standing(2, 2, "Blues", 4)]


# --- membership and names --------------------------------------------------------------------
def test_names_unique_after_normalisation_and_confusables() -> None:
    g = Game()
    joined(g, "Alice")
    err = g.refuse(Join("\u0430lice", None), ErrorCode.NAME_TAKEN)  # Cyrillic a
    assert "'Alice'" in err.message
    g.refuse(Join("  ALICE ", None), ErrorCode.NAME_TAKEN)
    g.refuse(Join("Al\u200bice", None), ErrorCode.INVALID_NAME)
    g.refuse(Join("x" * 10_000, None), ErrorCode.INVALID_NAME)
    g.refuse(Join("Bob", "\u202eevil"), ErrorCode.INVALID_NAME)


def test_leaving_frees_the_name_and_kicking_keeps_it() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    assert g.do(Leave(alice)) == [ev.ParticipantLeft(alice)]
    g.refuse(Leave(alice), ErrorCode.UNKNOWN_PARTICIPANT)  # left the lobby: forgotten
    assert joined(g, "Alice") == [3]  # ids are never reused
    g.do(Kick(bob))
    g.refuse(Join("Bob", None), ErrorCode.NAME_TAKEN)
    g.refuse(Kick(bob), ErrorCode.INVALID_COMMAND)
    g.refuse(Leave(bob), ErrorCode.KICKED)


def test_leaving_after_the_start_keeps_the_line() -> None:
    g = Game()
    alice, bob = joined(g, "Alice", "Bob")
    to_question(g, 0)
    assert g.do(Leave(alice)) == [ev.ParticipantLeft(alice), ev.AnswerCountChanged(0, 0, 1)]
    g.refuse(Leave(alice), ErrorCode.NOT_JOINED)
    assert g.session.participants[alice].left
    assert {line.id for line in g.session.standings()} == {alice, bob}


def test_lobby_churn_holds_only_who_is_here() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    empty = g.session.to_snapshot()
    for i in range(50):
        pid = g.do(Join(f"P{i}", f"Table {i}"))[0].participant
        g.do(Leave(pid))
    after = g.session.to_snapshot()
    assert after["participants"] == after["teams"] == []
    assert (after["next_id"], after["next_team"]) == (51, 51)
    assert {**after, "next_id": 1, "next_team": 1} == empty
    # A new team never takes the id of a forgotten one.
    assert g.do(Join("Q", "Table 0"))[0] == ev.ParticipantJoined(51, "Q", "Table 0", 51, T0)


def test_lobby_leaver_with_a_trace_keeps_the_line() -> None:
    g = Game()
    alice, bob, carol = joined(g, "Alice", "Bob", "Carol")
    g.do(PlayJoker(alice, 1))
    g.do(AdjustScore(bob, 5, "early bird"))
    g.do(Leave(alice))
    g.do(Leave(bob))
    g.do(Leave(carol))
    assert sorted(g.session.participants) == [alice, bob]
    assert all(p.left for p in g.session.participants.values())
    team = Game(SessionOptions(mode=Mode.TEAM))
    a, b = joined(team, "A", "B", team="Reds")
    team.do(PlayJoker(a, 1))
    team.do(Leave(a))
    team.do(Leave(b))
    assert not team.session.participants  # players forgotten, the team keeps its joker
    assert list(team.session.teams) == [1]
    assert team.do(Join("C", "reds"))[0].team_id == 1


def test_a_team_member_told_a_score_is_not_forgotten() -> None:
    """The hypothesis machine's KeyError on main: an adjustment of B's team is reported to A
    too (``ScoresChanged`` names every member); A then left the lobby and was forgotten, so
    ``score_of(A)``, answered a moment before, raised KeyError (and the score row the server
    wrote for A named nobody)."""
    g = Game(SessionOptions(mode=Mode.TEAM))
    a, b = joined(g, "A", "B", team="Reds")
    (_, scores) = g.do(AdjustScore(b, 3, "early bird"))
    assert isinstance(scores, ev.ScoresChanged) and scores.scores == [(a, 3), (b, 3)]
    g.do(Leave(a))
    assert g.session.participants[a].left
    assert g.session.score_of(a) == 3
    assert round_trip(g.session) == g.session
    # A team without a score still forgets its lobby leavers.
    c, _ = joined(g, "C", "D", team="Blues")
    g.do(Leave(c))
    assert c not in g.session.participants


def test_limits_session_full_team_full_team_required() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM, max_participants=3, max_team_size=2))
    joined(g, "A", "B", team="Reds")
    g.refuse(Join("C", "reds"), ErrorCode.TEAM_FULL)
    g.refuse(Join("C", None), ErrorCode.INVALID_NAME)
    g.refuse(Join("C", "  "), ErrorCode.INVALID_NAME)
    g.refuse(Join("C", "R\u0435ds "), ErrorCode.TEAM_FULL)  # Cyrillic e: the same team
    joined(g, "C", team="Blues")
    g.refuse(Join("D", "Greens"), ErrorCode.SESSION_FULL)


def test_team_names_join_the_existing_team_as_spelled() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    joined(g, "A", team="Quiz Team")
    assert g.do(Join("B", " quizteam"))[0] == ev.ParticipantJoined(2, "B", "Quiz Team", 1, T0)
    assert len(g.session.teams) == 1


def test_session_full() -> None:
    g = Game(SessionOptions(max_participants=2))
    a, _ = joined(g, "A", "B")
    g.refuse(Join("C", None), ErrorCode.SESSION_FULL)
    g.do(Leave(a))
    joined(g, "C")


def test_joining_mid_question_updates_the_count() -> None:
    g = Game()
    joined(g, "A")
    to_question(g, 0)
    assert g.do(Join("B", None))[1:] == [ev.AnswerCountChanged(0, 0, 2)]


# --- phases and the table --------------------------------------------------------------------
@pytest.mark.parametrize(
    "command", [Next(), CloseQuestion(), Reveal(), Skip(), ShowLeaderboard(), Unpause(), Extend(5)]
)
def test_host_commands_out_of_phase_are_refused_in_the_lobby(command: Any) -> None:
    Game().refuse(command, ErrorCode.WRONG_PHASE)


def test_unknown_command_is_refused() -> None:
    Game().refuse(object(), ErrorCode.INVALID_COMMAND)  # type: ignore[arg-type]


def test_leaderboard_overlay_then_next() -> None:
    g = Game()
    joined(g, "A")
    to_question(g, 0)
    finish_question(g)
    assert g.do(ShowLeaderboard(None)) == [ev.LeaderboardShown(None)]
    assert g.do(ShowLeaderboard(0)) == [ev.LeaderboardShown(0)]
    g.refuse(ShowLeaderboard(7), ErrorCode.UNKNOWN_ROUND)
    assert g.do(Next())[0] == ev.QuestionOpened(1, T0 + 30, 30.0, 0)


def test_end_mid_question_closes_it_unscored() -> None:
    g = Game()
    (a,) = joined(g, "A")
    to_question(g, 0)
    answer(g, a, 1)
    g.do(Pause())
    assert g.do(End("fire alarm")) == [ev.QuestionClosed(0, "ended"), ev.Finished("fire alarm")]
    assert g.session.finish_reason == "fire alarm"
    assert g.session.next_deadline is None
    assert dict(g.session.totals) == {}
    g.do(AdjustScore(a, 1, "goodwill"))  # corrections are still possible once finished


# --- views -----------------------------------------------------------------------------------
def test_question_view_hides_the_answer_and_correct_view_gives_it() -> None:
    g = Game()
    view = g.session.question_view(5)
    assert (view.kind, view.round, view.number, view.round_size, view.total) == (
        QuestionKind.ORDERING, 2, 1, 2, 8)
    assert view.choices == ("b", "a", "c")
    assert not {"answer", "accepted", "explanation"} & set(attrs.fields_dict(QuestionView))
    assert g.session.correct_view(5).answer == [1, 0, 2]
    assert g.session.correct_view(1).answer == ["The Beatles"]
    assert g.session.answer_distribution(4) is None


def test_truefalse_distribution() -> None:
    g = Game()
    a, b, c = joined(g, "A", "B", "C")
    to_question(g, 2)
    answer(g, a, True)
    answer(g, b, False)
    answer(g, c, True)
    assert g.session.answer_distribution(2) == [2, 1]


def test_events_have_plain_data_forms() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    joined(g, "A", team="T")
    to_question(g, 0)
    events = answer(g, 1, 1) + finish_question(g)
    data = [event_to_data(e) for e in events]
    assert data[0]["type"] == "answer_accepted"
    assert data[-1] == {"type": "scores_changed", "scores": [[1, 4]], "team_scores": [[1, 4]],
                        "reason": "reveal", "question": 0}
    json.dumps(data)


def test_snapshot_refuses_unknown_formats() -> None:
    snapshot = GameSession(make_quiz()).to_snapshot()
    snapshot["format"] = 99
    with pytest.raises(ValueError, match="unknown snapshot format"):
        GameSession.from_snapshot(snapshot)


def test_an_unreadable_snapshot_is_corrupt_data_whatever_is_wrong() -> None:
    """The game restores itself and says, with one typed error, when it cannot: the takeover
    maps it (``SnapshotCorrupt``) instead of catching whatever a missing key raised."""
    g = Game()
    joined(g, "A")
    good = g.session.to_snapshot()
    damaged: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "participants"},  # a key missing
        {**good, "participants": [[1]]},  # a row too short
        {**good, "phase": "dancing"},  # not a phase
        {**good, "quiz": {"format": 1, "rounds": []}},  # a quiz that does not load
        {**good, "qstate": None},  # the wrong shape
    ]
    for data in damaged:
        with pytest.raises(CorruptData):
            GameSession.from_snapshot(data)
    assert GameSession.from_snapshot(good) == g.session


def test_a_format_1_snapshot_still_restores() -> None:
    g = Game(SessionOptions(mode=Mode.TEAM))
    joined(g, "A", team="Reds")
    joined(g, "B", team="Blues")
    old = g.session.to_snapshot()
    old["format"] = 1
    del old["next_team"]  # format 1 had no counter: it is the highest team id + 1
    assert GameSession.from_snapshot(old) == g.session
    old["format"] = 4
    with pytest.raises(ValueError, match="unknown snapshot format"):
        GameSession.from_snapshot(old)


def test_next_round_names_the_round_the_next_step_starts() -> None:
    g = Game()
    joined(g, "A")
    assert g.session.next_round == 0  # the lobby: round 0 comes first
    seen: list[int] = []
    events = g.do(Start())
    for _ in range(200):  # bounded: the quiz has a handful of steps
        if g.session.phase is Phase.FINISHED:
            break
        if g.session.phase is Phase.QUESTION_OPEN:
            events = finish_question(g)
            continue
        expected = g.session.next_round
        events = g.do(Next())
        started = [e.round for e in events if isinstance(e, ev.RoundStarted)]
        assert started == ([] if expected is None else [expected])
        seen += started
    assert g.session.phase is Phase.FINISHED
    assert seen == list(range(1, len(g.session.quiz.rounds)))  # every later round, once
    assert g.session.next_round is None


def test_the_question_deadline_outlives_the_open_phase() -> None:
    """Issue 24.4: a view built after the question closed shows the deadline its players were
    given (as announced, extensions and unpauses included), not a placeholder."""
    g = Game()
    joined(g, "A")
    to_question(g, 1)
    opened = g.session.question_deadline
    assert opened is not None and opened == g.session.next_deadline
    g.do(Extend(5))
    assert g.session.question_deadline == opened + 5
    g.now += 3
    g.do(Pause())
    assert g.session.question_deadline == opened + 5  # paused: remaining says the rest
    g.now += 100
    (resumed, *_) = g.do(Unpause())
    assert isinstance(resumed, ev.Resumed) and resumed.deadline is not None
    assert g.session.question_deadline == resumed.deadline
    g.do(CloseQuestion())
    assert g.session.next_deadline is None
    assert g.session.question_deadline == resumed.deadline
    g.do(Reveal())
    assert g.session.question_deadline == resumed.deadline
    assert round_trip(g.session).question_deadline == resumed.deadline
    g.do(Next())
    assert g.session.phase is not Phase.QUESTION_OPEN or (
        g.session.question_deadline == g.session.next_deadline)


def test_a_format_2_snapshot_restores_the_running_deadline() -> None:
    g = Game()
    joined(g, "A")
    to_question(g, 1)
    old = g.session.to_snapshot()
    old["format"] = 2
    del old["question_deadline"]  # format 2 kept only the running deadline
    assert GameSession.from_snapshot(old) == g.session


def test_a_joker_on_a_round_without_jokers_is_invalid_command() -> None:
    """Issue 19.8, settled: the code SPEC section 8 (`joker`) lists for a round whose `joker`
    flag is false."""
    g = Game()
    (alice,) = joined(g, "Alice")
    assert not g.session.quiz.rounds[2].joker
    g.refuse(PlayJoker(alice, 2), ErrorCode.INVALID_COMMAND)
    g.refuse(PlayJoker(alice, 9), ErrorCode.UNKNOWN_ROUND)


# --- adding a round (issue 21 point 3: the game owns every change to a game) -----------------

EXTRA_ROUND: dict[str, Any] = {"title": "Bonus", "items": [
    {"kind": "truefalse", "prompt": "Added?", "answer": True},
    {"kind": "single", "prompt": "Which?", "choices": ["a", "b"], "answer": "a"}]}


def test_adding_a_round_in_the_lobby_is_a_command_with_its_event() -> None:
    g = Game()
    joined(g, "A")
    g.do(PlayJoker(participant=1, round=1))
    before = len(g.session.quiz.questions)
    events = g.do(AddRound(round=EXTRA_ROUND))
    assert len(events) == 1 and isinstance(events[0], ev.RoundAdded)
    added = events[0]
    assert (added.round, added.title, added.questions) == (4, "Bonus", 2)
    assert [i["prompt"] for i in added.data["items"]] == ["Added?", "Which?"]
    assert len(g.session.quiz.questions) == before + 2
    assert [g.session.question_state(q) for q in (before, before + 1)] == [QState.PENDING] * 2
    assert g.session.joker_of(1) == 1  # what was placed keeps its round
    assert round_trip(g.session) == g.session  # the snapshot holds the quiz as played
    # The added questions are played like any other: the last two steps of the program.
    g.do(Start())
    for _ in range(40):
        if g.session.phase is Phase.QUESTION_OPEN and g.session.current_question == before:
            break
        g.do(Skip() if g.session.phase in (Phase.QUESTION_OPEN, Phase.QUESTION_CLOSED)
             else Next())
    assert g.session.current_question == before
    assert g.session.question_view(before).prompt == "Added?"


def test_a_round_is_added_in_the_lobby_only_and_a_bad_one_changes_nothing() -> None:
    g = Game()
    joined(g, "A")
    g.refuse(AddRound(round={"title": "Empty", "items": []}), ErrorCode.INVALID_COMMAND)
    g.refuse(AddRound(round={"items": [{"kind": "dance"}]}), ErrorCode.INVALID_COMMAND)
    g.do(Start())
    g.refuse(AddRound(round=EXTRA_ROUND), ErrorCode.WRONG_PHASE)
