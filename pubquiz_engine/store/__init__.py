"""Persistence: the ``Store`` port, its SQLite and PostgreSQL backends, and the write-behind.

``await open_store(url)`` connects and applies migrations; the URL picks the backend:

- ``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path.sqlite3`` (the embedded
  default, nothing else installed; ``?synchronous=full`` to fsync every commit),
- ``postgresql://user@host:port/db`` (or ``postgres://``): production, needs the ``postgres``
  extra (psycopg 3). psycopg is imported only when such a URL is opened.

The server writes through one ``WriteBehind`` per process (group commit, bounded queue, retries),
reads through the ``Store`` methods, and formats exports with ``store.export``.

Rules this package keeps: it never imports ``server``; blocking database calls run on one
dedicated thread per connection, never on the trio thread; driver exceptions are translated to
``errors.StoreError`` / ``errors.StoreUnavailable`` inside the backend module that caught them.
"""

from __future__ import annotations

from pubquiz_engine.store.records import (
    AnswerRecord,
    AnswerRow,
    EventRecord,
    EventRow,
    ParticipantRecord,
    ParticipantRow,
    Record,
    Results,
    ScoreRecord,
    SessionEnded,
    SessionRecord,
    SessionRow,
    StandingRow,
    Store,
    TeamStandingRow,
    WriteOutcome,
)
from pubquiz_engine.store.writebehind import Ticket, WriteBehind, WriteBehindStats

__all__ = [
    "AnswerRecord",
    "AnswerRow",
    "EventRecord",
    "EventRow",
    "ParticipantRecord",
    "ParticipantRow",
    "Record",
    "Results",
    "ScoreRecord",
    "SessionEnded",
    "SessionRecord",
    "SessionRow",
    "StandingRow",
    "Store",
    "TeamStandingRow",
    "Ticket",
    "WriteBehind",
    "WriteBehindStats",
    "WriteOutcome",
    "open_store",
]


async def open_store(url: str) -> Store:
    """Open the store the URL names and apply pending migrations.

    Raises ``ValueError`` for a URL it cannot read, ``errors.StoreUnavailable`` when the
    database cannot be reached, ``errors.StoreError`` for anything else that fails.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        from pubquiz_engine.store.sqlite import SqliteStore, parse_sqlite_url

        path, synchronous = parse_sqlite_url(url)
        return await SqliteStore.open(path, synchronous=synchronous)
    if scheme in ("postgresql", "postgres"):
        try:
            from pubquiz_engine.store.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - the postgres extra is not installed
            raise ValueError(f"{scheme} URLs need pubquiz-engine[postgres]: {exc}") from exc
        return await PostgresStore.open(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r} (use sqlite:/// or postgresql://)")
