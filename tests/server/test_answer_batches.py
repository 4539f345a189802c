"""Answers a pass at a time (issue 18; session rule 8, connection rule 6), over real sockets
and a real SQLite store, with both transport readers.

Players here are plain non-blocking sockets (``Raw`` from the reader's tests) written with
``send()`` from the test task without awaiting, so every player's frames are in the kernel
before the engine runs again: the next pass sees all of them at once and the session gets
them as one batch. Durable commits are held with a gate (``HeldStore``); a test that checks
that nothing was sent waits for the write to reach the gate and for every task to block
(``wait_all_tasks_blocked``), then reads without waiting. Nothing sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from engine_fixtures import short_quiz
from test_admission import GatedStore
from test_transport_reader import Raw, connect, masked

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.connection import ANSWERS_PER_PASS
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.server.transport.reader import epoll_available
from pubquiz_engine.store import Record, WriteOutcome, open_store


@pytest.fixture(params=["epoll", "portable"])
def reader(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "epoll" and not epoll_available():
        pytest.skip("no select.epoll here")
    return kind


class HeldStore(GatedStore):
    """A gated store that says when a write is waiting at the shut gate."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.waiting = trio.Event()

    async def write(self, records: Sequence[Record]) -> WriteOutcome:
        if not self._open.is_set():
            self.waiting.set()
        return await super().write(records)


@contextlib.asynccontextmanager
async def engine(tmp_path: Path, reader: str, **settings: Any
                 ) -> AsyncIterator[tuple[Engine, EngineAddress, HeldStore]]:
    settings.setdefault("port", 0)
    settings.setdefault("data_dir", str(tmp_path))
    settings.setdefault("join_rate", 1000.0)
    settings.setdefault("join_burst", 1000)
    settings.setdefault("message_rate", 10_000.0)
    settings.setdefault("message_burst", 10_000)
    url = f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}"
    held = HeldStore(await open_store(url))
    try:
        async with running_engine(ServerConfig(database_url=url, transport_reader=reader,
                                               **settings), store=held) as (eng, address):
            try:
                yield eng, address, held
            finally:
                held.open()  # a failed test must not leave the engine's stop waiting
    finally:
        with trio.CancelScope(shield=True):
            await held.aclose()


class Player:
    """A joined player on a raw socket: frames go out with ``send()``, never awaited."""

    def __init__(self, raw: Raw, participant: int) -> None:
        self.raw = raw
        self.participant = participant

    def send_now(self, *messages: m.Message | bytes) -> None:
        """Send ``messages`` (raw bytes: a frame's payload as is) in one ``send()``."""
        data = b"".join(masked(msg if isinstance(msg, bytes) else codec.encode(msg))
                        for msg in messages)
        assert self.raw.send_now(data) == len(data)

    async def next_message(self, cls: type[m.Message]) -> m.Message:
        """The next message of type ``cls``; the ones before it are skipped."""
        while True:
            opcode, payload = await self.raw.read_frame()
            assert opcode == 0x2, (opcode, payload)
            msg = codec.decode(payload, direction=m.Direction.SERVER_TO_CLIENT)
            if isinstance(msg, cls):
                return msg

    async def next_reply(self) -> m.Message:
        """The next personal reply (ack, error, pong, ok); broadcasts are skipped."""
        while True:
            msg = await self.next_message(m.Message)
            if isinstance(msg, m.AnswerAck | m.ErrorReply | m.Pong | m.Ok):
                return msg

    def nothing_yet(self) -> bool:
        """Whether the engine has sent this player nothing it has not read (no wait)."""
        if self.raw.buffer:
            return False
        try:
            data = self.raw.sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        return not data


async def join(port: int, code: str, name: str) -> Player:
    raw = await connect(port)
    data = masked(codec.encode(m.Join(rid=1, code=code, name=name)))
    assert raw.send_now(data) == len(data)
    while True:
        _opcode, payload = await raw.read_frame()
        msg = codec.decode(payload, direction=m.Direction.SERVER_TO_CLIENT)
        if isinstance(msg, m.Welcome):
            assert msg.participant is not None
            return Player(raw, msg.participant)


