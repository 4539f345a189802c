"""The session state machine: one live quiz, its participants, answers and scores.

Rules this module keeps (they are what the property tests hammer):

1. **One entry point per cause.** ``apply(command, now)`` for commands, ``tick(now)`` for the
   clock. Both return the events they caused, in order. Nothing here reads a clock, does I/O or
   draws random numbers: ``now`` (wall-clock seconds) comes from the caller.
2. **Transitions live in one table** (``_TRANSITIONS``): which phases accept which command and
   which handler runs it. A command outside its phases is refused before any handler runs.
3. **Check, then change.** Every handler first checks everything (membership, deadline,
   limits, value) and only then mutates. A refused command raises ``Rejected(code, message)``
   and leaves the state exactly as it was (tests compare whole snapshots around refusals).
4. **Every accepted answer counts exactly once.** An answer is accepted only while its
   question is open (phase ``question_open``; a pause refuses answers) and ``now <= deadline``;
   a retry with the same ``(participant, request_id)``, question and value returns the original
   acceptance marked ``duplicate`` and changes nothing; the same request id with another
   question or value is a new submission (a client that restarted its counter), accepted or
   refused like any other, so nothing is ever acknowledged without being applied. The latest
   acceptance of a request id is the one a retry repeats. One answer per scorer (player in
   solo mode, team in team mode) per question: a later answer replaces the earlier one, and
   the last counts.
5. **Scores are awarded at the reveal and kept incrementally.** The hot path (``SubmitAnswer``)
   is O(1) apart from validating the value: it never touches scores or standings. A reveal or
   a mark re-scores one question (O(its answers)) and applies the difference to the totals, so
   ``totals == recompute_scores()`` at all times. Standings are sorted on demand, O(n log n),
   and cached until the next command that can change them. How much an answer or a stake
   earns is ``game.awards``; this module decides when.
6. **The state is plain data.** ``to_snapshot()`` gives dicts, lists, strs, ints, floats, bools
   and None only (JSON- and msgpack-safe) and ``from_snapshot`` restores an equal session
   (``==`` compares the whole state, derived indexes included). ``SNAPSHOT_FORMAT`` is bumped
   whenever the layout changes; ``from_snapshot`` refuses versions it does not know. The
   encoding is ``game.snapshot``; the values the state is made of are ``game.values``.

Leaving: a player who leaves once play has started keeps their line (marked left); one who
leaves the lobby with nothing naming them (no joker, wager or adjustment; in team mode no score
of their team, which is reported to every member by name) is forgotten, and so is a team left
empty in the lobby, so that lobby churn holds no memory. Ids are never reused.

Scorers: in solo mode each participant scores for themself (id = participant id); in team mode
the team scores (id = team id, 1, 2, ... in order of creation, stable for the session). Teams
exist in solo mode too, as labels: team standings then sum their members' scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

import attrs

from pubquiz_engine.errors import ErrorCode, QuizFileError, Rejected
from pubquiz_engine.game import awards, snapshot
from pubquiz_engine.game import commands as c
from pubquiz_engine.game import events as e
from pubquiz_engine.game.loader import MAX_TIME_LIMIT, load_quiz_data, quiz_to_data
from pubquiz_engine.game.matching import closest_winners, validate_answer
from pubquiz_engine.game.names import NAME_MAX, TEAM_MAX, clean_name, skeleton
from pubquiz_engine.game.quiz import QuestionKind, Quiz, Slide
from pubquiz_engine.game.scoring import Entry, Standing, rank
from pubquiz_engine.game.snapshot import SNAPSHOT_FORMAT
from pubquiz_engine.game.values import (
    Adjustment,
    Answer,
    CorrectView,
    Mode,
    Participant,
    Phase,
    QState,
    QuestionView,
    SessionOptions,
    Step,
    Team,
)

MAX_EXTEND = 600.0  # seconds one Extend may add
MAX_ADJUST = 100_000  # points one AdjustScore may add or remove
MAX_REASON = 200


def _program(quiz: Quiz) -> tuple[Step, ...]:
    steps: list[Step] = []
    q = 0
    for r, rnd in enumerate(quiz.rounds):
        for i, item in enumerate(rnd.items):
            if isinstance(item, Slide):
                steps.append(Step("slide", r, i))
            else:
                steps.append(Step("question", r, q))
                q += 1
        steps.append(Step("summary", r, -1))
    return tuple(steps)


def _reject(code: ErrorCode, message: str) -> Rejected:
    return Rejected(code, message)


#: The phase rule's constant refusals of an answer (SPEC section 8), built once: ``submit``
#: returns them and nothing raises them.
_CLOSED: Final = Rejected(ErrorCode.QUESTION_CLOSED, "that question is closed")
_TIME_UP: Final = Rejected(ErrorCode.QUESTION_CLOSED, "time is up")
_PAUSED: Final = Rejected(ErrorCode.WRONG_PHASE, "the question is paused")
_NONE_OPEN: Final = Rejected(ErrorCode.WRONG_PHASE, "no question is open")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ALL = frozenset(Phase)
_LIVE = _ALL - {Phase.FINISHED}
_BETWEEN = frozenset({Phase.SLIDE, Phase.REVEALED, Phase.LEADERBOARD, Phase.ROUND_SUMMARY})
_QUESTION = frozenset({Phase.QUESTION_OPEN, Phase.QUESTION_CLOSED, Phase.PAUSED})

Handler = Callable[["GameSession", Any, float], list[e.Event]]


class GameSession:
    """One live quiz. See the module docstring for the rules it keeps."""

    # Rule 2: the transition table. command type -> (phases accepting it, handler).
    # SubmitAnswer is accepted in every phase at this level so that a retry of an accepted
    # answer is answered as a duplicate even after the question closed; its handler then
    # applies the open-question rule itself.
    _TRANSITIONS: ClassVar[dict[type, tuple[frozenset[Phase], str]]] = {
        c.Join: (_LIVE, "_on_join"),
        c.SubmitAnswer: (_ALL, "_on_submit"),
        c.PlayJoker: (_LIVE, "_on_joker"),
        c.PlaceWager: (_LIVE, "_on_wager"),
        c.Leave: (_ALL, "_on_leave"),
        c.Start: (frozenset({Phase.LOBBY}), "_on_start"),
        c.Next: (_BETWEEN, "_on_next"),
        # In ``paused`` these three act on the phase the pause came from (see _unpause_into).
        c.CloseQuestion: (frozenset({Phase.QUESTION_OPEN, Phase.PAUSED}), "_on_close"),
        c.Extend: (frozenset({Phase.QUESTION_OPEN, Phase.PAUSED}), "_on_extend"),
        c.Pause: (_LIVE - {Phase.PAUSED}, "_on_pause"),
        c.Unpause: (frozenset({Phase.PAUSED}), "_on_unpause"),
        c.AddRound: (frozenset({Phase.LOBBY}), "_on_add_round"),
        c.Reveal: (_QUESTION, "_on_reveal"),
        c.Skip: (_QUESTION, "_on_skip"),
        c.ShowLeaderboard: (_BETWEEN | {Phase.FINISHED}, "_on_leaderboard"),
        c.Mark: (_ALL, "_on_mark"),
        c.AdjustScore: (_ALL, "_on_adjust"),
        c.Kick: (_LIVE, "_on_kick"),
        c.End: (_LIVE, "_on_end"),
    }

    def __init__(self, quiz: Quiz, options: SessionOptions | None = None) -> None:
        self.options = options if options is not None else SessionOptions()
        self._set_quiz(quiz)
        # Progress and the clock.
        self._phase = Phase.LOBBY
        self._resume_phase: Phase | None = None  # the phase a pause returns to
        self._step = -1  # index into _steps; -1 in the lobby
        self._deadline: float | None = None  # the open, running question's deadline
        # The current question's deadline as last announced (question, extended, unpaused
        # events): it stays after the question closes, so a late view shows the real one.
        self._question_deadline: float | None = None
        self._remaining: float | None = None  # seconds left while paused on an open question
        self._elapsed_base = 0.0  # running seconds of the open question before _running_since
        self._running_since: float | None = None
        self._finish_reason: str | None = None
        # Membership.
        self._participants: dict[int, Participant] = {}
        self._teams: dict[int, Team] = {}
        self._next_id = 1
        self._next_team = 1
        # Answers and scoring.
        self._qstate: list[QState] = [QState.PENDING] * len(quiz.questions)
        self._answers: list[dict[int, Answer]] = [{} for _ in quiz.questions]
        self._seen: dict[tuple[int, int], e.AnswerAccepted] = {}
        self._marks: dict[int, dict[int, bool]] = {}
        self._awards: dict[int, dict[int, tuple[float, int]]] = {}  # q -> scorer -> (frac, pts)
        self._jokers: dict[int, int] = {}  # scorer -> round
        self._wagers: dict[int, dict[int, int]] = {}  # round -> scorer -> stake
        self._wager_results: dict[int, dict[int, int]] = {}  # round -> scorer -> +/- stake
        self._adjustments: list[Adjustment] = []
        self._totals: dict[int, int] = {}  # scorer -> total
        self._tiebreak: dict[int, float] = {}  # scorer -> distance to the tie-break answer
        self._rebuild_indexes()

    def _set_quiz(self, quiz: Quiz) -> None:
        """The quiz and what is derived from it alone: the program of steps, where each round
        starts, the tie-break question."""
        self.quiz = quiz
        self._steps = _program(quiz)
        first: dict[int, int] = {}
        for i, step in enumerate(self._steps):
            first.setdefault(step.round, i)
        self._round_first_step = tuple(first[r] for r in range(len(quiz.rounds)))
        self._tiebreak_q = next((i for i, q in enumerate(quiz.questions) if q.tiebreak), None)

    def _rebuild_indexes(self) -> None:
        """Derived indexes: rebuilt from the state above (after a restore), then kept in step."""
        self._names: dict[str, int] = {}  # name skeleton -> participant (not left)
        self._team_keys: dict[str, int] = {}  # team skeleton -> team id
        self._members: dict[int, list[int]] = {t: [] for t in self._teams}
        self._team_active: dict[int, int] = dict.fromkeys(self._teams, 0)  # active members
        self._active_players = 0
        self._active_teams = 0  # teams with an active member
        for t in self._teams.values():
            self._team_keys[skeleton(t.name)] = t.id
        for p in self._participants.values():
            if not p.left:
                self._names[skeleton(p.name)] = p.id
            if p.team_id is not None:
                self._members[p.team_id].append(p.id)
            if p.active:
                self._count_active(p.team_id, +1)
        self._answered = self._count_answered()
        self._cache: dict[tuple[int | None, bool], tuple[list[Standing], dict[int, Standing]]] = {}

    # ------------------------------------------------------------------ public read-only view
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def current_question(self) -> int | None:
        """The global index of the question being played or just played, if any."""
        if 0 <= self._step < len(self._steps):
            step = self._steps[self._step]
            if step.kind == "question":
                return step.ref
        return None

    @property
    def current_slide(self) -> Slide | None:
        """The slide on screen: in phase ``slide``, or paused on one; None otherwise."""
        shown = self._phase is Phase.SLIDE or (
            self._phase is Phase.PAUSED and self._resume_phase is Phase.SLIDE
        )
        if shown and 0 <= self._step < len(self._steps):
            step = self._steps[self._step]
            if step.kind == "slide":
                item = self.quiz.rounds[step.round].items[step.ref]
                return item if isinstance(item, Slide) else None
        return None

    @property
    def current_round(self) -> int | None:
        if 0 <= self._step < len(self._steps):
            return self._steps[self._step].round
        return None

    @property
    def next_round(self) -> int | None:
        """The round that the next step starts, when the next step starts a round (None when
        it continues the current round, or the quiz has no next step)."""
        nxt = self._step + 1
        if nxt >= len(self._steps):
            return None
        r = self._steps[nxt].round
        if self._step >= 0 and self._steps[self._step].round == r:
            return None
        return r

    @property
    def next_deadline(self) -> float | None:
        """When the server's timer should call ``tick`` (None: no timer needed)."""
        return self._deadline if self._phase is Phase.QUESTION_OPEN else None

    @property
    def question_deadline(self) -> float | None:
        """The current question's deadline as last announced (in its ``QuestionOpened``, or a
        later ``TimeExtended`` or ``Resumed``), kept after it closed or was revealed; None
        when no question is current (a slide, the lobby, a skipped question)."""
        return self._question_deadline

    @property
    def remaining(self) -> float | None:
        """Seconds left on a paused open question (None when not paused on one)."""
        return self._remaining

    @property
    def finish_reason(self) -> str | None:
        return self._finish_reason

    @property
    def participants(self) -> Mapping[int, Participant]:
        return MappingProxyType(self._participants)

    @property
    def teams(self) -> Mapping[int, Team]:
        return MappingProxyType(self._teams)

    @property
    def next_participant_id(self) -> int:
        """The id the next join gets (ids are never reused, even of players forgotten)."""
        return self._next_id

    @property
    def totals(self) -> Mapping[int, int]:
        """scorer id -> total (participants in solo mode, teams in team mode; absent = 0)."""
        return MappingProxyType(self._totals)

    @property
    def adjustments(self) -> tuple[Adjustment, ...]:
        return tuple(self._adjustments)

    def question_state(self, question: int) -> QState:
        return self._qstate[question]

    def answers(self, question: int) -> Mapping[int, Answer]:
        """The answers that currently count for ``question``, by scorer id."""
        return MappingProxyType(self._answers[self._check_question(question)])

    def scorer_of(self, participant: int) -> int:
        """The id that scores for ``participant``: itself in solo mode, its team in team mode."""
        p = self._participants[participant]
        if self.options.mode is Mode.TEAM:
            assert p.team_id is not None
            return p.team_id
        return p.id

    def score_of(self, participant: int) -> int:
        return self._totals.get(self.scorer_of(participant), 0)

    def joker_of(self, participant: int) -> int | None:
        """The round the participant's (team's) joker is on, if one was played."""
        return self._jokers.get(self.scorer_of(participant))

    def stakes_of(self, participant: int) -> dict[int, int]:
        """The participant's (team's) wagers: round -> points staked (rounds with a stake)."""
        scorer = self.scorer_of(participant)
        return {r: w[scorer] for r, w in sorted(self._wagers.items()) if scorer in w}

    def outcome_of(self, participant: int, question: int) -> tuple[bool, int] | None:
        """``(fully_right, points)`` of the participant's (team's) counted answer to a revealed
        question, or None if the question is not revealed or they did not answer it. Partial
        credit gives ``fully_right=False`` with the points it earned; host marks included."""
        if not _is_int(question) or not 0 <= question < len(self.quiz.questions):
            return None
        q = question
        if participant not in self._participants or self._qstate[q] is not QState.REVEALED:
            return None
        scorer = self.scorer_of(participant)
        if scorer not in self._answers[q]:
            return None
        fraction, points = self._awards.get(q, {}).get(scorer, (0.0, 0))
        if self.quiz.questions[q].tiebreak:  # scores nothing; "right" means closest
            winners = closest_winners(self.quiz.questions[q],
                                      {s: a.value for s, a in self._answers[q].items()})
            return scorer in winners, 0
        return fraction >= 1.0, points

    def active_count(self) -> int:
        """How many players (solo) or teams with an active member (team mode) may answer."""
        if self.options.mode is Mode.TEAM:
            return self._active_teams
        return self._active_players

    def _count_active(self, team_id: int | None, delta: int) -> bool:
        """A participant became active (+1) or stopped being active (-1). O(1): the hot path
        reports ``active_count()`` with every first answer. Returns whether the participant's
        *scorer* changed between active and not (always in solo mode; in team mode only when
        the team gained its first or lost its last active member)."""
        self._active_players += delta
        flipped = self.options.mode is Mode.SOLO
        if team_id is not None:
            before = self._team_active[team_id]
            self._team_active[team_id] = before + delta
            if (before > 0) != (before + delta > 0):
                self._active_teams += delta
                flipped = True
        return flipped

    # ------------------------------------------------------------------ views for the server
    def _check_question(self, index: Any) -> int:
        if not _is_int(index) or not 0 <= index < len(self.quiz.questions):
            raise _reject(ErrorCode.INVALID_COMMAND, f"no question {index!r}")
        return int(index)

    def question_view(self, index: int) -> QuestionView:
        q = self.quiz.questions[self._check_question(index)]
        r = self.quiz.question_round[index]
        rnd = self.quiz.rounds[r]
        return QuestionView(
            index=index, round=r, round_title=rnd.title, number=self.quiz.number_in_round(index),
            round_size=len(self.quiz.round_questions[r]), total=len(self.quiz.questions),
            kind=q.kind, prompt=q.prompt, choices=q.choices, media=q.media,
            media_type=q.media_type, points=q.points, time_limit=q.time_limit,
            speed_bonus=q.speed_bonus if self.options.speed_bonus else 0,
            multiplier=rnd.multiplier, unit=q.unit, tiebreak=q.tiebreak,
        )

    def correct_view(self, index: int) -> CorrectView:
        q = self.quiz.questions[self._check_question(index)]
        answer = list(q.answer) if isinstance(q.answer, tuple) else q.answer
        return CorrectView(index=index, kind=q.kind, answer=answer, choices=q.choices,
                           explanation=q.explanation)

    def answer_distribution(self, index: int) -> list[int] | None:
        """Counts per choice (single, multiple), ``[true, false]`` (truefalse); else None."""
        q = self.quiz.questions[self._check_question(index)]
        answers = self._answers[index].values()
        if q.kind is QuestionKind.SINGLE:
            counts = [0] * len(q.choices)
            for a in answers:
                counts[a.value] += 1
            return counts
        if q.kind is QuestionKind.MULTIPLE:
            counts = [0] * len(q.choices)
            for a in answers:
                for i in a.value:
                    counts[i] += 1
            return counts
        if q.kind is QuestionKind.TRUEFALSE:
            yes = sum(1 for a in answers if a.value is True)
            return [yes, len(self._answers[index]) - yes]
        return None

    # ------------------------------------------------------------------ standings
    def standings(self, *, round_index: int | None = None, teams: bool = False) -> list[Standing]:
        """Ranked standings (see ``scoring.rank`` for the order and the tie rules).

        ``teams=False``: one line per participant who was not kicked (a player who left after
        the start keeps their line; one who left the lobby is forgotten); in team mode each
        line carries the team's score. ``teams=True``: one line per team (id = team id) with a
        member who was not kicked; in solo mode a team's score is the sum of its members'.
        ``round_index`` ranks one round's points (awards and wager results; host adjustments
        count only overall; no tie-break).
        """
        return self._ranked(round_index, teams)[0]

    def rank_of(
        self, participant: int, *, round_index: int | None = None, teams: bool = False
    ) -> Standing | None:
        """The participant's own line (their team's line with ``teams=True``), or None."""
        p = self._participants.get(participant)
        if p is None:
            return None
        by_id = self._ranked(round_index, teams)[1]
        if teams:
            return by_id.get(p.team_id) if p.team_id is not None else None
        return by_id.get(participant)

    def _ranked(
        self, round_index: int | None, teams: bool
    ) -> tuple[list[Standing], dict[int, Standing]]:
        key = (round_index, teams)
        cached = self._cache.get(key)
        if cached is None:
            lines = rank(self._entries(round_index, teams))
            cached = (lines, {s.id: s for s in lines})
            self._cache[key] = cached
        return cached

    def _scores_by_scorer(self, round_index: int | None) -> dict[int, int]:
        if round_index is None:
            return self._totals
        out: dict[int, int] = {}
        for q in self.quiz.round_questions[round_index]:
            for s, (_, pts) in self._awards.get(q, {}).items():
                out[s] = out.get(s, 0) + pts
        for s, result in self._wager_results.get(round_index, {}).items():
            out[s] = out.get(s, 0) + result
        return out

    def _entries(self, round_index: int | None, teams: bool) -> list[Entry]:
        scores = self._scores_by_scorer(round_index)
        tiebreak: dict[int, float] = self._tiebreak if round_index is None else {}
        team_mode = self.options.mode is Mode.TEAM
        visible = [p for p in self._participants.values() if not p.kicked]
        if not teams:
            out = []
            for p in visible:
                s = p.team_id if team_mode else p.id
                assert s is not None
                out.append(Entry(p.id, p.name, scores.get(s, 0), tiebreak.get(s, math.inf)))
            return out
        team_ids = {p.team_id for p in visible if p.team_id is not None}
        if team_mode:
            return [Entry(t, self._teams[t].name, scores.get(t, 0), tiebreak.get(t, math.inf))
                    for t in team_ids]
        sums: dict[int, int] = dict.fromkeys(team_ids, 0)
        best: dict[int, float] = dict.fromkeys(team_ids, math.inf)
        for p in visible:
            if p.team_id is not None:
                sums[p.team_id] += scores.get(p.id, 0)
                best[p.team_id] = min(best[p.team_id], tiebreak.get(p.id, math.inf))
        return [Entry(t, self._teams[t].name, sums[t], best[t]) for t in team_ids]

    # ------------------------------------------------------------------ entry points
    def apply(self, command: c.Command, now: float) -> list[e.Event]:
        """Apply one command at wall-clock time ``now``; return the events it caused.

        Raises ``Rejected`` (state unchanged) when the rules refuse it.
        """
        entry = self._TRANSITIONS.get(type(command))
        if entry is None:
            raise _reject(ErrorCode.INVALID_COMMAND, f"unknown command {type(command).__name__}")
        phases, handler_name = entry
        if self._phase not in phases:
            # One rule (SPEC section 7): outside its phases a command is ``wrong_phase``; the
            # one more precise code is a join after the end (the session is over for newcomers).
            if self._phase is Phase.FINISHED and type(command) is c.Join:
                raise _reject(ErrorCode.SESSION_ENDED, "the quiz has finished")
            raise _reject(ErrorCode.WRONG_PHASE, f"{type(command).__name__} is not possible "
                          f"during {self._phase.value}")
        handler: Handler = getattr(type(self), handler_name)
        events = handler(self, command, now)
        if type(command) is not c.SubmitAnswer:
            self._cache.clear()  # anything but an answer may move the standings
        return events

    def tick(self, now: float) -> list[e.Event]:
        """The timer: close the open question once its deadline has passed."""
        if (
            self._phase is Phase.QUESTION_OPEN
            and self._deadline is not None
            and now >= self._deadline
        ):
            return self._close("deadline", now)
        return []

    # ------------------------------------------------------------------ membership
    def _on_join(self, cmd: c.Join, now: float) -> list[e.Event]:
        if self._active_players >= self.options.max_participants:
            raise _reject(ErrorCode.SESSION_FULL, "the session is full")
        name = clean_name(cmd.name, limit=NAME_MAX, what="name")
        key = skeleton(name)
        holder = self._names.get(key)
        if holder is not None:
            taken = self._participants[holder].name
            raise _reject(ErrorCode.NAME_TAKEN, f"the name {name!r} is taken (by {taken!r}); "
                          "choose another")
        team_name: str | None = None
        team_id: int | None = None
        if cmd.team is None or (isinstance(cmd.team, str) and not cmd.team.strip()):
            if self.options.mode is Mode.TEAM:
                raise _reject(ErrorCode.INVALID_NAME, "this is a team quiz: give a team name")
        else:
            team_name = clean_name(cmd.team, limit=TEAM_MAX, what="team name")
            team_id = self._team_keys.get(skeleton(team_name))
            if team_id is not None:
                team_name = self._teams[team_id].name  # join the team as it is spelled
                if self._team_active[team_id] >= self.options.max_team_size:
                    raise _reject(ErrorCode.TEAM_FULL, f"team {team_name!r} is full "
                                  f"({self.options.max_team_size} players)")
        # Checks done: change the state.
        if team_name is not None and team_id is None:
            team_id = self._next_team
            self._next_team += 1
            self._teams[team_id] = Team(team_id, team_name)
            self._team_keys[skeleton(team_name)] = team_id
            self._members[team_id] = []
            self._team_active[team_id] = 0
        pid = self._next_id
        self._next_id += 1
        self._participants[pid] = Participant(pid, name, team_name, team_id, now)
        self._names[key] = pid
        if team_id is not None:
            self._members[team_id].append(pid)
        flipped = self._count_active(team_id, +1)
        events: list[e.Event] = [e.ParticipantJoined(pid, name, team_name, team_id, now)]
        return events + self._recount(now, self.scorer_of(pid), flipped, +1)

    def _active_participant(self, pid: Any) -> Participant:
        p = self._participants.get(pid) if _is_int(pid) else None
        if p is None:
            raise _reject(ErrorCode.UNKNOWN_PARTICIPANT, f"no participant {pid!r}")
        if p.kicked:
            raise _reject(ErrorCode.KICKED, "you were removed from this quiz")
        if p.left:
            raise _reject(ErrorCode.NOT_JOINED, "you left this quiz")
        return p

    def _known_participant(self, pid: Any) -> Participant:
        p = self._participants.get(pid) if _is_int(pid) else None
        if p is None:
            raise _reject(ErrorCode.UNKNOWN_PARTICIPANT, f"no participant {pid!r}")
        return p

    def _on_leave(self, cmd: c.Leave, now: float) -> list[e.Event]:
        p = self._active_participant(cmd.participant)
        # The name is free again.
        del self._names[skeleton(p.name)]
        flipped = self._count_active(p.team_id, -1)
        if self._step == -1 and not self._has_trace(p):  # the lobby (maybe paused)
            # Nothing was played yet and nothing names them: forget the player, so a lobby
            # with people coming and going (or a flood of join/leave) holds only who is here.
            self._forget(p)
            return [e.ParticipantLeft(p.id)]
        # Once play has started the player's line stays in the standings.
        self._participants[p.id] = attrs.evolve(p, left=True)
        return [e.ParticipantLeft(p.id), *self._recount(now, self.scorer_of(p.id), flipped, -1)]

    def _has_trace(self, p: Participant) -> bool:
        """Whether anything but the membership names ``p``: an adjustment of theirs, or (solo
        mode, where they are their own scorer) a joker, wager or score. In team mode those
        belong to the team and stay with it, but a team's score is reported to every member
        by name (``ScoresChanged.scores``: the server persists a score row and sends ``you``
        per member), so a member of a team that has a score is named too: forgetting them
        would leave a score row, and a ``score_of`` that was answered, for nobody."""
        if any(a.participant == p.id for a in self._adjustments):
            return True
        if self.options.mode is Mode.TEAM:
            return p.team_id in self._totals
        return self._scorer_named(p.id)

    def _scorer_named(self, scorer: int) -> bool:
        """Whether a joker, a wager, a score or an adjustment belongs to ``scorer``."""
        return (scorer in self._jokers or scorer in self._totals
                or any(scorer in w for w in self._wagers.values())
                or any(a.scorer == scorer for a in self._adjustments))

    def _forget(self, p: Participant) -> None:
        """Remove a player who left the lobby without a trace, and their team if it is now
        empty and has none either. Ids are never reused (``_next_id``, ``_next_team``)."""
        del self._participants[p.id]
        t = p.team_id
        if t is None:
            return
        members = self._members[t]
        members.remove(p.id)
        if members or self._scorer_named(t):
            return
        team = self._teams.pop(t)
        del self._team_keys[skeleton(team.name)]
        del self._members[t]
        del self._team_active[t]

    def _on_kick(self, cmd: c.Kick, now: float) -> list[e.Event]:
        p = self._known_participant(cmd.participant)
        if p.kicked:
            raise _reject(ErrorCode.INVALID_COMMAND, f"{p.name!r} was already removed")
        self._participants[p.id] = attrs.evolve(p, kicked=True)
        # The name stays reserved (unless the player had left), so the same nickname cannot
        # simply come back; their answers stay recorded but they leave the standings.
        if p.left:
            return [e.ParticipantKicked(p.id)]  # already inactive: no count moves
        flipped = self._count_active(p.team_id, -1)
        return [e.ParticipantKicked(p.id), *self._recount(now, self.scorer_of(p.id), flipped, -1)]

    def _count_answered(self) -> int:
        """Active scorers who answered the running question (0 when none is running)."""
        q = self.current_question
        if q is None or not self._question_running():
            return 0
        answers = self._answers[q]
        if self.options.mode is Mode.TEAM:
            return sum(1 for t in answers if self._team_active.get(t, 0) > 0)
        return sum(1 for s in answers if self._participants[s].active)

    def _question_running(self) -> bool:
        return self._phase is Phase.QUESTION_OPEN or (
            self._phase is Phase.PAUSED and self._resume_phase is Phase.QUESTION_OPEN
        )

    def _recount(self, now: float, scorer: int, flipped: bool, delta: int) -> list[e.Event]:
        """After a participant joined (+1) or left or was kicked (-1): update the running
        question's count in O(1). The answered count moves only when the scorer itself became
        active or inactive and has an answer to the question."""
        if not self._question_running():
            return []
        q = self.current_question
        assert q is not None
        if flipped and scorer in self._answers[q]:
            self._answered += delta
        events: list[e.Event] = [e.AnswerCountChanged(q, self._answered, self.active_count())]
        return events + self._close_if_all_answered(now)

    def _close_if_all_answered(self, now: float) -> list[e.Event]:
        if (
            self.options.close_when_all_answered
            and self._phase is Phase.QUESTION_OPEN
            and self._answered > 0
            and self._answered >= self.active_count()
        ):
            return self._close("all_answered", now)
        return []

    # ------------------------------------------------------------------ answers (hot path)
    def _on_submit(self, cmd: c.SubmitAnswer, now: float) -> list[e.Event]:
        got = self.submit(cmd.participant, cmd.question, cmd.value, cmd.request_id, now)
        if isinstance(got, Rejected):
            raise _reject(got.code, got.message)  # a new one: the shared refusals never raise
        return got

    def submit(self, participant: Any, question: Any, value: Any, request_id: Any,
               now: float) -> list[e.Event] | Rejected:
        """``apply(SubmitAnswer(participant, question, value, request_id), now)`` without the
        command object, and with the phase rule's refusals (a late answer, a paused or no
        question, another question) *returned* rather than raised: the same ``Rejected``
        (code and message) that ``apply`` raises, the constant ones shared (never raise a
        returned one: a raised exception keeps its traceback). Every other refusal raises as
        ``apply`` does. The session's answer batches call this: in a flood most answers arrive
        after the close, and building and raising an exception was ~6% of the engine there."""
        if not (_is_int(participant) and _is_int(request_id)):
            raise _reject(ErrorCode.INVALID_COMMAND, "participant and request_id must be ints")
        seen = self._seen.get((participant, request_id))
        if seen is not None and self._is_resend(seen, question, value):
            return [attrs.evolve(seen, duplicate=True)]  # rule 4: a retry changes nothing
        # Otherwise a colliding rid (a client that restarted its counter) is a new submission,
        # accepted or refused by the rules below: never acknowledged without being applied.
        p = self._active_participant(participant)
        # The phase rule of SPEC section 8 (`answer`): a question that was open and is no
        # longer is `question_closed` in any phase (the answer came too late); otherwise, when
        # no question takes answers, `wrong_phase`; while one does, another question is
        # `not_current_question`.
        # A pause stops the clock and the answers with it (the speed bonus is frozen too).
        qi = question
        current = self.current_question
        state = self._qstate[qi] if _is_int(qi) and 0 <= qi < len(self.quiz.questions) else None
        opened = state is not None and state is not QState.PENDING
        if self._phase is not Phase.QUESTION_OPEN:
            if opened and state is not QState.OPEN:
                return _CLOSED
            return _PAUSED if state is QState.OPEN else _NONE_OPEN
        if qi != current:
            if opened:
                return _CLOSED
            return _reject(ErrorCode.NOT_CURRENT_QUESTION, f"question {qi!r} is not the open one")
        if self._deadline is not None and now > self._deadline:
            return _TIME_UP
        value = validate_answer(self.quiz.questions[qi], value)
        # Accepted: record it.
        scorer = p.team_id if self.options.mode is Mode.TEAM else p.id
        assert scorer is not None
        answers = self._answers[qi]
        previous = answers.get(scorer)
        if self._running_since is not None:
            elapsed = self._elapsed_base + (now - self._running_since)
        else:
            elapsed = self._elapsed_base
        elapsed = max(0.0, elapsed)  # a clock stepping backwards never gives a negative time
        revision = 1 if previous is None else previous.revision + 1
        answers[scorer] = Answer(p.id, value, now, elapsed, revision, request_id)
        accepted = e.AnswerAccepted(
            participant=p.id, team=p.team_id, question=qi, value=value,
            request_id=request_id, at=now, elapsed=elapsed, revision=revision,
        )
        self._seen[(p.id, request_id)] = accepted
        if previous is not None:
            return [accepted]  # a change of answer: the count is the same
        self._answered += 1
        events: list[e.Event] = [accepted, e.AnswerCountChanged(qi, self._answered,
                                                                 self.active_count())]
        return events + self._close_if_all_answered(now)

    def _is_resend(self, seen: e.AnswerAccepted, question: Any, value: Any) -> bool:
        """Whether ``question`` and ``value`` repeat the acceptance ``seen`` of their
        (participant, request_id): the same question and the same value (compared as
        validated, so a resend that encodes the value differently still matches)."""
        if question != seen.question or not _is_int(question):
            return False
        try:
            value = validate_answer(self.quiz.questions[seen.question], value)
        except Rejected:
            return False
        return bool(value == seen.value)

    # ------------------------------------------------------------------ jokers and wagers
    def _round_started(self, r: int) -> bool:
        return self._step >= self._round_first_step[r]

    def _check_round(self, r: Any) -> int:
        if not _is_int(r) or not 0 <= r < len(self.quiz.rounds):
            raise _reject(ErrorCode.UNKNOWN_ROUND, f"no round {r!r}")
        return int(r)

    def _on_joker(self, cmd: c.PlayJoker, now: float) -> list[e.Event]:
        p = self._active_participant(cmd.participant)
        r = self._check_round(cmd.round)
        rnd = self.quiz.rounds[r]
        if not rnd.joker or not rnd.questions:
            raise _reject(ErrorCode.INVALID_COMMAND, f"no joker can be played on {rnd.title!r}")
        scorer = self.scorer_of(p.id)
        if scorer in self._jokers:
            raise _reject(ErrorCode.JOKER_USED, "your joker is already played")
        if self._round_started(r):
            raise _reject(ErrorCode.JOKER_TOO_LATE, "play a joker before its round starts")
        self._jokers[scorer] = r
        return [e.JokerPlayed(p.id, p.team_id, r)]

    def _on_wager(self, cmd: c.PlaceWager, now: float) -> list[e.Event]:
        p = self._active_participant(cmd.participant)
        r = self._check_round(cmd.round)
        if not self.quiz.rounds[r].wager:
            raise _reject(ErrorCode.NOT_A_WAGER_ROUND, "that round takes no wagers")
        if self._round_started(r):
            raise _reject(ErrorCode.INVALID_WAGER, "place a wager before its round starts")
        scorer = self.scorer_of(p.id)
        have = max(0, self._totals.get(scorer, 0))
        if not _is_int(cmd.amount) or not 0 <= cmd.amount <= have:
            raise _reject(ErrorCode.INVALID_WAGER, f"stake a whole number from 0 to {have}")
        stakes = self._wagers.setdefault(r, {})
        if cmd.amount:
            stakes[scorer] = cmd.amount
        else:
            stakes.pop(scorer, None)
            if not stakes:
                del self._wagers[r]
        return [e.WagerPlaced(p.id, p.team_id, r, cmd.amount)]

    # ------------------------------------------------------------------ progress
    def _on_start(self, cmd: c.Start, now: float) -> list[e.Event]:
        return [e.Started(now), *self._enter(0, now)]

    def _on_next(self, cmd: c.Next, now: float) -> list[e.Event]:
        return self._enter(self._step + 1, now)

    def _enter(self, index: int, now: float) -> list[e.Event]:
        """Move to step ``index`` of the program and announce it."""
        self._step = index
        self._answered = 0
        self._question_deadline = None
        if index >= len(self._steps):
            return self._finish("completed")
        step = self._steps[index]
        events: list[e.Event] = []
        if index == self._round_first_step[step.round]:
            rnd = self.quiz.rounds[step.round]
            events.append(e.RoundStarted(step.round, rnd.title, rnd.multiplier, rnd.wager,
                                         len(rnd.questions)))
        if step.kind == "slide":
            slide = self.quiz.rounds[step.round].items[step.ref]
            assert isinstance(slide, Slide)
            self._phase = Phase.SLIDE
            events.append(e.SlideShown(step.round, slide.title, slide.text, slide.media))
        elif step.kind == "question":
            q = self.quiz.questions[step.ref]
            self._qstate[step.ref] = QState.OPEN
            self._phase = Phase.QUESTION_OPEN
            self._deadline = self._question_deadline = now + q.time_limit
            self._elapsed_base = 0.0
            self._running_since = now
            self._answered = 0
            events.append(e.QuestionOpened(step.ref, self._deadline, q.time_limit, step.round))
            events.append(e.AnswerCountChanged(step.ref, 0, self.active_count()))
        else:
            self._phase = Phase.ROUND_SUMMARY
            events.append(e.RoundSummary(step.round))
        return events

    def _finish(self, reason: str) -> list[e.Event]:
        self._phase = Phase.FINISHED
        self._resume_phase = None
        self._deadline = self._remaining = self._running_since = None
        self._finish_reason = reason
        return [e.Finished(reason)]

    def _unpause_into(self, allowed: frozenset[Phase], what: str) -> None:
        """In ``paused``, a close, reveal or skip acts on the phase the pause came from: check
        that phase (``wrong_phase`` otherwise) and leave the pause. Elsewhere a no-op."""
        if self._phase is not Phase.PAUSED:
            return
        if self._resume_phase not in allowed:
            raise _reject(ErrorCode.WRONG_PHASE, f"{what} is not possible: the pause is on "
                          f"{self._resume_phase.value if self._resume_phase else 'nothing'}")
        self._phase, self._resume_phase = self._resume_phase, None

    def _close(self, reason: str, now: float) -> list[e.Event]:
        q = self.current_question
        assert q is not None
        self._qstate[q] = QState.CLOSED
        self._resume_phase = None
        self._phase = Phase.QUESTION_CLOSED
        self._answered = 0  # only a running question keeps a count
        if self._running_since is not None:
            self._elapsed_base += max(0.0, now - self._running_since)
        self._deadline = self._remaining = self._running_since = None
        return [e.QuestionClosed(q, reason)]

    def _on_close(self, cmd: c.CloseQuestion, now: float) -> list[e.Event]:
        if self._phase is Phase.PAUSED and self._resume_phase is not Phase.QUESTION_OPEN:
            raise _reject(ErrorCode.WRONG_PHASE, "no question is open")
        return self._close("host", now)  # from a pause too: its remaining time is dropped

    def _on_extend(self, cmd: c.Extend, now: float) -> list[e.Event]:
        s = cmd.seconds
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s):
            raise _reject(ErrorCode.INVALID_COMMAND, "seconds must be a number")
        if not 0 < s <= MAX_EXTEND:
            raise _reject(ErrorCode.INVALID_COMMAND, f"extend by 0 to {MAX_EXTEND:g} seconds")
        q = self.current_question
        if self._phase is Phase.PAUSED:
            if self._resume_phase is not Phase.QUESTION_OPEN or self._remaining is None:
                raise _reject(ErrorCode.WRONG_PHASE, "no question is open")
            remaining = self._remaining + s
        else:
            assert self._deadline is not None
            if now > self._deadline:
                raise _reject(ErrorCode.QUESTION_CLOSED, "time is already up")
            remaining = self._deadline + s - now
        if remaining > MAX_TIME_LIMIT:
            raise _reject(ErrorCode.INVALID_COMMAND, f"at most {MAX_TIME_LIMIT} seconds left")
        assert q is not None
        if self._phase is Phase.PAUSED:
            self._remaining = remaining
            return [e.TimeExtended(q, None, remaining)]
        assert self._deadline is not None
        self._deadline += s
        self._question_deadline = self._deadline
        return [e.TimeExtended(q, self._deadline, self._deadline - now)]

    def _on_pause(self, cmd: c.Pause, now: float) -> list[e.Event]:
        remaining: float | None = None
        if self._phase is Phase.QUESTION_OPEN:
            assert self._deadline is not None and self._running_since is not None
            if now > self._deadline:
                raise _reject(ErrorCode.QUESTION_CLOSED, "time is already up")
            remaining = self._deadline - now
            self._elapsed_base += max(0.0, now - self._running_since)
            self._deadline = self._running_since = None
            self._remaining = remaining
        self._resume_phase = self._phase
        self._phase = Phase.PAUSED
        return [e.Paused(remaining)]

    def _on_unpause(self, cmd: c.Unpause, now: float) -> list[e.Event]:
        assert self._resume_phase is not None
        self._phase, self._resume_phase = self._resume_phase, None
        if self._phase is not Phase.QUESTION_OPEN:
            return [e.Resumed(None)]
        assert self._remaining is not None
        self._deadline = self._question_deadline = now + self._remaining
        self._running_since = now
        self._remaining = None
        return [e.Resumed(self._deadline), *self._close_if_all_answered(now)]

    def _on_add_round(self, cmd: c.AddRound, now: float) -> list[e.Event]:
        # Lobby only (the table): no question has a state, an answer or a mark yet, and the
        # new round comes last, so jokers and wagers already placed keep their rounds.
        data = quiz_to_data(self.quiz)
        try:
            quiz = load_quiz_data({**data, "rounds": [*data["rounds"], cmd.round]},
                                  source=cmd.source)
        except QuizFileError as exc:
            raise _reject(ErrorCode.INVALID_COMMAND, "the quiz with this round is not valid: "
                          + "; ".join(exc.problems[:5])) from None
        added = len(quiz.questions) - len(self.quiz.questions)
        self._set_quiz(quiz)
        self._qstate.extend([QState.PENDING] * added)
        self._answers.extend({} for _ in range(added))
        r = len(quiz.rounds) - 1
        return [e.RoundAdded(round=r, title=quiz.rounds[r].title,
                             questions=len(quiz.rounds[r].questions),
                             data=quiz_to_data(quiz)["rounds"][r])]

    def _on_skip(self, cmd: c.Skip, now: float) -> list[e.Event]:
        self._unpause_into(frozenset({Phase.QUESTION_OPEN, Phase.QUESTION_CLOSED}), "skip")
        q = self.current_question
        assert q is not None
        self._qstate[q] = QState.SKIPPED
        self._deadline = self._remaining = self._running_since = self._question_deadline = None
        events: list[e.Event] = [e.QuestionSkipped(q)]
        changed = self._settle_wagers(self.quiz.question_round[q])
        events += self._scores_event(changed, "wager", None)
        return events + self._enter(self._step + 1, now)

    def _on_leaderboard(self, cmd: c.ShowLeaderboard, now: float) -> list[e.Event]:
        r = None if cmd.round is None else self._check_round(cmd.round)
        if self._phase is not Phase.FINISHED:  # after the end: shown again, still finished
            self._phase = Phase.LEADERBOARD
        return [e.LeaderboardShown(r)]

    def _on_end(self, cmd: c.End, now: float) -> list[e.Event]:
        reason = cmd.reason if isinstance(cmd.reason, str) else ""
        reason = reason.strip()[:MAX_REASON] or "ended by host"
        events: list[e.Event] = []
        if self._question_running():
            events += self._close("ended", now)
        return events + self._finish(reason)

    # ------------------------------------------------------------------ scoring
    def _on_reveal(self, cmd: c.Reveal, now: float) -> list[e.Event]:
        closing: list[e.Event] = []
        if self._question_running():  # open, or paused on it: close it first (one click)
            closing = self._close("host", now)
        else:
            self._unpause_into(frozenset({Phase.QUESTION_CLOSED}), "reveal")
        q = self.current_question
        assert q is not None
        self._qstate[q] = QState.REVEALED
        self._phase = Phase.REVEALED
        question = self.quiz.questions[q]
        view = self.correct_view(q)
        events: list[e.Event] = [e.Revealed(q, view.answer, question.explanation,
                                            self.answer_distribution(q))]
        if question.tiebreak:
            self._tiebreak = {s: float(abs(a.value - question.answer))
                              for s, a in self._answers[q].items()}
        # One ScoresChanged for the question and any wager it settles: no interim totals.
        changed = self._set_awards(q, self._score_question(q))
        changed |= self._settle_wagers(self.quiz.question_round[q])
        return closing + events + self._scores_event(changed, "reveal", q)

    def _score_question(self, q: int) -> dict[int, tuple[float, int]]:
        """Fraction and points for every answer to question ``q``, from scratch."""
        return awards.score_question(self.quiz, q, self._answers[q], self._marks.get(q, {}),
                                     self._jokers, speed_bonus=self.options.speed_bonus)

    def _set_awards(self, q: int, new: dict[int, tuple[float, int]]) -> set[int]:
        """Replace question ``q``'s awards, apply the difference to the totals."""
        changed = awards.move_totals(self._totals, awards.points_of(self._awards.get(q, {})),
                                     awards.points_of(new))
        if new:
            self._awards[q] = new
        else:
            self._awards.pop(q, None)
        return changed

    def _wager_outcome(self, r: int) -> dict[int, int] | None:
        return awards.wager_outcome(self.quiz, r, self._qstate, self._awards,
                                    self._wagers.get(r, {}))

    def _settle_wagers(self, r: int) -> set[int]:
        """(Re)settle round ``r``'s stakes if it is over; return the scorers whose total moved."""
        if not self.quiz.rounds[r].wager:
            return set()
        outcome = self._wager_outcome(r)
        if outcome is None:
            return set()
        changed = awards.move_totals(self._totals, self._wager_results.get(r, {}), outcome)
        if outcome:
            self._wager_results[r] = outcome
        else:
            self._wager_results.pop(r, None)
        return changed

    def _scores_event(self, changed: set[int], reason: str, q: int | None) -> list[e.Event]:
        if not changed:
            return []
        if self.options.mode is Mode.TEAM:
            teams = sorted(changed)
            people = [(pid, self._totals.get(t, 0)) for t in teams for pid in self._members[t]]
            return [e.ScoresChanged(sorted(people), [(t, self._totals.get(t, 0)) for t in teams],
                                    reason, q)]
        return [e.ScoresChanged([(s, self._totals.get(s, 0)) for s in sorted(changed)], [],
                                reason, q)]

    def _on_mark(self, cmd: c.Mark, now: float) -> list[e.Event]:
        q = self._check_question(cmd.question)
        p = self._known_participant(cmd.participant)
        if not isinstance(cmd.correct, bool):
            raise _reject(ErrorCode.INVALID_COMMAND, "correct must be true or false")
        state = self._qstate[q]
        if state is QState.SKIPPED:
            raise _reject(ErrorCode.INVALID_COMMAND, "that question was skipped")
        if state in (QState.PENDING, QState.OPEN):
            raise _reject(ErrorCode.WRONG_PHASE, "mark a question once it is closed")
        if self.quiz.questions[q].tiebreak:
            raise _reject(ErrorCode.INVALID_COMMAND, "the tie-break question is not marked")
        scorer = self.scorer_of(p.id)
        if scorer not in self._answers[q]:
            raise _reject(ErrorCode.INVALID_COMMAND, f"{p.name!r} has no answer to mark")
        self._marks.setdefault(q, {})[scorer] = cmd.correct
        events: list[e.Event] = [e.AnswerMarked(q, p.id, p.team_id, cmd.correct)]
        if state is QState.REVEALED:
            changed = self._set_awards(q, self._score_question(q))
            changed |= self._settle_wagers(self.quiz.question_round[q])
            events += self._scores_event(changed, "mark", q)
        return events

    def _on_adjust(self, cmd: c.AdjustScore, now: float) -> list[e.Event]:
        p = self._known_participant(cmd.participant)
        delta = cmd.delta
        if not _is_int(delta) or delta == 0 or abs(delta) > MAX_ADJUST:
            raise _reject(ErrorCode.INVALID_COMMAND, f"delta must be a non-zero whole number "
                          f"within +/-{MAX_ADJUST}")
        if not isinstance(cmd.reason, str) or not cmd.reason.strip():
            raise _reject(ErrorCode.INVALID_COMMAND, "give a reason for the adjustment")
        reason = cmd.reason.strip()[:MAX_REASON]
        scorer = self.scorer_of(p.id)
        self._adjustments.append(Adjustment(scorer, p.id, delta, reason, now))
        self._totals[scorer] = self._totals.get(scorer, 0) + delta
        return [e.ScoreAdjusted(p.id, p.team_id, delta, reason),
                *self._scores_event({scorer}, "adjust", None)]

    def recompute_scores(self) -> dict[int, int]:
        """Every scorer's total recomputed from the raw state (answers, marks, jokers, wagers,
        adjustments), ignoring the incremental totals. Zero totals are left out. For tests and
        for checking a restored snapshot."""
        out: dict[int, int] = {}
        for q, state in enumerate(self._qstate):
            if state is QState.REVEALED:
                for s, (_, pts) in self._score_question(q).items():
                    out[s] = out.get(s, 0) + pts
        saved = self._awards
        # The wager outcome reads the awards; give it freshly computed ones.
        self._awards = {q: self._score_question(q) for q, st in enumerate(self._qstate)
                        if st is QState.REVEALED}
        try:
            for r, rnd in enumerate(self.quiz.rounds):
                if rnd.wager:
                    for s, result in (self._wager_outcome(r) or {}).items():
                        out[s] = out.get(s, 0) + result
        finally:
            self._awards = saved
        for adj in self._adjustments:
            out[adj.scorer] = out.get(adj.scorer, 0) + adj.delta
        return {s: v for s, v in out.items() if v}

    # ------------------------------------------------------------------ snapshots
    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_cache"}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GameSession):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by value, never hashed

    def to_snapshot(self) -> dict[str, Any]:
        """The whole state as plain data (``game.snapshot``: format ``SNAPSHOT_FORMAT``)."""
        return snapshot.encode(self)

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> GameSession:
        """Restore a session from ``to_snapshot`` output; ``CorruptData`` (a ``ValueError``)
        for an unknown format or anything it cannot read (``game.snapshot``)."""
        return snapshot.restore(cls, data)


# The values and the snapshot format are defined beside the state machine (``game.values``,
# ``game.snapshot``) and importable from here as before.
__all__ = [
    "MAX_ADJUST",
    "MAX_EXTEND",
    "MAX_REASON",
    "SNAPSHOT_FORMAT",
    "Adjustment",
    "Answer",
    "CorrectView",
    "GameSession",
    "Mode",
    "Participant",
    "Phase",
    "QState",
    "QuestionView",
    "SessionOptions",
    "Step",
    "Team",
]
