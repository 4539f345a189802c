"""Random sequences of host and player commands, with the session's invariants checked after
every step (hypothesis ``RuleBasedStateMachine``).

Invariants:
- a refused command changes nothing (the whole snapshot is compared);
- every accepted answer was accepted while its question was open and before its deadline, and
  a duplicate request repeats the original acceptance exactly;
- the answers the session holds are exactly the last accepted answer per (question, scorer):
  one per player (solo) or team (team mode), never two, never lost;
- the running totals equal the totals recomputed from scratch, and equal the last total each
  participant was told through ``ScoresChanged``;
- standings are ranked consistently with scores (1, 2, 2, 4);
- snapshot -> JSON -> restore gives an equal session.
"""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import strategies
from gamekit import RIGHT, T0, WRONG, make_quiz
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pubquiz_engine.errors import Rejected
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
    Reveal,
    SessionOptions,
    ShowLeaderboard,
    Skip,
    Standing,
    Start,
    SubmitAnswer,
    Unpause,
)
from pubquiz_engine.game import events as ev
from pubquiz_engine.game.commands import Command
from pubquiz_engine.game.matching import closest_winners, evaluate, is_closest
from pubquiz_engine.game.scoring import award

QUIZ = make_quiz()


def _right(q: int) -> Any:
    """A right answer to question ``q``; the rounds ``add_round`` appends are true/false."""
    return RIGHT[q] if q < len(RIGHT) else True


def _wrong(q: int) -> Any:
    return WRONG[q] if q < len(WRONG) else False
NAMES = ["Ann", "ann", "\u0430nn", "Bob", "Cid", "Dee", "Eve", "Fay"]
TEAMS = [None, "Reds", "reds", "Blues", "Greens"]
WHO = st.integers(min_value=0, max_value=1000)  # picks a participant, or now and then a stranger