@contextlib.asynccontextmanager
async def quiz_with_players(
    address: EngineAddress, eng: Engine, count: int, *, mode: str = "solo"
) -> AsyncIterator[tuple[LiveSession, Client, list[Player], int]]:
    """A session with a host and ``count`` raw players; its first question open."""
    session, host_token = eng.create_session(short_quiz(), mode=mode)
    async with open_client(address.url) as host:
        await host.host(session.code, host_token)
        players = [await join(address.port, session.code, f"P{i}") for i in range(count)]
        try:
            await host.request(m.Start)
            question = await host.next_event(m.Question)
            for player in players:  # read up to the question: what comes next is replies
                await player.next_message(m.Question)
            yield session, host, players, question.q
        finally:
            for player in players:
                player.raw.sock.close()


async def idle(held: HeldStore) -> None:
    """Wait until a write waits at the shut gate and nothing else in the engine can run."""
    await held.waiting.wait()
    await trio.testing.wait_all_tasks_blocked()


async def stored_rids(eng: Engine, code: str) -> set[int]:
    assert await eng.persister.drain(timeout=10)
    return {row.request_id for row in await eng.store.load_answers(code)}


async def test_one_pass_of_answers_is_applied_together_and_each_acked(
    tmp_path: Path, reader: str
) -> None:
    count = 30
    with trio.fail_after(30):
        async with engine(tmp_path, reader) as (eng, address, _held), \
                quiz_with_players(address, eng, count) as (session, _host, players, q):
            batches = session.answer_batches
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=100 + i, q=q, value=i % 3))
            for i, player in enumerate(players):
                reply = await player.next_reply()
                assert reply == m.AnswerAck(rid=100 + i, q=q)
            # All in the kernel before the engine ran: one pass, one batch (or very few).
            assert session.answer_batches - batches <= 3
            assert session.answer_batch_max >= count // 3
            assert len(session.game.answers(q)) == count
            assert await stored_rids(eng, session.code) == {100 + i for i in range(count)}


async def test_a_bad_answer_in_a_batch_gets_its_error_and_the_others_are_stored(
    tmp_path: Path, reader: str
) -> None:
    with trio.fail_after(30):
        async with engine(tmp_path, reader) as (eng, address, _held), \
                quiz_with_players(address, eng, 9) as (session, _host, players, q):
            bad = {3: (m.Answer(rid=203, q=q, value="no such choice"), ErrorCode.INVALID_ANSWER),
                   5: (m.Answer(rid=205, q=q + 2, value=True), ErrorCode.NOT_CURRENT_QUESTION)}
            for i, player in enumerate(players):
                player.send_now(bad[i][0] if i in bad else m.Answer(rid=200 + i, q=q, value=0))
            for i, player in enumerate(players):
                reply = await player.next_reply()
                if i in bad:
                    assert isinstance(reply, m.ErrorReply)
                    assert (reply.rid, reply.code) == (200 + i, str(bad[i][1]))
                else:
                    assert reply == m.AnswerAck(rid=200 + i, q=q)
            good = {200 + i for i in range(9) if i not in bad}
            assert await stored_rids(eng, session.code) == good
            # The refused players can still answer: nothing of theirs changed.
            players[3].send_now(m.Answer(rid=303, q=q, value=1))
            assert await players[3].next_reply() == m.AnswerAck(rid=303, q=q)


@pytest.mark.parametrize("ack_mode", ["fast", "durable"])
async def test_an_answer_then_a_command_are_answered_in_order(
    tmp_path: Path, reader: str, ack_mode: str
) -> None:
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode=ack_mode) as (eng, address, held), \
                quiz_with_players(address, eng, 1) as (_session, _host, [ann], q):
            if ack_mode == "durable":
                held.shut()  # the ack waits for its commit: the pong must wait behind it
            # (b"\x81\xa3rid\x08\xc1": a map with rid 8, then a byte msgpack never uses.)
            ann.send_now(m.Answer(rid=1, q=q, value=0), m.Ping(rid=2),
                         m.Answer(rid=3, q=q, value="bad"), m.Ping(rid=4),
                         m.Answer(rid=5, q=q, value=1), m.Answer(rid=6, q=q, value=2),
                         m.Ping(rid=7), m.Answer(rid=9, q=q, value=0), b"\x82\xa3rid\x08\xc1",
                         m.Ping(rid=10))
            if ack_mode == "durable":
                await idle(held)
                assert ann.nothing_yet()
                held.open()
            replies = [await ann.next_reply() for _ in range(10)]
            assert [r.rid for r in replies] == [  # type: ignore[attr-defined]
                1, 2, 3, 4, 5, 6, 7, 9, 8, 10]
            assert [type(r) for r in replies] == [m.AnswerAck, m.Pong, m.ErrorReply, m.Pong,
                                                  m.AnswerAck, m.AnswerAck, m.Pong,
                                                  m.AnswerAck, m.ErrorReply, m.Pong]


