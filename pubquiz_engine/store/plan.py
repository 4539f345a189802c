"""The pure half of a write: records in, rows and a fencing decision out.

Both backends run the same steps inside one transaction, and everything that is not SQL lives
here, so it is tested once, without a database:

1. ``plan_batch(records)`` groups the records into rows per table (tuples in a fixed column
   order that both backends' SQL use, the session code first), removes duplicates inside the
   batch (the newest ``seq`` wins for scores, the first copy for everything else), and notes the
   lowest and highest epoch each session's records carry.
2. The backend inserts quizzes and sessions (``ON CONFLICT DO NOTHING``), then reads the stored
   epochs of the batch's sessions (locking those rows on PostgreSQL).
3. ``decide_fence(plan.epochs, stored)`` says which sessions are refused (a record's epoch is
   below the stored one) and which stored epochs rise (a record's epoch is above it).
4. ``plan.without(refused)`` drops the refused sessions' rows; the backend inserts the rest.

Rules this module keeps: no I/O, no clock, no trio; a record that cannot be encoded raises
``errors.StoreError`` (a bug in what was submitted, never worth a retry).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from pubquiz_engine.errors import StoreError
from pubquiz_engine.store.records import (
    AnswerRecord,
    EventRecord,
    ParticipantRecord,
    Record,
    ScoreRecord,
    SessionEnded,
    SessionRecord,
    StandingRow,
)

# Row shapes (the column order of every INSERT in both backends):
#   quizzes:      (quiz_id, title, data_json, first_seen_at)
#   sessions:     (code, quiz_id, title, mode, status, created_at, epoch, host_token_hash,
#                  owner_node)
#   ended:        (code, ended_at, status)
#   participants: (code, participant_id, name, team, joined_at, resume_token_hash)
#   answers:      (code, participant_id, request_id, question, value_json, team, submitted_at,
#                  seq, epoch)
#   scores:       (code, participant_id, score, seq, epoch)
#   events:       (code, seq, type, payload_json, at, epoch)
Row = tuple[Any, ...]


def dumps(value: Any) -> str:
    """Compact JSON text for a value column. Raises ``StoreError`` for a non-JSON value."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"value is not JSON-serialisable: {exc}") from exc


