"""Output commit (issue 24): nothing a client saw is undone by a takeover.

Two engines on one Redis and one PostgreSQL database (``two_nodes``). The owner, A, is made a
*zombie* without stopping this test's event loop: its lease keeper stops renewing (``drop``,
what a frozen process does) and its lease lapses (``expire_lease``); B takes the session over
when a player resumes there. Then A "wakes": its timer finds the question's deadline passed (its
wall clock jumps, as after SIGCONT) or its host, still connected to it, closes the question.
Whatever A does then, its clients must not see it: B has the question open.

The kill tests stop A at each step of a phase change: after the state change (its database
write stalls), after the durable write (its snapshot write stalls), after the broadcast.

Each test checks the issue's properties over every frame a client received:
- every event a client saw is in the events table, at its seq, with its type;
- no client that saw a question close later sees it open (no rollback), deadlines never move.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from test_failover_engine import QUIZ, expire_lease, node, resume_with_retry

from pubquiz_engine.client import Client, ClientClosed, open_client
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.engine import Engine
from pubquiz_engine.store import open_store

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

class Gate:
    """Wraps a store (or a snapshot store): while ``stalled``, ``method`` waits before it runs
    (a database or Redis that stopped answering), and ``entered`` is set once a call waits."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner = inner
        self.method = method
        self.stalled = False
        self.entered = trio.Event()
        self._open = trio.Event()

    def release(self) -> None:
        """Let the calls waiting now (and every later one) through."""
        self._open.set()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        async def gated(*args: Any, **kwargs: Any) -> Any:
            if self.stalled:
                self.entered.set()
                await self._open.wait()
            return await attr(*args, **kwargs)
        return gated


@contextlib.asynccontextmanager
async def zombie_pair(tmp_path: Path, postgres_url: str, redis_url: str, prefix: str,
                      ack_mode: str) -> AsyncIterator[tuple[Engine, Any, Engine, Any, list[float]]]:
    """(a, a's address, b, b's address, a's clock offset): leases of 10 s, so only the test
    ends a's ownership; a's wall clock is ``time.time() + offset[0]``."""
    offset = [0.0]
    async with node(tmp_path, "a", postgres_url, redis_url, prefix, lease_ttl_ms=10_000,
                    ack_mode=ack_mode, clock=lambda: time.time() + offset[0]) as (a, addr_a, _), \
            node(tmp_path, "b", postgres_url, redis_url, prefix, lease_ttl_ms=10_000,
                 ack_mode=ack_mode) as (b, addr_b, _):
        yield a, addr_a, b, addr_b, offset


def freeze_lease(a: Engine, redis_url: str, prefix: str, code: str) -> None:
    """What a node paused past its lease looks like to Redis: no renewal, the lease lapsed."""
    assert a.coord is not None
    a.coord.keeper.drop(code)
    expire_lease(redis_url, prefix, code)