async def test_durable_acks_wait_for_the_commit_and_all_come_after_it(
    tmp_path: Path, reader: str
) -> None:
    count = 20
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="durable") as (eng, address, held), \
                quiz_with_players(address, eng, count) as (session, _host, players, q):
            held.shut()
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=400 + i, q=q, value=1))
            await idle(held)
            # Applied (the game has them), queued, not committed: no ack has left.
            assert len(session.game.answers(q)) == count
            assert eng.persister.stats().depth >= count
            assert all(player.nothing_yet() for player in players)
            held.open()
            for i, player in enumerate(players):
                assert await player.next_reply() == m.AnswerAck(rid=400 + i, q=q)
            assert eng.persister.stats().depth == 0 or await eng.persister.drain(timeout=10)
            assert await stored_rids(eng, session.code) == {400 + i for i in range(count)}


async def test_fast_answers_linger_until_a_command_needs_their_batch(
    tmp_path: Path, reader: str
) -> None:
    """``write_linger`` (WriteBehind rule 7) in the engine: a batch of ``fast`` answers is
    acked at once and waits for company, uncommitted; a host command, whose event must be
    committed before anyone sees it, takes them into its commit at once (an hour's linger
    would fail the test's guard)."""
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="fast", write_linger=3_600.0) as (
                eng, address, _held), \
                quiz_with_players(address, eng, 3) as (session, host, players, q):
            # (The joins and the start did not linger: their frames waited for their commits.)
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=500 + i, q=q, value=1))
            for i, player in enumerate(players):
                assert await player.next_reply() == m.AnswerAck(rid=500 + i, q=q)
            await trio.testing.wait_all_tasks_blocked()
            assert eng.persister.stats().depth == 3  # acked, lingering
            assert await eng.store.load_answers(session.code) == []
            await host.request(m.Close)  # its reply leaves after its event's commit
            assert {row.request_id for row in await eng.store.load_answers(session.code)} == {
                500, 501, 502}


async def test_hosts_get_coalesced_counts_whose_last_value_is_right(
    tmp_path: Path, reader: str
) -> None:
    count = 25
    with trio.fail_after(30):
        async with engine(tmp_path, reader) as (eng, address, _held), \
                quiz_with_players(address, eng, count) as (session, host, players, q):
            batches = session.answer_batches
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=500 + i, q=q, value=2))
            counts: list[m.AnswerCount] = []
            while not counts or counts[-1].answered < count:
                line = await host.next_event(m.AnswerCount)
                if line.answered:  # (the question's opening count, 0, is not ours)
                    counts.append(line)
            assert (counts[-1].q, counts[-1].answered, counts[-1].total) == (q, count, count)
            # One count per batch, not one per answer.
            assert len(counts) <= session.answer_batches - batches < count
            assert [c.answered for c in counts] == sorted({c.answered for c in counts})
            for player in players:
                assert isinstance(await player.next_reply(), m.AnswerAck)
            # A change of answer does not move the count: none is sent for a batch of them.
            players[0].send_now(m.Answer(rid=600, q=q, value=0))
            assert await players[0].next_reply() == m.AnswerAck(rid=600, q=q)
            await host.request(m.Ping)  # behind the change's broadcasts on the host's socket
            later: list[m.Message] = []
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    later.append(host.events.receive_nowait())
            assert any(isinstance(e, m.Answered) for e in later)
            assert not any(isinstance(e, m.AnswerCount) for e in later)


