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
from pubquiz_engine.errors import ErrorCode
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