class GameMachine(RuleBasedStateMachine):
    session: GameSession

    @initialize(
        mode=st.sampled_from(list(Mode)), all_answered=st.booleans(), bonus=st.booleans(),
        players=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TEAMS)), min_size=1,
                         max_size=5),
        jokers=st.lists(st.tuples(WHO, st.integers(0, 3)), max_size=4),
    )
    def setup(
        self, mode: Mode, all_answered: bool, bonus: bool, players: list[tuple[str, str | None]],
        jokers: list[tuple[int, int]],
    ) -> None:
        options = SessionOptions(mode=mode, close_when_all_answered=all_answered,
                                 max_participants=12, max_team_size=4, speed_bonus=bonus)
        self.session = GameSession(QUIZ, options)
        self.now = T0
        self.rid = 0
        self.steps = 0
        self.rids: dict[int, list[int]] = {}
        self.first: dict[tuple[int, int], ev.AnswerAccepted] = {}  # (participant, rid)
        self.last: dict[tuple[int, int], ev.AnswerAccepted] = {}  # (question, scorer)
        self.told: dict[int, int] = {}  # participant -> total last reported
        # What the events said, for an independent recount of the scores (the oracle).
        self.jokers: dict[int, int] = {}  # scorer -> round
        self.marks: dict[tuple[int, int], bool] = {}  # (question, scorer) -> correct
        self.revealed: set[int] = set()
        self.skipped: set[int] = set()
        self.stakes: dict[tuple[int, int], int] = {}  # (round, scorer) -> amount
        self.adjusted: dict[int, int] = {}  # scorer -> sum of adjustments
        for i, (name, team) in enumerate(players):
            # A few players who certainly get in, then the drawn ones (which may collide).
            self.run(Join(f"Player {i}", ["Reds", "Blues"][i % 2]))
            self.run(Join(name, team))
        for who, rnd in jokers:  # jokers are played in the lobby, before the first round
            self.run(PlayJoker(self.pid(who), rnd))

    def pid(self, who: int) -> int:
        """A participant id: one of the joined (kicked and left ones included) or a stranger."""
        ids = sorted(self.session.participants)
        if not ids or who % 13 == 12:
            return 99
        return ids[who % len(ids)]

    # --- the one way commands go in --------------------------------------------------------
    def run(self, command: Command) -> None:
        self.steps += 1
        s = self.session
        before = s.to_snapshot()
        phase, question, deadline = s.phase, s.current_question, s.next_deadline
        try:
            events = s.apply(command, self.now)
        except Rejected:
            assert s.to_snapshot() == before, f"{command} was refused but changed the state"
            return
        for event in events:
            if isinstance(event, ev.AnswerAccepted):
                self.check_answer(event, phase, question, deadline)
            self.observe(event)

    def check_answer(
        self, event: ev.AnswerAccepted, phase: Phase, question: int | None,
        deadline: float | None,
    ) -> None:
        key = (event.participant, event.request_id)
        if event.duplicate:
            # A resend repeats the latest acceptance of its rid (same question and value).
            assert event == attrs.evolve(self.first[key], duplicate=True)
            return
        earlier = self.first.get(key)
        # A reused rid is applied only as the new answer it is (issue 16.1): never acked as a
        # duplicate of a different one, never dropped.
        assert earlier is None or (earlier.question, earlier.value) != (event.question,
                                                                         event.value)
        # Accepted only while its question is open, and never after the deadline.
        assert event.question == question
        assert phase is Phase.QUESTION_OPEN  # a pause refuses answers
        assert deadline is None or event.at <= deadline
        self.first[key] = event
        scorer = event.team if self.session.options.mode is Mode.TEAM else event.participant
        assert scorer is not None
        previous = self.last.get((event.question, scorer))
        assert event.revision == (1 if previous is None else previous.revision + 1)
        self.last[(event.question, scorer)] = event
        self.rids.setdefault(event.participant, []).append(event.request_id)

    def scorer(self, participant: int, team: int | None) -> int:
        if self.session.options.mode is Mode.TEAM:
            assert team is not None
            return team
        return participant

    def observe(self, event: ev.Event) -> None:
        if isinstance(event, ev.ScoresChanged):
            for pid, total in event.scores:
                self.told[pid] = total
        elif isinstance(event, ev.JokerPlayed):
            self.jokers[self.scorer(event.participant, event.team)] = event.round
        elif isinstance(event, ev.AnswerMarked):
            key = (event.question, self.scorer(event.participant, event.team))
            self.marks[key] = event.correct
        elif isinstance(event, ev.Revealed):
            self.revealed.add(event.question)
        elif isinstance(event, ev.QuestionSkipped):
            self.skipped.add(event.question)
        elif isinstance(event, ev.WagerPlaced):
            key = (event.round, self.scorer(event.participant, event.team))
            if event.amount:
                self.stakes[key] = event.amount
            else:
                self.stakes.pop(key, None)
        elif isinstance(event, ev.ScoreAdjusted):
            scorer = self.scorer(event.participant, event.team)
            self.adjusted[scorer] = self.adjusted.get(scorer, 0) + event.delta

    def oracle_totals(self) -> dict[int, int]:
        """Every total recomputed from the events alone, with the documented formula."""
        quiz = self.session.quiz  # with any round added in the lobby
        totals: dict[int, int] = dict(self.adjusted)
        fractions: dict[tuple[int, int], float] = {}
        bonus_on = self.session.options.speed_bonus
        for q in self.revealed:
            question = quiz.questions[q]
            if question.tiebreak:
                continue
            r = quiz.question_round[q]
            answers = {s: a for (qq, s), a in self.last.items() if qq == q}
            winners = closest_winners(question, {s: a.value for s, a in answers.items()}) if (
                is_closest(question)) else set()
            for s, a in answers.items():
                if (q, s) in self.marks:
                    fraction = 1.0 if self.marks[(q, s)] else 0.0
                elif is_closest(question):
                    fraction = 1.0 if s in winners else 0.0
                else:
                    fraction = evaluate(question, a.value)
                fractions[(q, s)] = fraction
                totals[s] = totals.get(s, 0) + award(
                    points=question.points, fraction=fraction,
                    max_bonus=question.speed_bonus if bonus_on else 0, elapsed=a.elapsed,
                    time_limit=question.time_limit, multiplier=quiz.rounds[r].multiplier,
                    joker=self.jokers.get(s) == r)
        for (r, s), stake in self.stakes.items():
            qs = quiz.round_questions[r]
            played = [q for q in qs if q in self.revealed]
            if all(q in self.revealed or q in self.skipped for q in qs) and played:
                won = all(fractions.get((q, s), 0.0) >= 1.0 for q in played)
                totals[s] = totals.get(s, 0) + (stake if won else -stake)
        return {s: v for s, v in totals.items() if v}

    # --- time ------------------------------------------------------------------------------
    @rule(dt=st.one_of(st.floats(min_value=0, max_value=3), st.floats(min_value=0, max_value=40)))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(offset=st.sampled_from([-0.5, -0.001, 0.0, 0.001, 0.5]), who=WHO)
    def answer_at_the_deadline(self, offset: float, who: int) -> None:
        """Jump to just before, at, or just after the deadline and answer: the edge that
        rival apps get wrong."""
        deadline = self.session.next_deadline
        q = self.session.current_question
        if deadline is not None and q is not None:
            self.now = max(self.now, deadline + offset)
            self.rid += 1
            self.run(SubmitAnswer(self.pid(who), q, _right(q), self.rid))

    @rule()
    def tick(self) -> None:
        deadline, q = self.session.next_deadline, self.session.current_question
        events = self.session.tick(self.now)
        if deadline is not None and self.now >= deadline:
            assert events == [ev.QuestionClosed(q, "deadline")]  # type: ignore[arg-type]
            assert self.session.phase is Phase.QUESTION_CLOSED
        else:
            assert events == []

    # --- players ---------------------------------------------------------------------------
    @rule(name=st.one_of(st.sampled_from(NAMES), strategies.game_names(12)),
          team=st.sampled_from(TEAMS))
    def join(self, name: str, team: str | None) -> None:
        self.run(Join(name, team))

    @rule(who=WHO, kind=st.sampled_from(["right", "right", "wrong", "other", "replay"]),
          other=strategies.game_answer_values(), pick=st.integers(0, 1000),
          stale=st.integers(0, 9))
    def submit(self, who: int, kind: str, other: Any, pick: int, stale: int) -> None:
        pid = self.pid(who)
        q = self.session.current_question
        if q is None or stale == 0:
            q = pick % len(self.session.quiz.questions)
        if kind == "replay" and self.rids.get(pid):
            rid = self.rids[pid][pick % len(self.rids[pid])]
        else:
            self.rid += 1
            rid = self.rid
        value = {"right": _right(q), "wrong": _wrong(q)}.get(kind, other)
        self.run(SubmitAnswer(pid, q, value, rid))

    @rule(who=WHO, right=st.booleans())
    def submit_plain(self, who: int, right: bool) -> None:
        q = self.session.current_question
        if q is not None:
            self.rid += 1
            self.run(SubmitAnswer(self.pid(who), q, (_right if right else _wrong)(q), self.rid))

    @rule(rng=st.randoms(use_true_random=False))
    def burst(self, rng: random.Random) -> None:
        """Everyone answers at once, in any order, some twice, some retrying a request."""
        q = self.session.current_question
        if q is None:
            return
        pids = sorted(self.session.participants)
        rng.shuffle(pids)
        for pid in pids + pids[: rng.randint(0, len(pids))]:
            if self.rids.get(pid) and rng.random() < 0.2:
                rid = rng.choice(self.rids[pid])  # a retry of an earlier request
            else:
                self.rid += 1
                rid = self.rid
            value = (_right if rng.random() < 0.6 else _wrong)(q)
            self.run(SubmitAnswer(pid, q, value, rid))
            self.now += rng.random() * 0.5

    @rule(n=st.integers(1, 6))
    def crowd_joins(self, n: int) -> None:
        for _ in range(n):
            self.run(Join(f"Crowd {self.steps}", f"Table {self.steps % 3}"))

    @rule(who=WHO, rnd=st.integers(-1, 4))
    def joker(self, who: int, rnd: int) -> None:
        self.run(PlayJoker(self.pid(who), rnd))

    @rule(who=WHO, rnd=st.sampled_from([2, 2, 2, 0, 4]), amount=st.integers(-1, 6))
    def wager(self, who: int, rnd: int, amount: int) -> None:
        self.run(PlaceWager(self.pid(who), rnd, amount))

    @rule(who=WHO)
    def leave(self, who: int) -> None:
        self.run(Leave(self.pid(who)))

    # --- the host (advancing commands weighted by having several rules) -----------------------
    @rule()
    def start(self) -> None:
        self.run(Start())

    @rule()
    def next(self) -> None:
        self.run(Next())

    def advance(self) -> None:
        """What a sensible host does next (the random host rules explore the rest)."""
        phase = self.session.phase
        if phase is Phase.LOBBY:
            self.run(Start())
        elif phase is Phase.QUESTION_OPEN:
            self.run(CloseQuestion())
        elif phase is Phase.QUESTION_CLOSED:
            self.run(Reveal())
        elif phase is Phase.PAUSED:
            self.run(Unpause())
        elif phase is not Phase.FINISHED:
            self.run(Next())

    @rule()
    def host_advances(self) -> None:
        self.advance()

    @rule(n=st.integers(1, 12))
    def host_runs_through(self, n: int) -> None:
        for _ in range(n):
            self.advance()

    @rule()
    def close(self) -> None:
        self.run(CloseQuestion())

    @rule()
    def reveal(self) -> None:
        self.run(Reveal())


    @rule(seconds=st.one_of(st.floats(min_value=-5, max_value=700), st.integers(0, 30)))
    def extend(self, seconds: float) -> None:
        self.run(Extend(seconds))

    @rule()
    def pause(self) -> None:
        self.run(Pause())

    @rule()
    def resume(self) -> None:
        self.run(Unpause())

    @rule()
    def skip(self) -> None:
        self.run(Skip())

    @rule(rnd=st.one_of(st.none(), st.integers(-1, 4)))
    def leaderboard(self, rnd: int | None) -> None:
        self.run(ShowLeaderboard(rnd))

    @rule(q=st.integers(0, 8), who=WHO, correct=st.booleans())
    def mark(self, q: int, who: int, correct: bool) -> None:
        self.run(Mark(q, self.pid(who), correct))

    @rule(pick=st.integers(0, 1000), correct=st.booleans())
    def mark_an_answer(self, pick: int, correct: bool) -> None:
        """The host overrides an answer that exists (the usual case)."""
        if self.first:
            answer = sorted(self.first.values(), key=lambda a: (a.question, a.participant))
            chosen = answer[pick % len(answer)]
            self.run(Mark(chosen.question, chosen.participant, correct))

    @rule(who=WHO, delta=st.integers(-5, 5), reason=st.sampled_from(["x", "bonus", ""]))
    def adjust(self, who: int, delta: int, reason: str) -> None:
        self.run(AdjustScore(self.pid(who), delta, reason))

    # A round added in the lobby (refused once play started, or when it is not valid): the
    # oracle and the invariants read the session's quiz, so its questions are played like any.
    @precondition(lambda self: len(self.session.quiz.rounds) < 7)
    @rule(valid=st.booleans(), points=st.integers(1, 3))
    def add_round(self, valid: bool, points: int) -> None:
        items = ([{"kind": "truefalse", "prompt": f"Added {points}?", "answer": True,
                   "points": points}] if valid else [])
        self.run(AddRound(round={"title": "Added", "items": items}))

    @rule(who=WHO)
    def kick(self, who: int) -> None:
        self.run(Kick(self.pid(who)))

    @precondition(lambda self: self.steps > 60)
    @rule()
    def end(self) -> None:
        self.run(End())

    # --- invariants ------------------------------------------------------------------------
    @invariant()
    def answers_are_exactly_the_last_accepted(self) -> None:
        s = self.session
        held = {(q, scorer): a for q in range(len(self.session.quiz.questions))
                for scorer, a in s.answers(q).items()}
        assert held.keys() == self.last.keys()
        for key, a in held.items():
            last = self.last[key]
            assert (a.participant, a.value, a.revision, a.request_id, a.at) == (
                last.participant, last.value, last.revision, last.request_id, last.at)

    @invariant()
    def totals_match_a_recount_and_what_was_told(self) -> None:
        s = self.session
        assert {k: v for k, v in s.totals.items() if v} == s.recompute_scores()
        assert s.recompute_scores() == self.oracle_totals()
        for pid, total in self.told.items():
            assert s.score_of(pid) == total

    @invariant()
    def ranks_are_consistent_with_scores(self) -> None:
        s = self.session
        for rnd in (None, 0, 1, 2, 3):
            for teams in (False, True):
                check_ranks(s.standings(round_index=rnd, teams=teams))
        for p in s.participants.values():
            line = s.rank_of(p.id)
            assert (line is None) == p.kicked
            if line is not None:
                assert line.score == s.score_of(p.id)

    @invariant()
    def nothing_names_a_forgotten_player_or_team(self) -> None:
        s = self.session
        data = s.to_snapshot()
        people, teams = set(s.participants), set(s.teams)
        scorers = teams if s.options.mode is Mode.TEAM else people
        assert {p.team_id for p in s.participants.values()} - {None} <= teams
        assert {row[2] for row in data["answers"]} <= people
        assert {row[1] for row in data["answers"]} <= scorers
        assert {row[1] for row in data["adjustments"]} <= people
        assert {row[0] for row in data["adjustments"]} <= scorers
        assert {row[0] for row in data["jokers"]} | {row[1] for row in data["wagers"]} <= scorers
        assert {row[0] for row in data["totals"]} <= scorers
        assert max(people, default=0) < s.next_participant_id
        if data["step"] == -1:  # lobby leavers stay only when something names them
            named = {row[1] for row in data["adjustments"]}
            if s.options.mode is Mode.SOLO:
                named |= {row[0] for row in data["jokers"]} | {row[1] for row in data["wagers"]}
            else:  # a team's score names every member (ScoresChanged lists them)
                scored = {row[0] for row in data["totals"]}
                named |= {p.id for p in s.participants.values() if p.team_id in scored}
            assert {p.id for p in s.participants.values() if p.left} <= named

    @invariant()
    def snapshot_round_trips(self) -> None:
        data = json.loads(json.dumps(self.session.to_snapshot(), allow_nan=False))
        assert GameSession.from_snapshot(data) == self.session

    @invariant()
    def deadline_only_while_open(self) -> None:
        s = self.session
        assert (s.next_deadline is not None) == (s.phase is Phase.QUESTION_OPEN)


def check_ranks(lines: list[Standing]) -> None:
    for i, line in enumerate(lines):
        if i == 0:
            assert line.rank == 1
            continue
        prev = lines[i - 1]
        assert line.score <= prev.score
        if line.rank == prev.rank:
            assert line.score == prev.score
        else:
            assert line.rank == i + 1
    assert len({line.id for line in lines}) == len(lines)


GameMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGameMachine = GameMachine.TestCase
