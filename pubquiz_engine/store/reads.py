"""The stores' read statements, written once, run with either backend's connection.

Rules this module keeps:

1. **One set of statements.** Every read the ``Store`` interface offers is written here once,
   with ``?`` for its parameters; a ``Dialect`` renders them for its driver (``%s`` for
   psycopg) and supplies the two things the backends really do differently: how a column is
   tested against a list parameter (``= ANY(%s)`` with a list, ``IN (SELECT value FROM
   json_each(?))`` with a JSON array) and how a stored JSON column comes back (psycopg
   decodes ``jsonb``; SQLite returns the text).
2. **Backends keep what is theirs**: their connection, worker thread, transaction and error
   mapping. A read here is a plain function of a DB-API connection (``execute`` returning a
   cursor with ``fetchone`` / ``fetchall``), run inside whatever the backend wraps it in.
   ``session_results`` reads several tables: the backend runs it in one read transaction.
3. No driver is imported here: ``postgres.py`` stays the only module that imports psycopg,
   ``sqlite.py`` the only one that imports sqlite3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from pubquiz_engine.store.export_results import EVENT_TYPES, assemble
from pubquiz_engine.store.records import (
    AnswerRow,
    EventRow,
    ParticipantRow,
    Results,
    SessionRow,
)

SESSION_COLUMNS = (
    "code, quiz_id, title, mode, status, created_at, ended_at, epoch, host_token_hash, owner_node"
)
ANSWER_COLUMNS = (
    "session_code, participant_id, team, question, value, request_id, submitted_at, seq, epoch"
)


@attrs.frozen
class Dialect:
    """What differs between the backends' drivers for the reads below (rule 1)."""

    #: The driver's parameter marker: ``?`` (sqlite3) or ``%s`` (psycopg).
    placeholder: str
    #: ``column`` tested against one list parameter, written with ``?``.
    in_list: Callable[[str], str]
    #: The value to bind for that list parameter.
    list_param: Callable[[Sequence[str]], Any]
    #: A stored JSON column's value, as Python data.
    json_value: Callable[[Any], Any]


SQLITE = Dialect(
    placeholder="?",
    in_list=lambda column: f"{column} IN (SELECT value FROM json_each(?))",
    list_param=lambda values: json.dumps(list(values)),
    json_value=json.loads,
)

POSTGRES = Dialect(
    placeholder="%s",
    in_list=lambda column: f"{column} = ANY(?)",
    list_param=list,
    json_value=lambda value: value,  # jsonb comes back decoded
)