async def test_a_full_write_queue_refuses_with_busy_and_changes_nothing(
    tmp_path: Path, reader: str
) -> None:
    room, count = 4, 10
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="fast", write_queue=room) as (
                eng, address, held), \
                quiz_with_players(address, eng, count) as (session, _host, players, q):
            assert await eng.persister.drain(timeout=10)
            held.shut()
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=700 + i, q=q, value=0))
            acked: set[int] = set()
            busy: set[int] = set()
            for player in players:
                reply = await player.next_reply()
                if isinstance(reply, m.AnswerAck):
                    acked.add(player.participant)
                else:
                    assert isinstance(reply, m.ErrorReply)
                    assert reply.code == str(ErrorCode.BUSY) and reply.retryable
                    busy.add(player.participant)
            assert len(acked) == room and len(busy) == count - room
            # The refused answers changed nothing: not in the game, never stored.
            assert set(session.game.answers(q)) == acked
            held.open()
            stored = await stored_rids(eng, session.code)
            assert stored == {700 + i for i, p in enumerate(players) if p.participant in acked}


async def test_a_flooding_connection_does_not_starve_another_within_a_pass(
    tmp_path: Path, reader: str
) -> None:
    flood_count = 10 * ANSWERS_PER_PASS
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="fast") as (eng, address, _held), \
                quiz_with_players(address, eng, 2) as (_session, host, [flood, other], q):
            # Each answer with a new rid is a new submission (a change of answer).
            flood.send_now(*(m.Answer(rid=800 + i, q=q, value=i % 3)
                             for i in range(flood_count)))
            other.send_now(m.Answer(rid=1, q=q, value=0))
            assert await other.next_reply() == m.AnswerAck(rid=1, q=q)
            # The order the session applied them in: the hosts' ``answered`` lines.
            order: list[int] = []
            while other.participant not in order:
                order.append((await host.next_event(m.Answered)).participant)
            before = order.index(other.participant)
            assert before <= 2 * ANSWERS_PER_PASS, before
            for i in range(flood_count):
                assert await flood.next_reply() == m.AnswerAck(rid=800 + i, q=q)


async def test_an_answer_that_raises_gets_internal_and_the_intake_goes_on(
    tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="fast") as (eng, address, _held), \
                quiz_with_players(address, eng, 3) as (session, _host, players, q):
            real_submit = session.game.submit  # the intake's entry point into the game

            def submit(participant: Any, question: Any, value: Any, request_id: Any,
                       now: float) -> Any:
                if request_id == 901:
                    raise RuntimeError("a bug in the game")
                return real_submit(participant, question, value, request_id, now)

            monkeypatch.setattr(session.game, "submit", submit)
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=900 + i, q=q, value=0))
            replies = [await player.next_reply() for player in players]
            assert replies[0] == m.AnswerAck(rid=900, q=q)
            assert isinstance(replies[1], m.ErrorReply)
            assert (replies[1].rid, replies[1].code) == (901, str(ErrorCode.INTERNAL))
            assert replies[2] == m.AnswerAck(rid=902, q=q)
            players[1].send_now(m.Answer(rid=911, q=q, value=1))
            assert await players[1].next_reply() == m.AnswerAck(rid=911, q=q)
            assert not session.ended.is_set()


async def test_answers_are_taken_in_the_readers_pass_and_the_rest_by_the_task(
    tmp_path: Path, reader: str
) -> None:
    """Connection rule 7: with the Linux reader a waiting player's answers are submitted in
    the reader's pass (no task switch); a ping behind them, and anything after it, is left to
    the connection's task, in order. The portable reader's task takes everything."""
    count = 12
    with trio.fail_after(30):
        async with engine(tmp_path, reader, ack_mode="fast") as (eng, address, _held), \
                quiz_with_players(address, eng, count) as (session, _host, players, q):
            stats = eng.transport_statistics()
            assert stats is not None
            consumed = stats.messages_consumed
            for i, player in enumerate(players):
                player.send_now(m.Answer(rid=10 + i, q=q, value=i % 3))
            for i, player in enumerate(players):
                assert await player.next_reply() == m.AnswerAck(rid=10 + i, q=q)
            first = players[0]
            first.send_now(m.Answer(rid=30, q=q, value=1), m.Ping(rid=31),
                           m.Answer(rid=32, q=q, value=2))
            assert [await first.next_reply() for _ in range(3)] == [
                m.AnswerAck(rid=30, q=q), m.Pong(rid=31), m.AnswerAck(rid=32, q=q)]
            stats = eng.transport_statistics()
            assert stats is not None
            taken = stats.messages_consumed - consumed
            if reader == "epoll":
                # Every first answer, and the answer before the ping; not the ping, and not
                # the answer behind it (the task had the ping, so it took that one too).
                assert taken == count + 1
            else:
                assert taken == 0
            assert session.game.answers(q)[first.participant].request_id == 32
            assert await stored_rids(eng, session.code) == {
                *(10 + i for i in range(count)), 30, 32}


