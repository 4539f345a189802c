"""Limits and hostile input over real sockets: each triggers its documented error, and the
session in play goes on for everyone else."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import Client, ClientClosed, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, Rejected, RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.connection import Connection
from pubquiz_engine.server.engine import Engine
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.server.transport import WebSocket


async def _error(client: Client) -> m.ErrorReply:
    return await client.next_event(m.ErrorReply, timeout=5)


def _hostile_frames() -> list[bytes]:
    rng = random.Random(1234)
    valid = msgpack.packb({"t": "answer", "rid": 5, "q": 0, "value": 1})
    frames = [
        b"\xc1",  # never-used msgpack byte
        b"\xdb\xff\xff\xff\xff" + b"x" * 10,  # str32 declaring 4 GiB, short body
        b"\xdd\xff\xff\xff\xff",  # array32 declaring 4 billion items
        b"\xdf\xff\xff\xff\xff",  # map32 declaring 4 billion entries
        b"\x91" * 10_000 + b"\xc0",  # not a map (its first byte says so: invalid_message)
        # 10,000-deep nesting in a frame (limit_exceeded, SPEC 12's first fault)
        b"\x83" + msgpack.packb("t") + msgpack.packb("ping") + msgpack.packb("rid")
        + msgpack.packb(9) + msgpack.packb("x") + b"\x91" * 10_000 + b"\xc0",
        msgpack.packb({"t": "answer", "rid": 1, "q": 0,
                       "value": msgpack.ExtType(5, b"abc")}),  # ext type
        msgpack.packb({1: "x", "t": "ping", "rid": 2}),  # non-string key
        msgpack.packb({"t": "answer", "rid": 3, "q": "zero", "value": 1}),  # wrong type
        msgpack.packb({"t": "answer", "rid": 4}),  # missing fields
        msgpack.packb({"t": "answer", "rid": 6, "q": 0, "value": 1, "extra": 1}),  # extra field
        msgpack.packb({"t": "teleport", "rid": 7}),  # unknown type
        msgpack.packb({"t": "answer", "rid": 8, "q": 0, "value": float("nan")}),  # NaN
        msgpack.packb([1, 2, 3]),  # not a map
    ]
    for _ in range(300):  # mutations of a valid frame
        data = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        frames.append(bytes(data))
    frames.extend(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))) for _ in range(200))
    return frames


async def test_hostile_frames_get_errors_and_the_session_goes_on(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path, message_rate=100_000.0, message_burst=100_000) as (
                engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as bad, \
                    open_client(address.url) as good:
                await host.host(session.code, host_token)
                await bad.join(session.code, "Mallory")
                await good.join(session.code, "Ann")
                await host.request(m.Start)
                frames = _hostile_frames()
                for frame in frames:
                    await bad.send_raw(frame)
                # Every frame is answered (with an error or, for a lucky mutation, a reply):
                # a ping afterwards comes back, so nothing was skipped or crashed.
                pong = await bad.request(m.Ping)
                assert isinstance(pong, m.Pong)
                codes = {e.code for e in [x async for x in _drain(bad)]
                         if isinstance(e, m.ErrorReply)}
                assert {"malformed_frame", "limit_exceeded", "unsupported_type",
                        "invalid_message", "unknown_message"} <= codes
                # The session goes on: the other player answers and is acked.
                question = await good.next_event(m.Question)
                ack = await good.answer(question.q, 0)
                assert ack.q == question.q
                # And the hostile player is still a player who can answer.
                await bad.answer(question.q, 1)


async def _drain(client: Client):  # type: ignore[no-untyped-def]
    while True:
        try:
            yield client.events.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return


async def test_oversize_frame_closes_only_that_client(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as big, open_client(address.url) as other:
                await big.join(session.code, "Big")
                await other.join(session.code, "Other")
                # The engine closes as soon as it reads the frame's length, which can be while
                # the 2 MB are still being written: the send then fails, the close code stands.
                with contextlib.suppress(ClientClosed):
                    await big.send_raw(
                        msgpack.packb({"t": "leave", "rid": 1, "pad": "x" * 2_000_000}))
                closed = await big.wait_closed()
                assert closed.code == CloseCode.MESSAGE_TOO_BIG
                assert isinstance(await other.request(m.Ping), m.Pong)


async def test_frame_over_the_client_limit_but_under_the_operator_limit(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as big:
                await big.join(session.code, "Big")
                await big.send_raw(msgpack.packb({"t": "leave", "rid": 1, "pad": "x" * 100_000}))
                error = await _error(big)
                assert error.code == "frame_too_large"
                assert (await big.wait_closed()).code == CloseCode.MESSAGE_TOO_BIG


async def test_text_frame_is_refused_with_1003(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (_engine, address):
            async with open_client(address.url) as client:
                await client.send_raw('{"t": "ping"}')
                # SPEC section 12: the error first (rid nil: a text frame has none), then the
                # code's close code.
                error = await _error(client)
                assert (error.code, error.rid, error.retryable) == ("text_frame", None, False)
                closed = await client.wait_closed()
                assert closed.code == CloseCode.UNSUPPORTED_DATA


async def test_message_flood_is_throttled_then_closed(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, message_rate=5.0, message_burst=5,
                             flood_strikes=20) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as flood, open_client(address.url) as calm:
                await flood.join(session.code, "Flood")
                await calm.join(session.code, "Calm")
                for rid in range(1, 200):
                    try:
                        await flood.send(m.Ping(rid=rid))
                    except Exception:
                        break
                closed = await flood.wait_closed()
                assert closed.code == CloseCode.POLICY_VIOLATION
                limited = [e for e in [x async for x in _drain(flood)]
                           if isinstance(e, m.ErrorReply)]
                assert limited and all(e.code == "rate_limited" and e.retryable for e in limited)
                # A throttled request is refused with its own rid, so a waiting caller learns.
                assert all(e.rid is not None for e in limited)
                assert isinstance(await calm.request(m.Ping), m.Pong)


async def test_join_guessing_is_rate_limited_per_address(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, join_rate=0.01, join_burst=3) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as guesser:
                for guess in ("AAAAAA", "BBBBBB", "CCCCCC"):
                    with pytest.raises(RemoteError) as wrong:
                        await guesser.join(guess, "Eve")
                    assert wrong.value.code is ErrorCode.BAD_CODE
                with pytest.raises(RemoteError) as limited:
                    await guesser.join(session.code, "Eve")  # even the right code, now
                assert limited.value.code is ErrorCode.RATE_LIMITED
                assert limited.value.retryable


async def test_connections_per_address_are_capped(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, max_connections_per_address=2) as (_engine, address):
            async with open_client(address.url) as a, open_client(address.url) as b:
                assert isinstance(await a.request(m.Ping), m.Pong)
                assert isinstance(await b.request(m.Ping), m.Pong)
                async with open_client(address.url) as c:
                    error = await _error(c)
                    assert error.code == "too_many_connections" and error.retryable
                    assert (await c.wait_closed()).code == CloseCode.TRY_AGAIN_LATER


async def test_members_per_session_are_capped(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, max_members_per_session=2) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as a, open_client(address.url) as b, \
                    open_client(address.url) as c:
                await a.join(session.code, "A")
                await b.join(session.code, "B")
                with pytest.raises(RemoteError) as full:
                    await c.join(session.code, "C")
                assert full.value.code is ErrorCode.SESSION_FULL


# The join deadline closes a connection whose task waits in ``receive()``: each reader
# wakes that task its own way, so both are played.
READERS = pytest.mark.parametrize("reader", ["epoll", "portable"])


@READERS
async def test_a_connection_that_never_joins_is_closed(tmp_path: Path, reader: str) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, join_timeout=0.5,
                             transport_reader=reader) as (_engine, address):
            async with open_client(address.url) as idle:
                error = await _error(idle)
                assert error.code == "handshake_timeout"
                assert (await idle.wait_closed()).code == CloseCode.POLICY_VIOLATION


def _directory_lookup(monkeypatch: pytest.MonkeyPatch, engine: Engine,
                      lookup: Callable[[str], Awaitable[LiveSession | None]]) -> None:
    """Make ``engine`` ask a session directory (``lookup``) for codes it does not hold, as an
    engine with Redis does (``Engine.find_session`` -> ``Coordination.find``)."""
    monkeypatch.setattr(Engine, "asks_directory", property(lambda self: True))
    monkeypatch.setattr(engine, "find_session", lookup)


@READERS
async def test_a_lookup_that_outlasts_the_join_deadline_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """Rule 3 of connection.py, the slow case: a join whose session lookup (Redis, a
    takeover) has not returned at the join deadline is cancelled there, and the connection
    is answered ``handshake_timeout`` and closed, as one that never sent a join."""
    cancelled = trio.Event()

    async def stuck(code: str) -> LiveSession | None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(20):
        async with engine_at(tmp_path, join_timeout=0.5,
                             transport_reader=reader) as (engine, address):
            _directory_lookup(monkeypatch, engine, stuck)
            async with open_client(address.url) as late:
                await late.send(m.Join(rid=7, code="QWERTY", name="Late"))
                error = await _error(late)
                assert error.code == "handshake_timeout" and error.rid is None
                assert (await late.wait_closed()).code == CloseCode.POLICY_VIOLATION
            assert cancelled.is_set()


@READERS
async def test_a_lookup_that_fails_after_the_join_deadline_is_answered_then_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """The deadline passes while a lookup cannot be cancelled (shielded here) and the lookup
    then fails: its error is answered first, then ``handshake_timeout`` and the close (the
    retryable failure does not restart a window that has run out)."""
    with trio.fail_after(20):
        async with engine_at(tmp_path, join_timeout=0.5,
                             transport_reader=reader) as (engine, address):
            queue = engine.join_timeouts
            fired = trio.Event()
            expire = queue._expire

            def expire_and_tell(conn: Any) -> None:
                expire(conn)
                fired.set()

            monkeypatch.setattr(queue, "_expire", expire_and_tell)

            async def slow_then_failing(code: str) -> LiveSession | None:
                with trio.CancelScope(shield=True):
                    await fired.wait()  # past the deadline, by construction
                raise Rejected(ErrorCode.UNAVAILABLE, "directory away", retry_after_ms=50)

            _directory_lookup(monkeypatch, engine, slow_then_failing)
            async with open_client(address.url) as late:
                await late.send(m.Join(rid=7, code="QWERTY", name="Late"))
                first = await _error(late)
                assert (first.code, first.rid) == ("unavailable", 7)
                second = await _error(late)
                assert (second.code, second.rid) == ("handshake_timeout", None)
                assert (await late.wait_closed()).code == CloseCode.POLICY_VIOLATION



@READERS
async def test_a_join_frame_that_waited_past_the_deadline_is_not_handled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """The join deadline passes while the join frame waits for its task to run (the same
    scheduler pass): the connection is timed out and the frame is not handled, as under a
    cancel scope. Forced here: the deadline is made to pass as ``receive()`` returns it, and
    the Linux reader's pass does not take the join itself (``_take_entry_now``, connection
    rule 7: a join it takes waits for no task), so that the task's check is what is tested."""
    with trio.fail_after(20):
        async with engine_at(tmp_path, join_timeout=30,
                             transport_reader=reader) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            connections: list[Any] = []
            add = engine.join_timeouts.add

            def add_and_keep(conn: Any) -> Any:
                connections.append(conn)
                return add(conn)

            monkeypatch.setattr(engine.join_timeouts, "add", add_and_keep)
            receive = WebSocket.receive

            async def receive_as_the_deadline_passes(ws: WebSocket) -> bytes | str:
                data = await receive(ws)
                for conn in connections:
                    if conn.ws is ws and conn.member is None:
                        conn._join_timed_out()  # what the queue does at the deadline
                return data

            monkeypatch.setattr(WebSocket, "receive", receive_as_the_deadline_passes)
            monkeypatch.setattr(Connection, "_take_entry_now", lambda _self: None)
            async with open_client(address.url) as late:
                await late.send(m.Join(rid=7, code=session.code, name="Late"))
                error = await _error(late)
                assert (error.code, error.rid) == ("handshake_timeout", None)
                assert (await late.wait_closed()).code == CloseCode.POLICY_VIOLATION
            assert not session.game.participants  # the join was never applied


async def test_name_taken_and_kick(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann, \
                    open_client(address.url) as copycat:
                await host.host(session.code, host_token)
                welcome = await ann.join(session.code, "Ann")
                with pytest.raises(RemoteError) as taken:
                    await copycat.join(session.code, "  ANN ")
                assert taken.value.code is ErrorCode.NAME_TAKEN
                await host.request(m.Kick, participant=welcome.participant)
                assert (await ann.wait_closed()).code == CloseCode.KICKED
                async with open_client(address.url) as back:
                    assert ann.token is not None
                    with pytest.raises(RemoteError) as kicked:
                        await back.resume(ann.token, 0)
                    assert kicked.value.code is ErrorCode.KICKED
