"""Record builders and test doubles shared by the store tests (imported by name: pytest puts
this directory on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from pubquiz_engine.errors import StoreUnavailable
from pubquiz_engine.store import (
    AnswerRecord,
    AnswerRow,
    ParticipantRecord,
    Record,
    Results,
    ScoreRecord,
    SessionRecord,
    SessionRow,
    Store,
    WriteOutcome,
)

QUIZ = {"title": "Pub night", "rounds": [{"title": "R1", "questions": [{"prompt": "2+2?"}]}]}


def session(code: str, epoch: int = 1, *, created_at: float = 1_700_000_000.0) -> SessionRecord:
    return SessionRecord(code, "Pub night", QUIZ, "solo", created_at, epoch, "hash-of-host-token")


def participant(
    code: str, pid: int, epoch: int = 1, *, name: str | None = None
) -> ParticipantRecord:
    return ParticipantRecord(code, pid, name or f"player{pid}", None, 1.0 + pid, epoch, f"rt{pid}")


def answer(
    code: str,
    pid: int,
    rid: int,
    *,
    seq: int | None = None,
    epoch: int = 1,
    question: int = 0,
    value: object = None,
) -> AnswerRecord:
    return AnswerRecord(
        code,
        pid,
        None,
        question,
        {"choice": rid % 4} if value is None else value,
        rid,
        1_700_000_100.0 + rid / 1000,
        rid + 1 if seq is None else seq,
        epoch,
    )


def score(code: str, pid: int, points: float, seq: int, epoch: int = 1) -> ScoreRecord:
    return ScoreRecord(code, pid, points, seq, epoch)


class FlakyStore:
    """Wraps a real store; ``fail_next(n, after_commit=...)`` makes the next n writes raise
    ``StoreUnavailable``, either before touching the database or after the inner write
    committed (the "COMMIT went through but the connection died before the answer" case).
    ``down()`` / ``up()`` make every write fail until lifted. ``failed`` counts failures (the
    inner store's own ``StoreUnavailable`` included) and
    ``wait_failures(k)`` waits (on an event, not a sleep) until k have happened."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._fail_before = 0
        self._fail_after = 0
        self._down = False
        self.failed = 0
        self.writes = 0
        self._waiters: list[tuple[int, trio.Event]] = []

    def fail_next(self, count: int, *, after_commit: bool = False) -> None:
        if after_commit:
            self._fail_after += count
        else:
            self._fail_before += count

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def _failure(self) -> StoreUnavailable:
        self.failed += 1
        for k, event in self._waiters:
            if self.failed >= k:
                event.set()
        return StoreUnavailable("injected fault")

    async def wait_failures(self, k: int) -> None:
        event = trio.Event()
        if self.failed >= k:
            return
        self._waiters.append((k, event))
        await event.wait()

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        self.writes += 1
        await trio.lowlevel.checkpoint()
        if self._down:
            raise self._failure()
        if self._fail_before:
            self._fail_before -= 1
            raise self._failure()
        try:
            outcome = await self.inner.write(records)
        except StoreUnavailable:
            # A real fault of the inner store: counted like an injected one.
            self._failure()
            raise
        if self._fail_after:
            self._fail_after -= 1
            raise self._failure()
        return outcome

    async def claim_session(self, code: str, epoch: int, *, owner: str | None = None) -> None:
        await self.inner.claim_session(code, epoch, owner=owner)

    async def session_results(self, code: str) -> Results:
        return await self.inner.session_results(code)

    async def load_answers(self, code: str, *, after_seq: int = 0) -> list[AnswerRow]:
        return await self.inner.load_answers(code, after_seq=after_seq)

    async def load_session(self, code: str) -> SessionRow | None:
        return await self.inner.load_session(code)

    async def list_sessions(self, *, status: str | None = None) -> list[SessionRow]:
        return await self.inner.list_sessions(status=status)

    async def aclose(self) -> None:
        await self.inner.aclose()