async def test_a_join_is_taken_in_the_readers_pass_and_the_rest_by_the_task(
    tmp_path: Path, reader: str
) -> None:
    """Connection rule 7 for the join: with the Linux reader a waiting connection's ``join``
    to a session on this node is handled in the reader's pass (no task switch), a refusal
    there included; what follows it, and a join the session directory or a refusal of the
    task's would answer, goes to the connection's task, in order. The portable reader's task
    takes everything. Every outcome is the same either way."""
    with trio.fail_after(30), contextlib.ExitStack() as stack:
        async with engine(tmp_path, reader) as (eng, address, _held):
            session, _ = eng.create_session(short_quiz(), mode="solo")
            stats = eng.transport_statistics()
            assert stats is not None
            before = stats.messages_consumed

            players: list[Player] = []
            stack.callback(lambda: [p.raw.sock.close() for p in players])

            def consumed() -> int:
                now = eng.transport_statistics()
                assert now is not None
                return now.messages_consumed - before

            # A join and a ping in one send(): both answered (the pong may come first: the
            # welcome waits for the join's records to commit).
            ann = Player(await connect(address.port), 0)
            players.append(ann)
            ann.send_now(m.Join(rid=1, code=session.code, name="Ann"), m.Ping(rid=2))
            seen: list[tuple[str, int | None]] = []
            while len(seen) < 2:
                msg = await ann.next_message(m.Message)
                if isinstance(msg, m.Welcome | m.Pong | m.ErrorReply):
                    seen.append((msg.TYPE, msg.rid))
            assert sorted(seen) == [("pong", 2), ("welcome", 1)]
            assert consumed() == (1 if reader == "epoll" else 0)
            # A refusal in the pass: name_taken, and the connection may try again.
            copy = Player(await connect(address.port), 0)
            players.append(copy)
            copy.send_now(m.Join(rid=3, code=session.code, name=" ANN "))
            taken = await copy.next_reply()
            assert isinstance(taken, m.ErrorReply)
            assert (taken.rid, taken.code) == (3, str(ErrorCode.NAME_TAKEN))
            copy.send_now(m.Join(rid=4, code=session.code, name="Bea"))
            assert (await copy.next_message(m.Welcome)).rid == 4  # type: ignore[attr-defined]
            assert consumed() == (3 if reader == "epoll" else 0)
            # A code this node does not hold: the task's (it may ask the directory).
            lost = Player(await connect(address.port), 0)
            players.append(lost)
            lost.send_now(m.Join(rid=5, code="ZZZZZZ", name="Cy"))
            refused = await lost.next_reply()
            assert isinstance(refused, m.ErrorReply)
            assert (refused.rid, refused.code) == (5, str(ErrorCode.BAD_CODE))
            assert consumed() == (3 if reader == "epoll" else 0)
            assert sorted(p.name for p in session.game.participants.values()) == ["Ann", "Bea"]


async def test_a_throttled_join_is_left_to_the_task(tmp_path: Path, reader: str) -> None:
    """A join over the address's allowance is not taken in the reader's pass: the task
    answers ``rate_limited`` with its ``retry_after_ms``, as it always did."""
    with trio.fail_after(30), contextlib.ExitStack() as stack:
        async with engine(tmp_path, reader, join_rate=0.001, join_burst=1) as (
                eng, address, _held):
            session, _ = eng.create_session(short_quiz(), mode="solo")
            first = Player(await connect(address.port), 0)
            stack.callback(first.raw.sock.close)
            first.send_now(m.Join(rid=1, code=session.code, name="Ann"))
            assert (await first.next_message(m.Welcome)).rid == 1  # type: ignore[attr-defined]
            second = Player(await connect(address.port), 0)
            stack.callback(second.raw.sock.close)
            second.send_now(m.Join(rid=2, code=session.code, name="Bea"))
            limited = await second.next_reply()
            assert isinstance(limited, m.ErrorReply)
            assert (limited.rid, limited.code) == (2, str(ErrorCode.RATE_LIMITED))
            assert limited.retry_after_ms is not None and limited.retry_after_ms > 0
            assert [p.name for p in session.game.participants.values()] == ["Ann"]