def quiz_id_of(quiz_data: Mapping[str, Any]) -> str:
    """The content address of a quiz: sessions of the same quiz share one ``quizzes`` row."""
    canonical = json.dumps(quiz_data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@attrs.frozen
class BatchPlan:
    quizzes: list[Row]
    sessions: list[Row]
    ended: list[Row]
    participants: list[Row]
    answers: list[Row]
    scores: list[Row]
    events: list[Row]
    #: session code -> (lowest epoch, highest epoch) among the batch's records for it.
    epochs: dict[str, tuple[int, int]]

    @property
    def codes(self) -> list[str]:
        """The batch's session codes, sorted (a stable lock order on PostgreSQL)."""
        return sorted(self.epochs)

    def without(self, refused: Iterable[str]) -> BatchPlan:
        """The same plan minus every row of the refused sessions (quizzes stay: shared)."""
        drop = frozenset(refused)
        if not drop:
            return self

        def keep(rows: list[Row]) -> list[Row]:
            return [row for row in rows if row[0] not in drop]

        return BatchPlan(
            quizzes=self.quizzes,
            sessions=keep(self.sessions),
            ended=keep(self.ended),
            participants=keep(self.participants),
            answers=keep(self.answers),
            scores=keep(self.scores),
            events=keep(self.events),
            epochs={code: e for code, e in self.epochs.items() if code not in drop},
        )

    def row_count(self) -> int:
        return sum(
            len(rows)
            for rows in (
                self.sessions,
                self.ended,
                self.participants,
                self.answers,
                self.scores,
                self.events,
            )
        )


def plan_batch(records: Sequence[Record]) -> BatchPlan:
    """Group ``records`` into per-table rows, deduplicated by natural key (see module doc)."""
    quizzes: dict[str, Row] = {}
    sessions: dict[str, Row] = {}
    ended: dict[str, Row] = {}
    participants: dict[tuple[str, int], Row] = {}
    answers: dict[tuple[str, int, int, int], Row] = {}
    scores: dict[tuple[str, int], Row] = {}
    events: dict[tuple[str, int], Row] = {}
    epochs: dict[str, tuple[int, int]] = {}

    for record in records:
        code, epoch = record.code, record.epoch
        low_high = epochs.get(code)
        if low_high is None:
            epochs[code] = (epoch, epoch)
        elif epoch < low_high[0] or epoch > low_high[1]:
            epochs[code] = (min(epoch, low_high[0]), max(epoch, low_high[1]))

        # The most frequent records first: this loop runs for every answer.
        if isinstance(record, AnswerRecord):
            key4 = (code, record.participant_id, record.request_id, record.seq)
            if key4 not in answers:
                answers[key4] = (
                    code,
                    record.participant_id,
                    record.request_id,
                    record.question,
                    dumps(record.value),
                    record.team,
                    record.submitted_at,
                    record.seq,
                    epoch,
                )
        elif isinstance(record, ScoreRecord):
            key2 = (code, record.participant_id)
            old = scores.get(key2)
            # Newest seq wins, also inside one batch: an UPSERT may not touch a row twice.
            if old is None or record.seq > old[3]:
                scores[key2] = (code, record.participant_id, record.score, record.seq, epoch)
        elif isinstance(record, EventRecord):
            key2 = (code, record.seq)
            if key2 not in events:
                events[key2] = (
                    code,
                    record.seq,
                    record.type,
                    dumps(record.payload),
                    record.at,
                    epoch,
                )
        elif isinstance(record, ParticipantRecord):
            key2 = (code, record.participant_id)
            if key2 not in participants:
                participants[key2] = (
                    code,
                    record.participant_id,
                    record.name,
                    record.team,
                    record.joined_at,
                    record.resume_token_hash,
                )
        elif isinstance(record, SessionRecord):
            if code not in sessions:
                quiz_id = quiz_id_of(record.quiz_data)
                quizzes.setdefault(
                    quiz_id,
                    (quiz_id, record.quiz_title, dumps(record.quiz_data), record.created_at),
                )
                sessions[code] = (
                    code,
                    quiz_id,
                    record.quiz_title,
                    record.mode,
                    record.status,
                    record.created_at,
                    epoch,
                    record.host_token_hash,
                    record.owner,
                )
        elif isinstance(record, SessionEnded):
            ended.setdefault(code, (code, record.ended_at, record.status))
        else:  # pragma: no cover - the Record union is closed; mypy checks the branches
            raise StoreError(f"not a store record: {type(record).__name__}")

    return BatchPlan(
        quizzes=list(quizzes.values()),
        sessions=list(sessions.values()),
        ended=list(ended.values()),
        participants=list(participants.values()),
        answers=list(answers.values()),
        scores=list(scores.values()),
        events=list(events.values()),
        epochs=epochs,
    )


@attrs.frozen
class FenceDecision:
    #: sessions whose records must not be written (a record's epoch < the stored epoch)
    refused: frozenset[str]
    #: session code -> new stored epoch (a record's epoch > the stored epoch)
    raise_to: dict[str, int]


def decide_fence(epochs: Mapping[str, tuple[int, int]], stored: Mapping[str, int]) -> FenceDecision:
    """Fencing, the database half. A session without a stored row is not fenced (there is no
    epoch to compare with yet): its SessionRecord, when it comes, creates the row."""
    refused: set[str] = set()
    raise_to: dict[str, int] = {}
    for code, (low, high) in epochs.items():
        current = stored.get(code)
        if current is None:
            continue
        if low < current:
            refused.add(code)
        elif high > current:
            raise_to[code] = high
    return FenceDecision(frozenset(refused), raise_to)


def rank_standings(
    rows: Iterable[tuple[int, str | None, str | None, float, int | None]],
) -> tuple[StandingRow, ...]:
    """Order ``(participant_id, name, team, score, updated_seq)`` rows into standings.

    Order: score descending, then name, then participant id (deterministic; the game's own
    tie-break lives in the game layer). Equal scores share a rank, the next rank skips ("1,2,2,4").
    """
    ordered = sorted(rows, key=lambda r: (-r[3], r[1] or "", r[0]))
    out: list[StandingRow] = []
    previous: float | None = None
    rank = 0
    for position, (pid, name, team, score, seq) in enumerate(ordered, start=1):
        if score != previous:
            rank, previous = position, score
        out.append(StandingRow(rank, pid, name, team, int(score), seq))
    return tuple(out)
