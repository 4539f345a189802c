"""The pure half of a write: batch planning, the fencing decision, standings, migrations files."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storekit import answer, participant, score, session

from pubquiz_engine.errors import StoreError
from pubquiz_engine.store import EventRecord, Record, SessionEnded, migrations
from pubquiz_engine.store.plan import decide_fence, plan_batch, quiz_id_of, rank_standings


def test_plan_groups_rows_and_notes_epoch_range() -> None:
    plan = plan_batch(
        [
            session("A", 2),
            participant("A", 1, 2),
            answer("A", 1, 10, epoch=3),
            score("A", 1, 5, seq=4, epoch=2),
            EventRecord("A", 4, "answer", {"q": 0}, 9.0, 2),
            SessionEnded("A", 10.0, 3),
            answer("B", 7, 1, epoch=5),
        ]
    )
    assert plan.epochs == {"A": (2, 3), "B": (5, 5)}
    assert plan.codes == ["A", "B"]
    assert [r[0] for r in plan.sessions] == ["A"]
    assert plan.quizzes[0][0] == plan.sessions[0][1] == quiz_id_of(session("A").quiz_data)
    assert [r[:3] for r in plan.answers] == [("A", 1, 10), ("B", 7, 1)]
    assert plan.answers[0][4] == '{"choice":2}'
    assert plan.ended == [("A", 10.0, "finished")]
    assert plan.events == [("A", 4, "answer", '{"q":0}', 9.0, 2)]
    assert plan.row_count() == 7


def test_plan_without_drops_only_the_refused_sessions() -> None:
    plan = plan_batch([session("A"), answer("A", 1, 1), answer("B", 1, 1), score("B", 1, 3, 1)])
    rest = plan.without({"B"})
    assert rest.codes == ["A"]
    assert rest.answers == [plan.answers[0]] and rest.scores == []
    assert rest.quizzes == plan.quizzes
    assert plan.without(()) is plan


def test_scores_newest_seq_wins_inside_a_batch() -> None:
    plan = plan_batch(
        [score("A", 1, 10, 5), score("A", 1, 3, 2), score("A", 1, 12, 7), score("A", 1, 0, 6)]
    )
    assert plan.scores == [("A", 1, 12, 7, 1)]


def test_non_json_value_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="JSON"):
        plan_batch([answer("A", 1, 1, value={1, 2})])
    with pytest.raises(StoreError):
        plan_batch([answer("A", 1, 1, value=float("nan"))])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 20), st.integers(0, 4)),
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
def test_duplicates_and_order_do_not_change_the_plan(
    spec: list[tuple[int, int, int, int]], rnd: random.Random
) -> None:
    records: list[Record] = [answer(f"S{c}", pid, rid, epoch=e) for c, pid, rid, e in spec]
    records += [score(f"S{c}", pid, rid, seq=rid, epoch=e) for c, pid, rid, e in spec]
    once = plan_batch(records)
    doubled = records + records
    rnd.shuffle(doubled)
    twice = plan_batch(doubled)
    # First copy wins for answers: same keys; equal data for equal keys apart from the epoch.
    assert {r[:3] for r in once.answers} == {r[:3] for r in twice.answers}
    assert len({r[:3] for r in once.answers}) == len(once.answers)
    # Scores: the max seq per key, whatever the order.
    best: dict[tuple[str, int], int] = {}
    for c, pid, rid, _ in spec:
        best[(f"S{c}", pid)] = max(best.get((f"S{c}", pid), -1), rid)
    assert {(r[0], r[1]): r[3] for r in twice.scores} == best
    assert once.epochs.keys() == twice.epochs.keys()
    for code, (low, high) in twice.epochs.items():
        mine = [e for c, _, _, e in spec if f"S{c}" == code]
        assert (low, high) == (min(mine), max(mine))


def test_fence_decision() -> None:
    epochs = {"new": (1, 1), "same": (3, 3), "stale": (1, 4), "higher": (4, 6)}
    stored = {"same": 3, "stale": 2, "higher": 4}
    decision = decide_fence(epochs, stored)
    assert decision.refused == {"stale"}
    assert decision.raise_to == {"higher": 6}


@given(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9))
def test_fence_refuses_exactly_when_a_record_is_below_the_stored_epoch(
    low: int, span: int, stored: int
) -> None:
    high = low + span
    decision = decide_fence({"S": (low, high)}, {"S": stored})
    assert ("S" in decision.refused) == (low < stored)
    assert decision.raise_to == ({"S": high} if low >= stored and high > stored else {})


def test_standings_share_ranks_on_ties_and_order_deterministically() -> None:
    rows = [
        (3, "Cy", None, 5.0, 1),
        (1, "Ann", "A", 9.0, 2),
        (2, "Bo", None, 5.0, 3),
        (4, None, None, 0.0, None),
        (5, "Ed", None, 5.0, 4),
    ]
    ranked = rank_standings(rows)
    assert [(s.rank, s.participant_id) for s in ranked] == [(1, 1), (2, 2), (2, 3), (2, 5), (5, 4)]


def test_migrations_are_numbered_and_mirror_each_other() -> None:
    sqlite, postgres = migrations.load("sqlite"), migrations.load("postgres")
    assert (
        [m.version for m in sqlite]
        == [m.version for m in postgres]
        == list(range(1, len(sqlite) + 1))
    )
    for a, b in zip(sqlite, postgres, strict=True):
        assert a.name == b.name
        # Same tables and indexes, in the same order, on both backends.
        heads = [[" ".join(s.split()[:3]) for s in m.statements] for m in (a, b)]
        assert heads[0] == heads[1]
    with pytest.raises(ValueError):
        migrations.load("mysql")


def test_split_statements_drops_comment_only_chunks() -> None:
    sql = "-- header\nCREATE TABLE a (x int);\n-- between\nCREATE INDEX i ON a (x);\n-- end\n"
    assert migrations.split_statements(sql) == (
        "-- header\nCREATE TABLE a (x int)",
        "-- between\nCREATE INDEX i ON a (x)",
    )


def test_importing_the_store_package_loads_no_driver() -> None:
    # psycopg is imported only when a postgresql:// URL is opened (SQLite-only installs).
    code = (
        "import sys, pubquiz_engine.store, pubquiz_engine.store.export;"
        " print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
