"""The checker's properties on hand-written histories: each one passes a clean history and
flags the anomaly it exists for (so a green checker run means something)."""

from __future__ import annotations

from typing import Any

import pytest

from checker.history import CLOSED, CONNECT, IN, LOST, NOTE, OUT, History
from checker.properties import (
    CHECKS,
    PROPERTIES,
    Facts,
    LogRow,
    StoredAnswer,
    answer_tries,
    check_all,
    enabled_for,
)

DEADLINE = 1_800_000_000_000  # ms
CORRECT = {0: 1, 1: 2}
POINTS = {0: 3, 1: 2}


class Script:
    """Builds one client's history line by line."""

    def __init__(self, name: str = "p0", participant: int | None = 1) -> None:
        self.history = History(name, participant=participant)
        self.conn = 0
        self.at = 0.0

    def _add(self, kind: str, frame: dict[str, Any]) -> Script:
        self.at += 0.01
        self.history.add(self.at, self.conn, kind, frame)
        return self

    def connect(self, epoch: int = 1, seq: int = 0, replay: str = "state") -> Script:
        self.conn += 1
        self._add(CONNECT, {"url": "ws://127.0.0.1:1/"})
        self._add(OUT, {"t": "resume", "rid": 100 + self.conn, "token": "t", "last_seq": seq})
        return self._add(IN, {"t": "welcome", "rid": 100 + self.conn, "role": "player",
                              "epoch": epoch, "seq": seq, "participant": 1, "replay": replay})

    def send(self, frame: dict[str, Any]) -> Script:
        return self._add(OUT, frame)

    def get(self, frame: dict[str, Any]) -> Script:
        return self._add(IN, frame)

    def answer(self, rid: int, q: int, value: Any, reply: str | None = "ack",
               retryable: bool = False) -> Script:
        self.send({"t": "answer", "rid": rid, "q": q, "value": value})
        if reply == "ack":
            return self.get({"t": "answer_ack", "rid": rid, "q": q})
        if reply is not None:
            return self.get({"t": "error", "rid": rid, "code": reply, "message": "",
                             "retryable": retryable})
        return self

    def question(self, seq: int, q: int, deadline: int = DEADLINE) -> Script:
        return self.get({"t": "question", "seq": seq, "q": q, "deadline_ms": deadline})

    def close(self, code: int = 1006) -> Script:
        return self._add(CLOSED, {"code": code, "reason": None})


def log(*rows: tuple[int, str, dict[str, Any]], epoch: int = 1) -> dict[int, LogRow]:
    return {seq: LogRow(kind, payload, epoch) for seq, kind, payload in rows}


def facts(answers: list[StoredAnswer], events: dict[int, LogRow] | None = None,
          standings: dict[int, float] | None = None) -> Facts:
    if events is None:
        events = log((2, "question_opened", {"question": 0, "deadline": DEADLINE / 1000}),
                     (4, "question_closed", {"question": 0}),
                     (5, "revealed", {"question": 0}))
    return Facts(tuple(answers), events, standings or {1: 0.0}, CORRECT, POINTS)


def stored(rid: int, q: int, value: Any, seq: int = 3, participant: int = 1) -> StoredAnswer:
    return StoredAnswer(participant, rid, q, value, seq, 1)


def clean() -> Script:
    """Answer q 0 (rid 2, then changed with rid 3), see it close and be revealed."""
    s = Script().connect().question(2, 0).answer(2, 0, 0).answer(3, 0, 1)
    return s.get({"t": "closed", "seq": 4, "q": 0}).get(
        {"t": "reveal", "seq": 5, "q": 0, "correct": 1, "distribution": [0, 1, 0, 0]}).get(
        {"t": "result", "q": 0, "correct": True, "points": 3, "score": 3})


def clean_facts() -> Facts:
    return facts([stored(2, 0, 0, seq=3), stored(3, 0, 1, seq=4)], standings={1: 3.0})


def props_broken(histories: list[History], data: Facts) -> set[str]:
    return {a.prop for a in check_all(histories, data, PROPERTIES)}


def test_a_clean_history_breaks_nothing() -> None:
    assert check_all([clean().history], clean_facts(), PROPERTIES) == []


def test_every_property_has_a_check_or_is_the_runners() -> None:
    assert set(CHECKS) | {"completes"} == set(PROPERTIES)


def test_replies_pair_by_rid_on_their_connection_and_a_drop_leaves_them_unknown() -> None:
    s = Script().connect().question(2, 0).answer(2, 0, 0, reply=None).close()
    s.connect().answer(2, 0, 0).answer(3, 0, 1, reply="question_closed")
    s.answer(4, 0, 2, reply="busy", retryable=True).answer(5, 0, 3, reply="internal",
                                                           retryable=True)
    outcomes = [(t.rid, t.outcome) for t in answer_tries(s.history)]
    assert outcomes == [(2, "unknown"), (2, "ack"), (3, "refused"), (4, "refused"),
                        (5, "unknown")]


