"""The embedded default store: one SQLite file, nothing else installed.

Durability choice: WAL journal with ``synchronous=NORMAL``. A commit returns once its pages are
in the WAL file (written to the OS, not fsynced), so a committed batch survives the engine being
killed (kill -9, OOM, crash) because the kernel still holds the pages; only a power loss or a
kernel crash can lose the last commits. That is exactly the "durable ack" promise (DESIGN.md
section 9: 0 acked answers lost on kill -9), at a fraction of the cost of an fsync per batch.
``?synchronous=full`` in the URL fsyncs the WAL on every commit when power loss matters too.

Rules this module keeps:

1. Two connections, each owned by its own ``Worker`` thread (SQLite connections stay on the
   thread that made them): the writer applies batches, the reader serves reads, and WAL lets the
   reader see the last commit without waiting for a batch in progress.
2. A write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so a
   concurrent writer waits on ``busy_timeout`` instead of failing half way).
3. ``sqlite3`` exceptions never escape: busy/locked/I/O/full map to ``StoreUnavailable``
   (retryable), the rest to ``StoreError``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pubquiz_engine.errors import StoreError, StoreUnavailable
from pubquiz_engine.store import migrations
from pubquiz_engine.store._worker import Worker
from pubquiz_engine.store.plan import decide_fence, plan_batch
from pubquiz_engine.store.reads import SQLITE, Reads
from pubquiz_engine.store.records import (
    AnswerRow,
    EventRow,
    ParticipantRow,
    Record,
    Results,
    SessionRow,
    WriteOutcome,
)

T = TypeVar("T")

SYNCHRONOUS_MODES = ("normal", "full")

# SQLite result codes (primary, low byte) that a retry can cure.
_RETRYABLE = {
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
}


def _translate(exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = name.split("_")[0:2]
    if "_".join(primary) in _RETRYABLE:
        return StoreUnavailable(f"sqlite: {exc} ({name})")
    return StoreError(f"sqlite: {exc} ({name or type(exc).__name__})")


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


# --- SQL (column orders: see plan.py) --------------------------------------------------------

_INSERT_QUIZ = "INSERT INTO quizzes VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
_INSERT_SESSION = (
    "INSERT INTO quiz_sessions (code, quiz_id, title, mode, status, created_at, epoch,"
    " host_token_hash, owner_node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_SELECT_EPOCHS = (
    "SELECT code, epoch FROM quiz_sessions WHERE code IN (SELECT value FROM json_each(?))"
)
_RAISE_EPOCH = "UPDATE quiz_sessions SET epoch = ?2 WHERE code = ?1 AND epoch < ?2"
# The first end wins: a session already finished or interrupted keeps its status and time.
_END_SESSION = (
    "UPDATE quiz_sessions SET status = ?3, ended_at = ?2 WHERE code = ?1 AND status = 'live'"
)
_INSERT_PARTICIPANT = "INSERT INTO participants VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
_INSERT_ANSWER = "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
_UPSERT_SCORE = (
    "INSERT INTO participant_scores VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (session_code, participant_id) DO UPDATE"
    " SET score = excluded.score, updated_seq = excluded.updated_seq, epoch = excluded.epoch"
    " WHERE participant_scores.updated_seq < excluded.updated_seq"
)
_INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"

_UPSERT_CACHE = (
    "INSERT INTO generation_cache VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
    " SET value = excluded.value, created_at = excluded.created_at,"
    " expires_at = excluded.expires_at"
)

#: The read statements (store/reads.py), rendered for this driver.
_READS = Reads(SQLITE)




def parse_sqlite_url(url: str) -> tuple[Path, str]:
    """``sqlite:///relative/x.sqlite3`` or ``sqlite:////abs/x.sqlite3`` (SQLAlchemy's rule:
    what follows the third slash is the path), optional ``?synchronous=normal|full``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r}")
    path, _, query = url[len(prefix) :].partition("?")
    if not path or path == ":memory:":
        raise ValueError("sqlite URL needs a file path (two connections share it; no :memory:)")
    synchronous = "normal"
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key != "synchronous" or value.lower() not in SYNCHRONOUS_MODES:
            raise ValueError(f"unsupported sqlite URL option {part!r}")
        synchronous = value.lower()
    return Path(path), synchronous


