"""The production store: PostgreSQL through psycopg 3. The only module that imports psycopg.

Rules this module keeps:

1. Two dedicated connections, each owned by its own ``Worker`` thread: the writer (batches,
   claims, migrations) and the reader. A connection found broken is dropped and reopened on the
   next call, so the write-behind's retry loop is all the reconnect logic there is.
2. A batch is one transaction: quizzes and sessions first (``ON CONFLICT DO NOTHING``), then the
   batch's session rows are locked (``SELECT ... ORDER BY code FOR UPDATE``: a takeover's
   ``claim_session`` serialises against an in-flight batch, and two writers lock in the same
   order), the fencing decision is taken (``plan.decide_fence``), and the remaining rows go in
   with ``executemany``, which psycopg runs in pipeline mode: one round trip per table, not per
   row.
3. psycopg exceptions never escape: connection loss, server shutdown, timeouts, serialisation
   failures and deadlocks map to ``StoreUnavailable`` (retryable); the rest to ``StoreError``.
4. Every call is bounded in time, because a started database call is never abandoned (see
   ``_worker``): ``connect_timeout``; a server-side ``statement_timeout``; TCP keepalives (an
   idle connection to a vanished server) and ``tcp_user_timeout`` (sent data unacknowledged:
   a server or path that vanished mid-statement, which neither of the others notices); and a
   cancelled call shuts its connection's socket down (``_Connection.interrupt``), so a stop
   never waits on a database that went silent, even one a proxy keeps acknowledging.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from pubquiz_engine.errors import StoreError, StoreUnavailable
from pubquiz_engine.store import migrations
from pubquiz_engine.store._worker import Worker
from pubquiz_engine.store.plan import decide_fence, plan_batch
from pubquiz_engine.store.reads import POSTGRES, Reads
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

#: Connection settings: every wait bounded (seconds / milliseconds as libpq wants them).
CONNECT_KWARGS: dict[str, Any] = {
    "autocommit": True,  # transactions are explicit: conn.transaction()
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,  # ms; Linux. Sent data unacked this long: the connection fails
    "options": "-c statement_timeout=30000 -c lock_timeout=10000",
}

_MIGRATION_LOCK = 0x70717A31  # pg_advisory_xact_lock key: "pqz1"

_RETRYABLE_SQLSTATE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention
_RETRYABLE_ERRORS = (
    psycopg.OperationalError,  # connection lost / refused / server shutting down
    psycopg.InterfaceError,  # the connection is closed on our side
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.QueryCanceled,  # statement_timeout
)


def _translate(exc: psycopg.Error) -> StoreError:
    state = exc.sqlstate or ""
    if isinstance(exc, _RETRYABLE_ERRORS) or state[:2] in _RETRYABLE_SQLSTATE_CLASSES:
        return StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}".strip())
    return StoreError(f"postgres: {type(exc).__name__}: {exc}".strip())


# --- SQL (column orders: see plan.py) --------------------------------------------------------

_INSERT_QUIZ = (
    "INSERT INTO quizzes VALUES (%s::text, %s::text, %s::jsonb, %s::float8) ON CONFLICT DO NOTHING"
)
_INSERT_SESSION = (
    "INSERT INTO quiz_sessions (code, quiz_id, title, mode, status, created_at, epoch,"
    " host_token_hash, owner_node) VALUES (%s::text, %s::text, %s::text, %s::text, %s::text,"
    " %s::float8, %s::int8, %s::text, %s::text) ON CONFLICT DO NOTHING"
)
_LOCK_EPOCHS = (
    "SELECT code, epoch FROM quiz_sessions WHERE code = ANY(%s::text[]) ORDER BY code FOR UPDATE"
)
_RAISE_EPOCH = (
    "UPDATE quiz_sessions SET epoch = v.epoch FROM (SELECT %s::text AS code, %s::int8 AS epoch) v"
    " WHERE quiz_sessions.code = v.code AND quiz_sessions.epoch < v.epoch"
)
# The first end wins: a session already finished or interrupted keeps its status and time.
_END_SESSION = (
    "UPDATE quiz_sessions SET status = v.status, ended_at = v.ended_at"
    " FROM (SELECT %s::text AS code, %s::float8 AS ended_at, %s::text AS status) v"
    " WHERE quiz_sessions.code = v.code AND quiz_sessions.status = 'live'"
)
_INSERT_PARTICIPANT = (
    "INSERT INTO participants VALUES (%s::text, %s::int8, %s::text, %s::text, %s::float8,"
    " %s::text) ON CONFLICT DO NOTHING"
)
_INSERT_ANSWER = (
    "INSERT INTO answers VALUES (%s::text, %s::int8, %s::int8, %s::int4, %s::jsonb, %s::text,"
    " %s::float8, %s::int8, %s::int8) ON CONFLICT DO NOTHING"
)
_UPSERT_SCORE = (
    "INSERT INTO participant_scores VALUES (%s::text, %s::int8, %s::float8, %s::int8, %s::int8)"
    " ON CONFLICT (session_code, participant_id) DO UPDATE"
    " SET score = excluded.score, updated_seq = excluded.updated_seq, epoch = excluded.epoch"
    " WHERE participant_scores.updated_seq < excluded.updated_seq"
)
_INSERT_EVENT = (
    "INSERT INTO events VALUES (%s::text, %s::int8, %s::text, %s::jsonb, %s::float8, %s::int8)"
    " ON CONFLICT DO NOTHING"
)

_UPSERT_CACHE = (
    "INSERT INTO generation_cache VALUES (%s::text, %s::text, %s::float8, %s::float8)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
    " created_at = excluded.created_at, expires_at = excluded.expires_at"
)

#: The read statements (store/reads.py), rendered for this driver.
_READS = Reads(POSTGRES)

# See sqlite.py: every score row, plus participants without one at 0.




class _Connection:
    """One lazily (re)opened psycopg connection, used only from its worker thread, except for
    ``interrupt``, which any thread may call."""

    def __init__(self, url: str, role: str) -> None:
        self._url = url
        self._role = role
        self.conn: psycopg.Connection[Any] | None = None
        # A duplicate of the connection's socket descriptor, ours alone: ``interrupt`` shuts the
        # socket down through it, and since only ``drop`` closes it (under the lock), it can
        # never name another file, whatever libpq does with its own descriptor meanwhile.
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        # Set by ``interrupt``, read and reset by the call it interrupted: never retried.
        self._interrupted = False

    def get(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.drop()
            conn = psycopg.connect(
                self._url, application_name=f"pubquiz-engine:{self._role}", **CONNECT_KWARGS
            )
            duplicate = socket.socket(fileno=os.dup(conn.fileno()))
            with self._lock:
                self.conn, self._socket = conn, duplicate
        return self.conn

    def drop(self) -> None:
        with self._lock:
            conn, self.conn = self.conn, None
            duplicate, self._socket = self._socket, None
        if duplicate is not None:
            duplicate.close()
        if conn is not None:
            # The socket may be dead already; closing cannot fail in a way we could act on.
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def interrupt(self) -> None:
        """Make a call blocked on this connection return now, with a connection error (the
        connection is then dropped as broken). From any thread; never blocks. A transaction in
        flight is rolled back by the server when it sees the connection go, or was committed
        already: the caller cancelled, so it cannot tell, as with any lost connection."""
        with self._lock:
            self._interrupted = True
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.shutdown(socket.SHUT_RDWR)

    def call(self, fn: Callable[[psycopg.Connection[Any]], T], *, retry_stale: bool = False) -> T:
        """Run ``fn`` with a live connection; translate errors; drop a connection that broke.

        ``retry_stale``: if a connection that was already open turns out dead (the server
        restarted, an admin killed it while idle), run ``fn`` once more on a fresh one. Only
        for reads: writes are retried, and counted, by the write-behind.
        """
        try:
            return self._call(fn, retry_stale)
        finally:
            self._interrupted = False  # (an interrupt only ever comes while a call runs)

    def _call(self, fn: Callable[[psycopg.Connection[Any]], T], retry_stale: bool) -> T:
        reused = self.conn is not None and not self.conn.closed
        try:
            return fn(self.get())
        except psycopg.Error as exc:
            broken = isinstance(exc, _RETRYABLE_ERRORS) or (
                self.conn is not None and self.conn.broken
            )
            if broken:
                self.drop()
            if not (broken and reused and retry_stale) or self._interrupted:
                raise _translate(exc) from exc
        try:
            return fn(self.get())
        except psycopg.Error as exc:
            if isinstance(exc, _RETRYABLE_ERRORS):
                self.drop()
            raise _translate(exc) from exc


class PostgresStore:
    """``Store`` on PostgreSQL. Open with ``await PostgresStore.open(url)``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._writer = Worker("pubquiz-pg-writer")
        self._reader = Worker("pubquiz-pg-reader")
        self._wconn = _Connection(url, "writer")
        self._rconn = _Connection(url, "reader")
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect (writer and reader) and apply pending migrations."""
        store = cls(url)
        try:
            await store._write_call(_migrate)
            await store._read(lambda conn: conn.execute("SELECT 1").fetchone())
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _write_call(self, fn: Callable[[psycopg.Connection[Any]], T], *,
                          retry_stale: bool = False) -> T:
        """``retry_stale``: only for a write that is idempotent (``claim_session``)."""
        if self._closed:
            raise StoreError("store is closed")
        return await self._writer.run(lambda: self._wconn.call(fn, retry_stale=retry_stale),
                                      on_cancel=self._wconn.interrupt)

    async def _read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        return await self._reader.run(lambda: self._rconn.call(fn, retry_stale=True),
                                      on_cancel=self._rconn.interrupt)

    async def writer_backend_pid(self) -> int:
        """The server process id of the writer connection (tests kill it to simulate faults)."""
        return await self._write_call(lambda conn: conn.info.backend_pid)

    # --- Store -----------------------------------------------------------------------------

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        if not records:
            return WriteOutcome()

        def job(conn: psycopg.Connection[Any]) -> WriteOutcome:
            # Planned on the worker thread: pure CPU work, kept off the event loop. A value
            # that is not JSON raises StoreError here, before the transaction starts.
            plan = plan_batch(records)
            with conn.transaction(), conn.cursor() as cur:
                if plan.sessions:
                    cur.executemany(_INSERT_QUIZ, plan.quizzes)
                    cur.executemany(_INSERT_SESSION, plan.sessions)
                cur.execute(_LOCK_EPOCHS, (plan.codes,))
                stored = {code: epoch for code, epoch in cur.fetchall()}
                fence = decide_fence(plan.epochs, stored)
                rest = plan.without(fence.refused)
                for sql, rows in (
                    (_RAISE_EPOCH, list(fence.raise_to.items())),
                    (_END_SESSION, rest.ended),
                    (_INSERT_PARTICIPANT, rest.participants),
                    (_INSERT_ANSWER, rest.answers),
                    (_UPSERT_SCORE, rest.scores),
                    (_INSERT_EVENT, rest.events),
                ):
                    if rows:
                        cur.executemany(sql, rows)
            written = sum(1 for r in records if r.code not in fence.refused)
            return WriteOutcome(fence.refused, written)

        return await self._write_call(job)

    async def claim_session(self, code: str, epoch: int, *, owner: str | None = None) -> None:
        def job(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute(
                "UPDATE quiz_sessions SET epoch = GREATEST(epoch, %s::int8),"
                " owner_node = COALESCE(%s::text, owner_node) WHERE code = %s::text",
                (epoch, owner, code),
            )
            if cur.rowcount == 0:
                raise KeyError(code)

        # Idempotent (GREATEST, COALESCE): safe to run again on a fresh connection when the
        # writer's turns out dead after an outage, so a takeover's claim does not fail on it.
        await self._write_call(job, retry_stale=True)

    async def interrupt_sessions(self, owner: str, *, created_before: float,
                                 ended_at: float) -> list[str]:
        def job(conn: psycopg.Connection[Any]) -> list[str]:
            rows = conn.execute(
                "UPDATE quiz_sessions SET status = 'interrupted', ended_at = %s::float8"
                " WHERE owner_node = %s::text AND status = 'live' AND created_at < %s::float8"
                " RETURNING code",
                (ended_at, owner, created_before),
            ).fetchall()
            return sorted(code for (code,) in rows)

        return await self._write_call(job)

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
        def fn(conn: psycopg.Connection[Any]) -> Results:
            # REPEATABLE READ: the queries see one snapshot.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return _READS.session_results(conn, code)

        return await self._read(fn)

    async def cache_get(self, key: str) -> str | None:
        return await self._read(lambda conn: _READS.cache_get(conn, key, time.time()))

    async def cache_put(self, key: str, value: str, ttl_seconds: float) -> None:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")

        def job(conn: psycopg.Connection[Any]) -> None:
            now = time.time()
            with conn.transaction():
                conn.execute(
                    "DELETE FROM generation_cache WHERE expires_at <= %s::float8", (now,)
                )
                conn.execute(_UPSERT_CACHE, (key, value, now, now + ttl_seconds))

        await self._write_call(job)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.run(self._wconn.drop)
        await self._reader.run(self._rconn.drop)
        self._writer.close()
        self._reader.close()


def _migrate(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        # Concurrent start-ups queue here; the loser then sees the migrations applied.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(migrations.SCHEMA_VERSION_TABLE)
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        known = migrations.load("postgres")
        if current > len(known):
            raise StoreError(
                f"database schema version {current} is newer than this engine ({len(known)})"
            )
        for migration in known[current:]:
            for statement in migration.statements:
                conn.execute(statement)  # no parameters: sent as written
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