def test_an_ack_whose_answer_is_not_stored_is_found() -> None:
    data = facts([stored(2, 0, 0)], standings={1: 0.0})
    assert "acked_stored_once" in props_broken([clean().history], data)


def test_an_ack_without_apply_is_found_rid_collision() -> None:
    """Issue 16 point 1: rid 2 answered q 0; after a reload the counter restarts and rid 2
    answers q 1: acked, but the store still holds q 0 under that rid."""
    s = Script().connect().question(2, 0).answer(2, 0, 1)
    s.get({"t": "closed", "seq": 3, "q": 0}).question(4, 1)
    s.get({"t": "closed", "seq": 5, "q": 0})  # (not a rollback: same question, later stage)
    s._add(NOTE, {"reload": True})
    s.connect(seq=4, replay="state").get({"t": "state", "seq": 5, "state": {
        "phase": "question_open", "question": {"q": 1, "deadline_ms": DEADLINE}}})
    s.answer(2, 1, 0)
    broken = check_all([s.history], facts([stored(2, 0, 1)], events={}), ["acked_stored_once"])
    assert [a.prop for a in broken] == ["acked_stored_once"]
    assert "not applied" in broken[0].summary
    story = broken[0].render()
    # The evidence tells the story: the first answer with rid 2, the reload, the second.
    assert "q: 0, value: 1" in story and "reload" in story and "q: 1, value: 0" in story


def test_an_answer_stored_twice_is_found_once() -> None:
    s = Script().connect().question(2, 0).answer(2, 0, 1).answer(2, 0, 1)  # resent, same rid
    data = facts([stored(2, 0, 1, seq=3), stored(2, 0, 1, seq=7)], events={})
    broken = check_all([s.history], data, ["acked_stored_once"])
    assert [a.summary for a in broken] == [
        "answer stored 2 times: participant 1 rid 2 q 0 (seqs [3, 7])"]


def test_a_reused_rid_may_hold_two_answers() -> None:
    """Schema 3: a rid reused for another answer is applied as a new answer, its own row."""
    s = Script().connect().question(2, 0).answer(2, 0, 1)
    s._add(NOTE, {"reload": True})
    s.connect(seq=2).answer(2, 0, 3)
    data = facts([stored(2, 0, 1, seq=3), stored(2, 0, 3, seq=5)], events={})
    assert check_all([s.history], data, ["acked_stored_once", "refused_not_stored"]) == []


def test_a_stored_answer_that_was_refused_or_never_sent_is_found() -> None:
    s = Script().connect().question(2, 0).answer(2, 0, 0, reply="question_closed")
    broken = check_all([s.history], facts([stored(2, 0, 0), stored(9, 0, 1)]),
                       ["refused_not_stored"])
    assert [a.summary.split(":")[0] for a in broken] == ["a refused answer is stored",
                                                         "an answer nobody sent is stored"]


def test_the_scored_answer_must_be_the_last_acked_one() -> None:
    # The store's latest row is the first answer (value 0), not the last acked (value 1).
    data = facts([stored(2, 0, 0, seq=5), stored(3, 0, 1, seq=3)], standings={1: 0.0})
    broken = check_all([clean().history], data, ["last_acked_scored"])
    assert broken and all(a.prop == "last_acked_scored" for a in broken)


def test_a_later_unanswered_answer_may_be_the_scored_one() -> None:
    s = Script().connect().question(2, 0).answer(2, 0, 0).answer(3, 0, 1, reply=None).close()
    data = facts([stored(2, 0, 0, seq=3), stored(3, 0, 1, seq=4)], standings={1: 3.0})
    assert check_all([s.history], data, ["last_acked_scored"]) == []


def test_a_result_that_contradicts_the_acked_answer_is_found() -> None:
    s = Script().connect().question(2, 0).answer(2, 0, 0).get(
        {"t": "result", "q": 0, "correct": True, "points": 3, "score": 3})
    assert "last_acked_scored" in props_broken([s.history], facts([stored(2, 0, 0)]))


def test_totals_must_equal_a_recount() -> None:
    data = facts([stored(2, 0, 0, seq=3), stored(3, 0, 1, seq=4)], standings={1: 6.0})
    broken = check_all([clean().history], data, ["totals_recount"])
    assert [a.summary for a in broken] == [
        "participant 1: standings say 6.0, a recount of the stored answers gives 3"]