async def test_a_resume_is_taken_in_the_readers_pass_and_never_throttled(
    tmp_path: Path, reader: str
) -> None:
    """Rule 7 for a resume: with the Linux reader a resume for a session on this node is
    handled in the reader's pass; a valid one is not throttled however many joins the address
    made (a pub's phones come back together), a wrong one counts like a join; a token that
    does not parse is the task's. The outcomes are the same with either reader."""
    with trio.fail_after(30), contextlib.ExitStack() as stack:
        async with engine(tmp_path, reader, join_rate=0.001, join_burst=3) as (
                eng, address, _held):
            session, _ = eng.create_session(short_quiz(), mode="solo")
            stats = eng.transport_statistics()
            assert stats is not None
            before = stats.messages_consumed

            def consumed() -> int:
                now = eng.transport_statistics()
                assert now is not None
                return now.messages_consumed - before

            async def player() -> Player:
                p = Player(await connect(address.port), 0)
                stack.callback(p.raw.sock.close)
                return p

            tokens: dict[str, tuple[int, str]] = {}
            for rid, name in enumerate(("Ann", "Bea"), start=1):
                p = await player()
                p.send_now(m.Join(rid=rid, code=session.code, name=name))
                welcome = await p.next_message(m.Welcome)
                assert isinstance(welcome, m.Welcome) and welcome.token is not None
                assert welcome.participant is not None
                tokens[name] = (welcome.participant, welcome.token)
                p.raw.sock.close()
            # The join limiter has one attempt left: both valid resumes pass all the same.
            for rid, name in enumerate(("Ann", "Bea"), start=10):
                p = await player()
                p.send_now(m.Resume(rid=rid, token=tokens[name][1], last_seq=0))
                welcome = await p.next_message(m.Welcome)
                assert isinstance(welcome, m.Welcome)
                assert (welcome.rid, welcome.participant) == (rid, tokens[name][0])
            assert consumed() == (4 if reader == "epoll" else 0)
            # A token of this session with a wrong secret: refused, and it costs an attempt.
            code, participant = tokens["Ann"][1].split(".")[:2]
            wrong = f"{code}.{participant}.{'A' * 32}"
            p = await player()
            p.send_now(m.Resume(rid=20, token=wrong, last_seq=0))
            refused = await p.next_reply()
            assert isinstance(refused, m.ErrorReply)
            assert (refused.rid, refused.code) == (20, str(ErrorCode.BAD_TOKEN))
            assert consumed() == (5 if reader == "epoll" else 0)
            # The attempts are spent: the next wrong one is throttled, with when to retry.
            p.send_now(m.Resume(rid=21, token=wrong, last_seq=0))
            limited = await p.next_reply()
            assert isinstance(limited, m.ErrorReply)
            assert (limited.rid, limited.code) == (21, str(ErrorCode.RATE_LIMITED))
            assert limited.retry_after_ms is not None and limited.retry_after_ms > 0
            # A token that does not parse: the task's answer.
            p.send_now(m.Resume(rid=22, token="nonsense", last_seq=0))
            garbage = await p.next_reply()
            assert isinstance(garbage, m.ErrorReply) and garbage.rid == 22
            assert consumed() == (6 if reader == "epoll" else 0)


async def test_an_entry_taken_in_the_pass_is_logged_with_its_connection(
    tmp_path: Path, reader: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lines of an entry carry the connection's id and session code whichever task logs
    them: the reader's (the entry taken in its pass) has no fields bound for the connection,
    so they are given explicitly. What the cluster tests' failure report reads."""
    with trio.fail_after(30), caplog.at_level(logging.DEBUG, logger="pubquiz_engine"):
        async with engine(tmp_path, reader) as (eng, address, _held):
            session, _ = eng.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as ann, open_client(address.url) as copy:
                await ann.join(session.code, "Ann")
                with pytest.raises(RemoteError):
                    await copy.join(session.code, "ann")
    entered = [r for r in caplog.records if r.getMessage().startswith("entered session")]
    refused = [r for r in caplog.records if r.getMessage().startswith("join refused")]
    assert len(entered) == 1 and len(refused) == 1
    assert getattr(entered[0], "session", None) == session.code
    assert getattr(refused[0], "session", None) is None  # it entered none
    conns = {getattr(entered[0], "conn", None), getattr(refused[0], "conn", None)}
    assert None not in conns and len(conns) == 2