def seen_events(client: Client) -> list[m.Message]:
    """Every event the client has received so far (its connection ended: nothing more)."""
    out: list[m.Message] = []
    while True:
        try:
            out.append(client.events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def check_log(postgres_url: str, code: str, seen: list[m.Message]) -> None:
    """Every numbered event a client saw is in the events table at its seq, with its type."""
    store = await open_store(postgres_url)
    try:
        rows = {e.seq: e for e in await store.load_events(
            code, after_seq=0, types=("question_opened", "question_closed"))}
    finally:
        await store.aclose()
    for event in seen:
        expected = {m.Question: "question_opened", m.Closed: "question_closed"}.get(type(event))
        if expected is None:
            continue
        seq = event.seq  # type: ignore[attr-defined]
        assert seq in rows, f"{event} was sent but the events table has no seq {seq}"
        assert rows[seq].type == expected, (event, rows[seq])


async def open_question(a_url: str, code: str, host_token: str, stack: contextlib.AsyncExitStack
                        ) -> tuple[Client, Client, Client, m.Question]:
    """host, ann and bob on ``a_url``; the first question open and answered by ann."""
    host = await stack.enter_async_context(open_client(a_url))
    await host.host(code, host_token)
    ann = await stack.enter_async_context(open_client(a_url))
    await ann.join(code, "Ann")
    bob = await stack.enter_async_context(open_client(a_url))
    await bob.join(code, "Bob")
    await host.request(m.Start)
    question = await ann.next_event(m.Question)
    await bob.next_event(m.Question)
    await ann.answer(question.q, 0)
    return host, ann, bob, question


@pytest.mark.parametrize("ack_mode", ["durable", "fast"])
@pytest.mark.parametrize("wake", ["timer", "host"])
async def test_a_woken_zombie_shows_nobody_a_phase_change(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, ack_mode: str,
    wake: str,
) -> None:
    with trio.fail_after(60):
        async with zombie_pair(tmp_path, postgres_url, redis_url, redis_prefix,
                               ack_mode) as (a, addr_a, _b, addr_b, offset), \
                contextlib.AsyncExitStack() as stack:
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            host, ann, bob, question = await open_question(addr_a.url, code, host_token, stack)
            freeze_lease(a, redis_url, redis_prefix, code)
            assert bob.token is not None
            bob_b = await resume_with_retry(addr_b.url, bob.token, bob.last_seq, stack)
            state = await bob_b.next_event(m.State)
            assert state.state["phase"] == "question_open"
            # The zombie wakes: what it does now must reach nobody.
            if wake == "timer":
                offset[0] = 3600.0  # its wall clock says the deadline passed long ago
                session._wakeup.set()  # its timer's sleep ends, as after SIGCONT
            else:
                with contextlib.suppress(RemoteError, ClientClosed):
                    await host.request(m.Close)  # no ok: refused, or closed with 4104
            closed = await ann.wait_closed(timeout=20)
            assert closed.code == 4104
            seen = [*seen_events(ann), *seen_events(host)]
            assert not [e for e in seen if isinstance(e, m.Closed)], seen
            # Ann comes to B: the question is open there, with its deadline unchanged.
            assert ann.token is not None
            ann_b = await resume_with_retry(addr_b.url, ann.token, ann.last_seq, stack)
            state = await ann_b.next_event(m.State)
            assert state.state["phase"] == "question_open"
            assert state.state["question"]["deadline_ms"] == question.deadline_ms
            if ack_mode == "durable":  # fast may lose the acked answers of the last window
                assert state.state["you"]["answer"] == 0
        await check_log(postgres_url, code, [question, *seen])


@pytest.mark.parametrize("ack_mode", ["durable", "fast"])
@pytest.mark.parametrize("step", ["state", "database", "broadcast"])
async def test_the_owner_killed_at_each_step_of_a_phase_change(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, ack_mode: str,
    step: str,
) -> None:
    """kill -9 of the owner while it closes a question: after the state change (its database
    write never returns, so no snapshot is written either: that waits for the commit), after
    the durable write (its snapshot write never returns), after the broadcast. Whatever a
    client saw, the new owner has."""
    with trio.fail_after(60):
        async with node(tmp_path, "a", postgres_url, redis_url, redis_prefix,
                        lease_ttl_ms=10_000, ack_mode=ack_mode) as (a, addr_a, crash_a), \
                node(tmp_path, "b", postgres_url, redis_url, redis_prefix,
                     lease_ttl_ms=10_000, ack_mode=ack_mode) as (_b, addr_b, _), \
                contextlib.AsyncExitStack() as stack:
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            host, ann, _bob, question = await open_question(addr_a.url, code, host_token, stack)
            assert a.coord is not None
            gates: list[Gate] = []
            seen_before: list[m.Message] = []
            if step == "state":  # neither the database nor Redis (which comes after) hears of it
                gates.append(Gate(a.persister._store, "write"))
                a.persister._store = gates[-1]
            if step == "database":  # the database has it, Redis does not
                gates.append(Gate(a.coord.snapshotter._store, "save_snapshot"))
                a.coord.snapshotter._store = gates[-1]
            if gates:
                for gate in gates:
                    gate.stalled = True
                await host.send(m.Close(rid=999))
                for gate in gates:
                    await gate.entered.wait()  # the state changed; its writes are under way
            else:
                await host.request(m.Close)
                seen_before.append(await ann.next_event(m.Closed))  # broadcast
            await crash_a()
            expire_lease(redis_url, redis_prefix, code)
            await ann.wait_closed(timeout=20)
            seen = [*seen_before, *seen_events(ann)]
            saw_close = any(isinstance(e, m.Closed) for e in seen)
            assert saw_close == (step == "broadcast"), seen
            assert ann.token is not None
            ann_b = await resume_with_retry(addr_b.url, ann.token, ann.last_seq, stack)
            state = await ann_b.next_event(m.State)
            assert state.state["phase"] == ("question_closed" if saw_close
                                             else "question_open"), state.state
            if ack_mode == "durable":  # fast may lose the acked answers of the last window
                assert state.state["you"]["answer"] == 0
            if not saw_close:
                assert state.state["question"]["deadline_ms"] == question.deadline_ms
        await check_log(postgres_url, code, [question, *seen])


async def test_session_created_means_a_takeover_finds_the_session(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
) -> None:
    """``session_created`` is sent once the session's record is committed and its first
    snapshot stored (in that order): while either write hangs there is no reply, and a kill -9
    of the node right after the reply leaves a session another node takes over."""
    key = "output-commit-operator-key"
    with trio.fail_after(60):
        async with node(tmp_path, "a", postgres_url, redis_url, redis_prefix,
                        lease_ttl_ms=10_000, operator_key=key) as (a, addr_a, crash_a), \
                node(tmp_path, "b", postgres_url, redis_url, redis_prefix,
                     lease_ttl_ms=10_000) as (_b, addr_b, _), \
                open_client(addr_a.url) as operator:
            assert a.coord is not None
            gates = [Gate(a.persister._store, "write"),
                     Gate(a.coord.snapshotter._store, "save_snapshot")]
            a.persister._store, a.coord.snapshotter._store = gates
            replies: list[m.SessionCreated] = []

            async def create() -> None:
                replies.append(await operator.create_session(key, quiz=QUIZ, mode="solo"))

            async with trio.open_nursery() as nursery:
                for gate in gates:
                    gate.stalled = True
                nursery.start_soon(create)
                for gate in gates:  # the database write first, then (after it) the snapshot
                    await gate.entered.wait()  # created in memory, this write not done
                    assert not replies
                    gate.release()
            created = replies[0]
            await crash_a()  # kill -9 right after the reply
            expire_lease(redis_url, redis_prefix, created.code)
            async with open_client(addr_b.url) as host:
                welcome = await host.host(created.code, created.host_token)
                assert welcome.code == created.code
                state = await host.next_event(m.State)
                assert state.state["phase"] == "lobby"


async def test_a_session_fenced_a_moment_ago_redirects_its_resumes(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
) -> None:
    """A woken owner closes its clients with 4104 and they reconnect at once, while the fenced
    session is still on its way out of the node: they are sent to the new owner, never told
    ``bad_token`` (the checker's ``completes`` after a pause, seed 201)."""
    from pubquiz_engine.server.failover import Moved

    with trio.fail_after(60):
        async with zombie_pair(tmp_path, postgres_url, redis_url, redis_prefix,
                               "durable") as (a, addr_a, _b, addr_b, _offset), \
                contextlib.AsyncExitStack() as stack:
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            _host, _ann, bob, _question = await open_question(addr_a.url, code, host_token,
                                                              stack)
            freeze_lease(a, redis_url, redis_prefix, code)
            assert bob.token is not None
            await resume_with_retry(addr_b.url, bob.token, bob.last_seq, stack)
            session.fenced()  # what the refused write does; the session is not gone yet
            assert a.sessions.get(code) is session
            with pytest.raises(Moved) as moved:
                await a.find_session(code)
            assert moved.value.url == addr_b.url


async def test_a_durable_ack_survives_a_kill_whatever_redis_did(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str,
) -> None:
    """Issue 16 point 2: Redis stops storing snapshots just as a question opens, and the owner
    is killed later. The ack used to wait ``snapshot_wait`` for the snapshot covering its
    question and was sent anyway; the new owner restored the older snapshot and the acked
    answer, replayed against a question that was not open there, was only logged.

    Now nothing waits on a timer: the question reaches no player before its snapshot is
    stored, so no answer to it can be acked; work that comes once the change has waited
    longer than ``snapshot_wait`` is refused with the retryable ``unavailable``; and whatever a
    player saw and was acked is what the new owner has. The window given to the old behaviour
    (3 x ``snapshot_wait``) bounds the test; nothing here passes or fails by timing: the stall
    lasts until the kill."""
    with trio.fail_after(60):
        async with node(tmp_path, "a", postgres_url, redis_url, redis_prefix,
                        lease_ttl_ms=10_000) as (a, addr_a, crash_a), \
                node(tmp_path, "b", postgres_url, redis_url, redis_prefix,
                     lease_ttl_ms=10_000) as (_b, addr_b, _), \
                contextlib.AsyncExitStack() as stack:
            session, host_token = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            code = session.code
            host = await stack.enter_async_context(open_client(addr_a.url))
            await host.host(code, host_token)
            ann = await stack.enter_async_context(open_client(addr_a.url))
            await ann.join(code, "Ann")
            assert a.coord is not None
            gate = Gate(a.coord.snapshotter._store, "save_snapshot")
            a.coord.snapshotter._store = gate
            gate.stalled = True
            await host.send(m.Start(rid=999))
            await gate.entered.wait()  # the question is open in memory; Redis does not answer
            acked: list[m.AnswerAck] = []
            seen: list[m.Question] = []
            with trio.move_on_after(3 * a.config.snapshot_wait):
                question = await ann.next_event(m.Question, timeout=60)
                seen.append(question)
                acked.append(await ann.answer(question.q, 0))
            assert not seen, "a question went out before its snapshot was stored"
            # The change has waited longer than snapshot_wait: new work is refused, unchanged.
            carl = await stack.enter_async_context(open_client(addr_a.url))
            with pytest.raises(RemoteError) as refused:
                await carl.join(code, "Carl")
            assert refused.value.code == "unavailable" and refused.value.retryable
            await crash_a()
            expire_lease(redis_url, redis_prefix, code)
            await ann.wait_closed(timeout=20)
            assert ann.token is not None
            ann_b = await resume_with_retry(addr_b.url, ann.token, ann.last_seq, stack)
            state = await ann_b.next_event(m.State)
            for ack in acked:  # only under the old behaviour: its answer must be there
                assert state.state["phase"] == "question_open", state.state
                assert state.state["you"]["answer"] == 0, (ack, state.state)
            assert state.state["participant_count"] == 1  # Carl's refused join changed nothing