def test_a_phase_rollback_is_found_but_a_replay_after_a_reload_is_not() -> None:
    s = clean()
    s.connect(epoch=2, seq=4).get({"t": "state", "seq": 4, "state": {
        "phase": "question_open", "question": {"q": 0, "deadline_ms": DEADLINE}}})
    assert "no_phase_rollback" in props_broken([s.history], clean_facts())
    replayed = clean()
    replayed.connect(seq=5, replay="events").question(2, 0).get(
        {"t": "closed", "seq": 4, "q": 0})
    assert check_all([replayed.history], clean_facts(), ["no_phase_rollback"]) == []


def test_an_ack_for_an_answer_sent_after_the_close_is_found() -> None:
    s = clean().answer(7, 0, 2)
    data = facts([stored(2, 0, 0, seq=3), stored(3, 0, 1, seq=4), stored(7, 0, 2, seq=6)])
    assert "no_ack_after_close" in props_broken([s.history], data)


def test_a_moved_deadline_is_found() -> None:
    other = Script("p1", 2).connect().question(2, 0, deadline=DEADLINE + 1000)
    assert "deadline_stable" in props_broken([clean().history, other.history], clean_facts())


def test_a_closed_state_without_its_deadline_is_found() -> None:
    s = clean().connect(seq=5).get({"t": "state", "seq": 5, "state": {
        "phase": "revealed", "question": {"q": 0, "deadline_ms": 0}}})
    assert props_broken([s.history], clean_facts()) == {"state_deadline_real"}


def test_a_changed_result_is_found() -> None:
    s = clean().get({"t": "result", "q": 0, "correct": False, "points": 0, "score": 0})
    assert "result_stable" in props_broken([s.history], clean_facts())


@pytest.mark.parametrize(("row", "why"), [
    (None, "is not in the event log"),
    (LogRow("question_closed", {"question": 0}, 1), "is logged as question_closed"),
    (LogRow("question_opened", {"question": 0, "deadline": DEADLINE / 1000}, 2),
     "the log has it from epoch 2"),
    (LogRow("question_opened", {"question": 0, "deadline": DEADLINE / 1000 + 1}, 1),
     "differs from the log"),
])
def test_an_event_the_log_does_not_hold_is_found(row: LogRow | None, why: str) -> None:
    events = dict(clean_facts().events)
    if row is None:
        del events[2]
    else:
        events[2] = row
    data = facts(list(clean_facts().answers), events, {1: 3.0})
    broken = check_all([clean().history], data, ["events_in_log"])
    assert [a.prop for a in broken] == ["events_in_log"]
    assert why in broken[0].summary


def test_the_final_leaderboard_is_logged_with_the_end() -> None:
    s = clean().get({"t": "leaderboard", "seq": 6, "round": None, "teams": False, "top": []})
    s.get({"t": "ended", "seq": 7, "reason": "completed"})
    events = {**clean_facts().events, 7: LogRow("finished", {}, 1)}
    assert check_all([s.history], facts(list(clean_facts().answers), events, {1: 3.0}),
                     ["events_in_log"]) == []


def test_two_events_at_one_seq_are_found() -> None:
    other = Script("p1", 2).connect().get({"t": "closed", "seq": 2, "q": 0})
    assert "one_history" in props_broken([clean().history, other.history], clean_facts())


def test_seqs_going_back_on_a_connection_are_found() -> None:
    s = clean().get({"t": "closed", "seq": 4, "q": 0})
    assert "seq_order" in props_broken([s.history], clean_facts())


def test_an_epoch_change_answered_with_events_is_found_unless_the_client_reloaded() -> None:
    s = clean().connect(epoch=2, seq=5, replay="events")
    assert "epoch_change_state" in props_broken([s.history], clean_facts())
    reloaded = clean()
    reloaded._add(NOTE, {"reload": True})
    reloaded.connect(epoch=2, seq=5, replay="events")
    assert check_all([reloaded.history], clean_facts(), ["epoch_change_state"]) == []


def test_1011_and_internal_are_found() -> None:
    s = clean().answer(9, 0, 1, reply="internal", retryable=True).close(1011)
    assert {"no_1011", "no_internal"} <= props_broken([s.history], clean_facts())


def test_a_timeout_counts_as_a_lost_connection() -> None:
    s = Script().connect().question(2, 0).send({"t": "answer", "rid": 2, "q": 0, "value": 1})
    s._add(LOST, {"why": "no reply in 3 s"})
    s.close(1000)
    assert [t.outcome for t in answer_tries(s.history)] == ["unknown"]


def test_properties_are_switched_per_fault_family() -> None:
    assert enabled_for(()) == enabled_for(("none",))
    assert set(enabled_for(("kill9", "db_cut"))) == (set(enabled_for(("kill9",)))
                                                   & set(enabled_for(("db_cut",))))
    # Since output commit, the epoch on resume and the state's real deadline: all of them.
    every = ("kill9", "sigterm", "pause", "db_cut", "db_stall", "redis_cut")
    assert set(enabled_for(every)) == set(enabled_for(())) == set(PROPERTIES)