class Reads:
    """The read statements rendered for one dialect, and the functions that run them."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def sql(text: str) -> str:
            # No statement here holds a literal ``?`` or ``%``: the marker swap is exact.
            return text.replace("?", dialect.placeholder)

        self.session = sql(f"SELECT {SESSION_COLUMNS} FROM quiz_sessions WHERE code = ?")
        self.all_sessions = sql(
            f"SELECT {SESSION_COLUMNS} FROM quiz_sessions ORDER BY created_at, code")
        self.sessions_by_status = sql(
            f"SELECT {SESSION_COLUMNS} FROM quiz_sessions WHERE status = ?"
            " ORDER BY created_at, code")
        self.participants = sql(
            "SELECT session_code, participant_id, name, team, joined_at, resume_token_hash"
            " FROM participants WHERE session_code = ? ORDER BY participant_id")
        self.events = sql(
            "SELECT session_code, seq, type, payload, at FROM events WHERE session_code = ?"
            f" AND seq > ? AND {dialect.in_list('type')} ORDER BY seq")
        self.last_seq = sql(
            "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM events WHERE session_code = ?"
            " UNION ALL SELECT MAX(seq) FROM answers WHERE session_code = ?"
            " UNION ALL SELECT MAX(updated_seq) FROM participant_scores"
            " WHERE session_code = ?) AS m")
        self.answers_after = sql(
            f"SELECT {ANSWER_COLUMNS} FROM answers WHERE session_code = ? AND seq > ?"
            " ORDER BY seq, participant_id, request_id")
        self.result_people = sql(
            "SELECT participant_id, name, team FROM participants WHERE session_code = ?")
        self.result_scores = sql(
            "SELECT participant_id, score, updated_seq FROM participant_scores"
            " WHERE session_code = ?")
        self.result_events = sql(
            f"SELECT type, payload FROM events WHERE session_code = ?"
            f" AND {dialect.in_list('type')} ORDER BY seq")
        self.result_answers = sql(
            f"SELECT {ANSWER_COLUMNS} FROM answers WHERE session_code = ?"
            " ORDER BY seq, participant_id, request_id")
        self.quiz = sql("SELECT data FROM quizzes WHERE quiz_id = ?")
        self.cache = sql("SELECT value FROM generation_cache WHERE key = ? AND expires_at > ?")

    # --- the reads (``conn``: a DB-API connection of the dialect's driver) -------------------

    def answer_row(self, row: Sequence[Any]) -> AnswerRow:
        code, pid, team, question, value, rid, at, seq, epoch = row
        return AnswerRow(code, pid, team, question, self.dialect.json_value(value), rid, at,
                         seq, epoch)

    def load_session(self, conn: Any, code: str) -> SessionRow | None:
        row = conn.execute(self.session, (code,)).fetchone()
        return None if row is None else SessionRow(*row)

    def list_sessions(self, conn: Any, status: str | None) -> list[SessionRow]:
        if status is None:
            rows = conn.execute(self.all_sessions).fetchall()
        else:
            rows = conn.execute(self.sessions_by_status, (status,)).fetchall()
        return [SessionRow(*r) for r in rows]

    def load_participants(self, conn: Any, code: str) -> list[ParticipantRow]:
        return [ParticipantRow(*r) for r in conn.execute(self.participants, (code,)).fetchall()]

    def load_events(self, conn: Any, code: str, after_seq: int,
                    types: Sequence[str]) -> list[EventRow]:
        rows = conn.execute(self.events,
                            (code, after_seq, self.dialect.list_param(types))).fetchall()
        return [EventRow(r[0], r[1], r[2], self.dialect.json_value(r[3]), r[4]) for r in rows]

    def read_last_seq(self, conn: Any, code: str) -> int:
        row = conn.execute(self.last_seq, (code, code, code)).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def load_answers(self, conn: Any, code: str, after_seq: int) -> list[AnswerRow]:
        rows = conn.execute(self.answers_after, (code, after_seq)).fetchall()
        return [self.answer_row(r) for r in rows]

    def session_results(self, conn: Any, code: str) -> Results:
        """Run by the backend inside one read transaction (rule 2); ``KeyError`` if unknown."""
        row = conn.execute(self.session, (code,)).fetchone()
        if row is None:
            raise KeyError(code)
        people = conn.execute(self.result_people, (code,)).fetchall()
        scores = conn.execute(self.result_scores, (code,)).fetchall()
        events = conn.execute(
            self.result_events, (code, self.dialect.list_param(EVENT_TYPES))).fetchall()
        quiz = conn.execute(self.quiz, (row[1],)).fetchone()
        answers = conn.execute(self.result_answers, (code,)).fetchall()
        return assemble(
            SessionRow(*row), [tuple(p) for p in people], [tuple(s) for s in scores],
            [self.answer_row(r) for r in answers],
            [(kind, self.dialect.json_value(payload)) for kind, payload in events],
            self.dialect.json_value(quiz[0]) if quiz is not None else None,
        )

    def cache_get(self, conn: Any, key: str, now: float) -> str | None:
        row = conn.execute(self.cache, (key, now)).fetchone()
        return None if row is None else str(row[0])


__all__ = ["ANSWER_COLUMNS", "POSTGRES", "SESSION_COLUMNS", "SQLITE", "Dialect", "Reads"]