class SqliteStore:
    """``Store`` on a SQLite file. Open with ``await SqliteStore.open(path)``."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer = Worker(f"pubquiz-sqlite-writer:{path.name}")
        self._reader = Worker(f"pubquiz-sqlite-reader:{path.name}")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, synchronous: str = "normal") -> SqliteStore:
        """Open (creating if needed) the database and apply pending migrations."""
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        store = cls(Path(path), synchronous)
        try:
            store._wconn = await store._writer.run(store._connect)
            await store._writer.run(store._migrate)
            store._rconn = await store._reader.run(store._connect)
        except BaseException:
            await store.aclose()
            raise
        return store

    # --- connection set-up (on the worker threads) ----------------------------------------

    def _connect(self) -> sqlite3.Connection:
        with _mapped():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the database directory "
                                 f"{self.path.parent}: {exc.strerror or exc}") from exc
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

    def _migrate(self) -> None:
        conn = self._w()
        with _mapped(), _transaction(conn):
            conn.execute(migrations.SCHEMA_VERSION_TABLE)
            (current,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()
            known = migrations.load("sqlite")
            if current > len(known):
                raise StoreError(
                    f"database schema version {current} is newer than this engine ({len(known)})"
                )
            for migration in known[current:]:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )

    def _w(self) -> sqlite3.Connection:
        if self._wconn is None:
            raise StoreError("store is closed")
        return self._wconn

    def _r(self) -> sqlite3.Connection:
        if self._rconn is None:
            raise StoreError("store is closed")
        return self._rconn

    async def _on(self, worker: Worker, job: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        return await worker.run(job)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            with _mapped():
                return fn(self._r())

        return await self._on(self._reader, job)

    # --- Store -----------------------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        if not records:
            return WriteOutcome()

        def job() -> WriteOutcome:
            # Planned on the worker thread: pure CPU work, kept off the event loop. A value
            # that is not JSON raises StoreError here, before the transaction starts.
            plan = plan_batch(records)
            conn = self._w()
            with _mapped(), _transaction(conn):
                conn.executemany(_INSERT_QUIZ, plan.quizzes)
                conn.executemany(_INSERT_SESSION, plan.sessions)
                stored = dict(conn.execute(_SELECT_EPOCHS, (json.dumps(plan.codes),)).fetchall())
                fence = decide_fence(plan.epochs, stored)
                conn.executemany(_RAISE_EPOCH, list(fence.raise_to.items()))
                rest = plan.without(fence.refused)
                conn.executemany(_END_SESSION, rest.ended)
                conn.executemany(_INSERT_PARTICIPANT, rest.participants)
                conn.executemany(_INSERT_ANSWER, rest.answers)
                conn.executemany(_UPSERT_SCORE, rest.scores)
                conn.executemany(_INSERT_EVENT, rest.events)
            written = sum(1 for r in records if r.code not in fence.refused)
            return WriteOutcome(fence.refused, written)

        return await self._on(self._writer, job)

    async def claim_session(self, code: str, epoch: int, *, owner: str | None = None) -> None:
        def job() -> None:
            conn = self._w()
            with _mapped(), _transaction(conn):
                cur = conn.execute(
                    "UPDATE quiz_sessions SET epoch = MAX(epoch, ?2),"
                    " owner_node = COALESCE(?3, owner_node) WHERE code = ?1",
                    (code, epoch, owner),
                )
                if cur.rowcount == 0:
                    raise KeyError(code)

        await self._on(self._writer, job)

    async def interrupt_sessions(self, owner: str, *, created_before: float,
                                 ended_at: float) -> list[str]:
        def job() -> list[str]:
            conn = self._w()
            with _mapped(), _transaction(conn):
                rows = conn.execute(
                    "UPDATE quiz_sessions SET status = 'interrupted', ended_at = ?3"
                    " WHERE owner_node = ?1 AND status = 'live' AND created_at < ?2"
                    " RETURNING code",
                    (owner, created_before, ended_at),
                ).fetchall()
            return sorted(code for (code,) in rows)

        return await self._on(self._writer, job)

    async def load_session(self, code: str) -> SessionRow | None:
        return await self._read(lambda conn: _READS.load_session(conn, code))

    async def list_sessions(self, *, status: str | None = None) -> list[SessionRow]:
        return await self._read(lambda conn: _READS.list_sessions(conn, status))

    async def load_participants(self, code: str) -> list[ParticipantRow]:
        return await self._read(lambda conn: _READS.load_participants(conn, code))

    async def load_events(self, code: str, *, after_seq: int,
                          types: Sequence[str]) -> list[EventRow]:
        return await self._read(lambda conn: _READS.load_events(conn, code, after_seq, types))

    async def last_seq(self, code: str) -> int:
        return await self._read(lambda conn: _READS.read_last_seq(conn, code))

    async def load_answers(self, code: str, *, after_seq: int = 0) -> list[AnswerRow]:
        return await self._read(lambda conn: _READS.load_answers(conn, code, after_seq))

    async def session_results(self, code: str) -> Results:
        def fn(conn: sqlite3.Connection) -> Results:
            # One read transaction: the queries see the same commit.
            with _transaction(conn, "BEGIN"):
                return _READS.session_results(conn, code)

        return await self._read(fn)

    async def cache_get(self, key: str) -> str | None:
        return await self._read(lambda conn: _READS.cache_get(conn, key, time.time()))

    async def cache_put(self, key: str, value: str, ttl_seconds: float) -> None:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")

        def job() -> None:
            conn, now = self._w(), time.time()
            with _mapped(), _transaction(conn):
                conn.execute("DELETE FROM generation_cache WHERE expires_at <= ?", (now,))
                conn.execute(_UPSERT_CACHE, (key, value, now, now + ttl_seconds))

        await self._on(self._writer, job)

    async def aclose(self) -> None:
        self._closed = True
        for worker, attr in ((self._writer, "_wconn"), (self._reader, "_rconn")):
            conn: sqlite3.Connection | None = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                await worker.run(conn.close)
            worker.close()


# Standings: every score row (with its participant's name and team when there is one: in team
# mode the server may key scores by team), plus every participant without a score row at 0.


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    conn.execute("COMMIT")
