"""The Store contract, run against SQLite and real PostgreSQL alike (``store`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storekit import answer, participant, score, session

from pubquiz_engine.errors import StoreError
from pubquiz_engine.store import EventRecord, Record, SessionEnded, Store, migrations, open_store
from pubquiz_engine.store.reads import SQLITE, Reads

Codes = Callable[[], str]


async def test_open_applies_migrations_once(store_url: str) -> None:
    with trio.fail_after(20):
        # The ``store`` fixture is not used: open twice to check a second start-up is a no-op.
        first = await open_store(store_url)
        await first.aclose()
        second = await open_store(store_url)
        await second.aclose()
        if store_url.startswith("sqlite"):
            import sqlite3

            lite = sqlite3.connect(store_url.removeprefix("sqlite:///"))
            versions = lite.execute("SELECT version FROM schema_version").fetchall()
            mode = lite.execute("PRAGMA journal_mode").fetchone()
            lite.close()
            assert mode == ("wal",)
        else:
            import psycopg

            with psycopg.connect(store_url) as conn:
                versions = conn.execute("SELECT version FROM schema_version").fetchall()
        # Every migration shipped, each applied exactly once.
        backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
        shipped = sorted(m.version for m in migrations.load(backend))
        assert sorted(v for (v,) in versions) == shipped == list(range(1, len(shipped) + 1))


async def test_answers_carry_only_the_indexes_their_reads_use(store_url: str) -> None:
    """Every index on ``answers`` costs each answer row a b-tree insert in the write-behind's
    commit: the table keeps its key and ``answers_by_seq`` (a takeover's replay reads the rows
    after a seq), and migration 4 dropped ``answers_by_question``, which no read used."""
    with trio.fail_after(20):
        opened = await open_store(store_url)
        await opened.aclose()
    if store_url.startswith("sqlite"):
        import sqlite3

        lite = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        try:
            # (seq, name, unique, origin, partial): origin "pk" is the key's own index.
            indexes = [(row[1], row[3] == "pk")
                       for row in lite.execute("PRAGMA index_list('answers')")]
            plan = " ".join(str(row[-1]) for row in lite.execute(
                "EXPLAIN QUERY PLAN " + Reads(SQLITE).answers_after, ("CODE", 0)))
        finally:
            lite.close()
        assert "answers_by_seq" in plan, plan
    else:
        import psycopg

        with psycopg.connect(store_url) as conn:
            indexes = [(name, primary) for name, primary in conn.execute(
                "SELECT c.relname, i.indisprimary FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'answers'::regclass")]
    # The key's own index, and the replay's: nothing else.
    assert sorted(key for _, key in indexes) == [False, True], indexes
    assert {name for name, key in indexes if not key} == {"answers_by_seq"}, indexes


async def test_migration_3_keeps_the_rows_of_a_version_2_database(tmp_path: Path) -> None:
    """Migration 3 rebuilds ``answers`` (its key gains the seq) and ``quiz_sessions`` (status
    ``interrupted``): the rows written under version 2 are all there afterwards."""
    import sqlite3
    import time

    path = tmp_path / "v2.sqlite3"
    lite = sqlite3.connect(path)
    with lite:
        lite.execute(migrations.SCHEMA_VERSION_TABLE)
        for migration in migrations.load("sqlite")[:2]:
            for statement in migration.statements:
                lite.execute(statement)
            lite.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                         (migration.version, migration.name, time.time()))
        lite.execute("INSERT INTO quiz_sessions VALUES ('OLD', 'q', 'Old night', 'solo',"
                     " 'finished', 1.0, 2.0, 3, 'hash', 'node-a')")
        lite.execute("INSERT INTO answers VALUES ('OLD', 1, 2, 0, '1', NULL, 1.5, 4, 3)")
    lite.close()
    with trio.fail_after(20):
        store = await open_store(f"sqlite:///{path}")
        try:
            row = await store.load_session("OLD")
            before = await store.load_answers("OLD")
            # The new key: the same (participant, rid) with a new answer is a second row.
            await store.write([answer("OLD", 1, 2, seq=9, question=1, value=0, epoch=3)])
            after = await store.load_answers("OLD")
            await store.write([SessionEnded("OLD", 5.0, 3, status="interrupted")])
            still = await store.load_session("OLD")
        finally:
            await store.aclose()
    assert row is not None and (row.status, row.ended_at, row.epoch, row.owner_node) == (
        "finished", 2.0, 3, "node-a")
    assert [(a.participant_id, a.request_id, a.question, a.value, a.seq) for a in before] == [
        (1, 2, 0, 1, 4)]
    assert [(a.request_id, a.seq) for a in after] == [(2, 4), (2, 9)]
    assert still is not None and (still.status, still.ended_at) == ("finished", 2.0)


async def test_roundtrip_and_reads(store: Store, codes: Codes) -> None:
    code, other = codes(), codes()
    with trio.fail_after(20):
        outcome = await store.write(
            [
                session(code, 1, created_at=100.0),
                session(other, 1, created_at=200.0),
                participant(code, 1, name="Ann"),
                participant(code, 2, name="Bo"),
                participant(code, 3, name="Cy"),
                answer(code, 1, 11, seq=3, value=[3, 1, 2]),
                answer(code, 2, 12, seq=2, value="Paris"),
                answer(code, 2, 13, seq=5, question=1, value={"n": 1.5}),
                answer(other, 1, 11, seq=1),
                score(code, 1, 10, seq=4),
                score(code, 2, 10, seq=4),
                EventRecord(code, 2, "answer_accepted", {"participant": 2, "ok": True}, 101.0, 1),
            ]
        )
        assert outcome.refused == frozenset() and outcome.written == 12

        row = await store.load_session(code)
        assert row is not None
        assert (row.code, row.title, row.mode, row.status, row.epoch) == (
            code,
            "Pub night",
            "solo",
            "live",
            1,
        )
        assert row.created_at == 100.0 and row.ended_at is None and row.owner_node is None
        assert row.host_token_hash == "hash-of-host-token"
        assert await store.load_session(codes()) is None

        replay = await store.load_answers(code)
        assert [(a.seq, a.request_id) for a in replay] == [(2, 12), (3, 11), (5, 13)]
        assert [a.value for a in replay] == ["Paris", [3, 1, 2], {"n": 1.5}]
        assert [a.seq for a in await store.load_answers(code, after_seq=2)] == [3, 5]

        results = await store.session_results(code)
        assert results.session == row
        assert [(s.rank, s.name, s.score) for s in results.standings] == [
            (1, "Ann", 10.0),
            (1, "Bo", 10.0),
            (3, "Cy", 0.0),
        ]
        # The export's rows are the stored answers, plus what the export adds (names,
        # question text: none here, no quiz stored).
        export_only = {"name": None, "question_text": None, "answer_text": None,
                       "counted": None, "result": None, "points": None}
        assert tuple(attrs.evolve(a, **export_only) for a in results.answers) == tuple(replay)
        assert [a.counted for a in results.answers] == [True, True, True]
        assert [a.answer_text for a in results.answers][:1] == ["Paris"]

        await store.write([SessionEnded(code, 150.0, 1)])
        await store.write([SessionEnded(code, 999.0, 1)])  # idempotent: the first end stays
        ended = await store.load_session(code)
        assert ended is not None and (ended.status, ended.ended_at) == ("finished", 150.0)
        mine = {code, other}
        finished = [s.code for s in await store.list_sessions(status="finished") if s.code in mine]
        live = [s.code for s in await store.list_sessions(status="live") if s.code in mine]
        every = [s.code for s in await store.list_sessions() if s.code in mine]
        assert (finished, live, every) == ([code], [other], [code, other])

        with pytest.raises(KeyError):
            await store.session_results(codes())


async def test_same_records_twice_store_once(store: Store, codes: Codes) -> None:
    code = codes()
    batch: list[Record] = [session(code), participant(code, 1)]
    batch += [answer(code, 1, rid) for rid in range(50)]
    batch += [EventRecord(code, s, "tick", {}, 1.0, 1) for s in range(1, 20)]
    with trio.fail_after(20):
        await store.write(batch)
        await store.write(batch)
        await store.write(batch[10:] + batch[:10])
        results = await store.session_results(code)
    assert len(results.answers) == 50
    assert sorted(a.request_id for a in results.answers) == list(range(50))
    assert len(results.standings) == 1


async def test_a_reused_rid_with_a_new_answer_is_a_new_row(store: Store, codes: Codes) -> None:
    """Issue 16.1: a client that restarted its rid counter reuses a rid for a new answer (a new
    seq); both rows are stored. The same record written again is still stored once."""
    code = codes()
    first = answer(code, 1, 2, seq=3, question=0, value=0)
    second = answer(code, 1, 2, seq=9, question=1, value="Beatles")
    with trio.fail_after(20):
        await store.write([session(code), participant(code, 1), first])
        await store.write([second, first])
        await store.write([second])
        stored = await store.load_answers(code)
    assert [(a.seq, a.request_id, a.question, a.value) for a in stored] == [
        (3, 2, 0, 0), (9, 2, 1, "Beatles")]


async def test_the_first_end_of_a_session_stays(store: Store, codes: Codes) -> None:
    """Issue 16.6: ``interrupted`` (the engine stopped, nobody carries the session on) is an end
    like ``finished``: the first one stored keeps its status and time."""
    stopped, done = codes(), codes()
    with trio.fail_after(20):
        await store.write([session(stopped), session(done)])
        await store.write([SessionEnded(stopped, 5.0, 1, status="interrupted")])
        await store.write([SessionEnded(stopped, 9.0, 1), SessionEnded(done, 7.0, 1),
                           SessionEnded(done, 8.0, 1, status="interrupted")])
        rows = {c: await store.load_session(c) for c in (stopped, done)}
        live = {s.code for s in await store.list_sessions(status="live")}
        interrupted = {s.code for s in await store.list_sessions(status="interrupted")}
    assert [(r.status, r.ended_at) for r in rows.values() if r is not None] == [
        ("interrupted", 5.0), ("finished", 7.0)]
    assert stopped in interrupted and stopped not in live and done not in interrupted
    with pytest.raises(ValueError):
        SessionEnded(stopped, 1.0, 1, status="live")


async def test_interrupt_sessions_takes_only_the_owners_older_live_ones(
        store: Store, codes: Codes) -> None:
    old, newer, ended, foreign = codes(), codes(), codes(), codes()
    mine = "node-" + old
    with trio.fail_after(20):
        await store.write([
            attrs.evolve(session(old, created_at=10.0), owner=mine),
            attrs.evolve(session(newer, created_at=30.0), owner=mine),
            attrs.evolve(session(ended, created_at=10.0), owner=mine),
            attrs.evolve(session(foreign, created_at=10.0), owner="node-else-" + old),
            SessionEnded(ended, 15.0, 1),
        ])
        assert await store.interrupt_sessions(mine, created_before=20.0, ended_at=25.0) == [old]
        assert await store.interrupt_sessions(mine, created_before=20.0, ended_at=26.0) == []
        rows = [await store.load_session(c) for c in (old, newer, ended, foreign)]
    assert [(r.status, r.ended_at, r.owner_node) for r in rows if r is not None] == [
        ("interrupted", 25.0, mine), ("live", None, mine), ("finished", 15.0, mine),
        ("live", None, "node-else-" + old)]


async def test_last_seq_is_the_highest_of_events_answers_and_scores(
    store: Store, codes: Codes
) -> None:
    code, other = codes(), codes()
    with trio.fail_after(20):
        assert await store.last_seq(code) == 0  # nothing stored
        await store.write([session(code), participant(code, 1), session(other)])
        assert await store.last_seq(code) == 0
        await store.write([EventRecord(code, 7, "tick", {}, 1.0, 1), answer(code, 1, 1, seq=4)])
        assert await store.last_seq(code) == 7
        await store.write([answer(code, 1, 2, seq=12)])
        assert await store.last_seq(code) == 12
        await store.write([score(code, 1, 3, seq=15)])
        assert await store.last_seq(code) == 15
        await store.write([EventRecord(other, 99, "tick", {}, 1.0, 1)])
        assert await store.last_seq(code) == 15  # another session's rows do not count


async def test_load_events_by_type_after_a_seq(store: Store, codes: Codes) -> None:
    code, other = codes(), codes()
    rows = [EventRecord(code, 1, "participant_joined", {"participant": 1}, 1.0, 1),
            EventRecord(code, 4, "participant_left", {"participant": 1}, 4.0, 1),
            EventRecord(code, 6, "question_opened", {"question": 0}, 6.0, 1),
            EventRecord(code, 9, "participant_kicked", {"participant": 2}, 9.5, 1),
            EventRecord(other, 7, "participant_left", {"participant": 5}, 7.0, 1)]
    with trio.fail_after(20):
        await store.write([session(code), session(other), *rows])
        found = await store.load_events(code, after_seq=3,
                                        types=("participant_left", "participant_kicked"))
        assert [(e.seq, e.type, e.payload, e.at) for e in found] == [
            (4, "participant_left", {"participant": 1}, 4.0),
            (9, "participant_kicked", {"participant": 2}, 9.5)]
        later = await store.load_events(code, after_seq=4, types=("participant_left",))
        assert later == []
        assert await store.load_events(code, after_seq=0, types=()) == []


async def test_scores_never_go_backwards(store: Store, codes: Codes) -> None:
    code = codes()
    with trio.fail_after(20):
        await store.write([session(code), participant(code, 1), score(code, 1, 30, seq=9)])
        await store.write([score(code, 1, 5, seq=3)])  # older: ignored
        await store.write([score(code, 1, 99, seq=9)])  # same seq: ignored (idempotent)
        standing = (await store.session_results(code)).standings[0]
        assert (standing.score, standing.updated_seq) == (30, 9)
        await store.write([score(code, 1, 42, seq=10)])
        standing = (await store.session_results(code)).standings[0]
        assert (standing.score, standing.updated_seq) == (42, 10)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(1, 3), st.integers(0, 30), st.integers(0, 100)),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=5,
    )
)
async def test_scores_end_at_the_newest_seq_whatever_the_batching(
    store_url: str, codes: Codes, batches: list[list[tuple[int, int, int]]]
) -> None:
    # Opens its own store: hypothesis runs each example in a trio run of its own.
    code = codes()
    with trio.fail_after(20):
        store = await open_store(store_url)
        try:
            await store.write([session(code)])
            for batch in batches:
                await store.write([score(code, pid, points, seq) for pid, seq, points in batch])
            results = await store.session_results(code)
        finally:
            await store.aclose()
    stored = {s.participant_id: (s.updated_seq, s.score) for s in results.standings}
    newest: dict[int, tuple[int, int]] = {}
    for batch in batches:
        # Within one batch the plan keeps the first record of the highest seq.
        for pid, seq, points in batch:
            if pid not in newest or seq > newest[pid][0]:
                newest[pid] = (seq, points)
    assert stored == {pid: (seq, float(points)) for pid, (seq, points) in newest.items()}


async def test_stale_epoch_is_refused_per_session(store: Store, codes: Codes) -> None:
    fenced, bystander = codes(), codes()
    with trio.fail_after(20):
        await store.write([session(fenced, 1), session(bystander, 1), participant(fenced, 1)])
        await store.claim_session(fenced, 2, owner="node-b")
        claimed = await store.load_session(fenced)
        assert claimed is not None and (claimed.epoch, claimed.owner_node) == (2, "node-b")

        # The old owner (epoch 1) flushes a batch holding both sessions.
        outcome = await store.write(
            [
                answer(fenced, 1, 1, epoch=1),
                answer(bystander, 1, 1, epoch=1),
                score(fenced, 1, 5, 1, epoch=1),
            ]
        )
        assert outcome.refused == {fenced}
        assert outcome.written == 1
        assert await store.load_answers(fenced) == []
        assert [a.request_id for a in await store.load_answers(bystander)] == [1]
        assert (await store.session_results(fenced)).standings[0].score == 0.0

        # A claim never lowers the epoch; the new owner's writes (epoch 2) go through.
        await store.claim_session(fenced, 1)
        again = await store.load_session(fenced)
        assert again is not None and again.epoch == 2
        outcome = await store.write([answer(fenced, 1, 2, epoch=2)])
        assert outcome.refused == frozenset()
        # A batch mixing epochs for one session is refused as a whole for that session.
        outcome = await store.write([answer(fenced, 1, 3, epoch=2), answer(fenced, 1, 4, epoch=1)])
        assert outcome.refused == {fenced}
        assert [a.request_id for a in await store.load_answers(fenced)] == [2]

        # A write carrying a higher epoch raises the stored one (highest epoch seen wins).
        await store.write([answer(fenced, 1, 5, epoch=4)])
        raised = await store.load_session(fenced)
        assert raised is not None and raised.epoch == 4
        assert (await store.write([answer(fenced, 1, 6, epoch=3)])).refused == {fenced}

        with pytest.raises(KeyError):
            await store.claim_session(codes(), 1)


async def test_a_bad_record_is_a_store_error_and_writes_nothing(store: Store, codes: Codes) -> None:
    code = codes()
    with trio.fail_after(20):
        with pytest.raises(StoreError) as info:
            await store.write([session(code), answer(code, 1, 1, value=object())])
        assert type(info.value) is StoreError  # not StoreUnavailable: never retried
        assert await store.load_session(code) is None


async def test_closed_store_refuses_calls(store_url: str) -> None:
    with trio.fail_after(20):
        opened = await open_store(store_url)
        await opened.aclose()
        await opened.aclose()  # idempotent
        with pytest.raises(StoreError):
            await opened.load_session("X")
        with pytest.raises(StoreError):
            await opened.write([session("X")])


@pytest.mark.parametrize(
    "url", ["mysql://x", "sqlite:///", "sqlite:///:memory:", "sqlite:///x?fast=1"]
)
async def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        await open_store(url)


async def test_sqlite_directory_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(StoreError, match="cannot create the database directory"):
        await open_store(f"sqlite:///{blocker / 'sub' / 'pubquiz.sqlite3'}")
