"""kill -9 of the owning engine process mid-question with a few hundred players.

Two real ``pubquiz-engine serve`` processes share Redis and PostgreSQL. The owner is killed
with SIGKILL while a question is open; every player reconnects (with back-off, as a phone does)
and resumes on the other process once the dead owner's lease lapses. Every acked answer is in
the resumed session and in the database exactly once; the question keeps its deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from pubquiz_engine.client import Client, ClientClosed, ConnectFailed, open_client
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.store import open_store

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

KEY = "failover-operator-key"  # 16 characters at least
PLAYERS = int(os.environ.get("FAILOVER_PLAYERS", "200"))
LEASE_TTL_MS = 1500
QUIZ = {
    "format": 1,
    "title": "Kill -9 night",
    "rounds": [{"title": "R", "items": [
        {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon", "Nice"],
         "answer": "Paris", "time_limit": 120, "points": 3},
    ]}],
}


async def start_engine(tmp_path: Path, name: str, postgres_url: str, redis_url: str,
                       prefix: str) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pubquiz_engine.cli", "serve", "--port", "0",
         "--data-dir", str(tmp_path / name), "--database-url", postgres_url,
         "--redis-url", redis_url, "--redis-prefix", prefix, "--node-id", name,
         "--lease-ttl-ms", str(LEASE_TTL_MS), "--operator-key", KEY,
         "--join-rate", "10000", "--join-burst", "10000",
         "--max-connections-per-address", "5000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(20):
        while b"listening on" not in buffer:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, buffer.decode(errors="replace")
            buffer += chunk
    line = next(x for x in buffer.decode().splitlines() if "listening on" in x)
    port = int(json.loads(line)["msg"].split()[2].split(":")[1])
    return process, f"ws://127.0.0.1:{port}/"


async def two_engines_and_a_session(
    tmp_path: Path, postgres_url: str, redis_url: str, prefix: str,
    processes: list[trio.Process],
) -> tuple[tuple[trio.Process, str], tuple[trio.Process, str], m.SessionCreated]:
    """Engines a (the owner) and b, and a session created on a by an operator."""
    engines = []
    for name in ("a", "b"):
        process, url = await start_engine(tmp_path, name, postgres_url, redis_url, prefix)
        processes.append(process)
        engines.append((process, url))
    async with open_client(engines[0][1]) as operator:
        created = await operator.create_session(KEY, quiz=QUIZ, mode="solo")
    return engines[0], engines[1], created


async def stop_all(processes: list[trio.Process]) -> None:
    """Kill whatever the test left running (only the processes it started)."""
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_back(postgres_url: str, code: str) -> tuple[Any, Any]:
    """The session's results and row as the database holds them."""
    store = await open_store(postgres_url)
    try:
        return await store.session_results(code), await store.load_session(code)
    finally:
        await store.aclose()


async def resume_somewhere(urls: list[str], token: str, last_seq: int,
                           stack: contextlib.AsyncExitStack) -> Client:
    """A phone after its node died: try the addresses with back-off until one serves it."""
    for attempt in range(100):
        for url in urls:
            try:
                client = await stack.enter_async_context(open_client(url, connect_timeout=2))
                await client.resume(token, last_seq)
                return client
            except (RemoteError, ClientClosed, ConnectFailed) as exc:
                if isinstance(exc, RemoteError):
                    assert exc.retryable, exc
        await trio.sleep(min(0.5, 0.05 * (attempt + 1)))
    raise AssertionError("never resumed")


async def test_kill_9_of_the_owner_mid_question(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    processes: list[trio.Process] = []
    try:
        with trio.fail_after(120):
            (owner, url_a), (other, url_b), created = await two_engines_and_a_session(
                tmp_path, postgres_url, redis_url, redis_prefix, processes)
            code = created.code
            acked: dict[int, tuple[str, int, int]] = {}
            deadline_ms = 0
            async with contextlib.AsyncExitStack() as stack:
                host = await stack.enter_async_context(open_client(url_a))
                await host.host(code, created.host_token)

                async def player(i: int, client: Client, ready: trio.Event) -> None:
                    nonlocal deadline_ms
                    welcome = await client.join(code, f"P{i:03}")
                    ready.set()
                    question = await client.next_event(m.Question, timeout=30)
                    deadline_ms = question.deadline_ms
                    await client.answer(question.q, i % 3)
                    assert client.token is not None and welcome.participant is not None
                    acked[welcome.participant] = (client.token, client.last_seq, i % 3)

                # Connections are opened here (each is a nursery: it must close in this task).
                clients = [await stack.enter_async_context(open_client(url_a))
                           for _ in range(PLAYERS)]
                async with trio.open_nursery() as nursery:
                    joined = []
                    for i, client in enumerate(clients):
                        ready = trio.Event()
                        joined.append(ready)
                        nursery.start_soon(player, i, client, ready)
                    for ready in joined:
                        await ready.wait()
                    await host.request(m.Start)
                assert len(acked) == PLAYERS
                owner.kill()  # SIGKILL: no drain, no final snapshot, no lease release
                killed_at = trio.current_time()
                await owner.wait()

            async with contextlib.AsyncExitStack() as stack:
                first = await resume_somewhere([url_a, url_b], *acked[1][:2], stack=stack)
                takeover = trio.current_time() - killed_at
                # Within the lease lifetime plus a second (the bound).
                assert takeover < LEASE_TTL_MS / 1000 + 1.0, takeover
                resumed: dict[int, Client] = {1: first}
                for pid, (token, last_seq, _) in acked.items():
                    if pid not in resumed:
                        resumed[pid] = await resume_somewhere([url_b], token, last_seq, stack)
                for pid, client in resumed.items():
                    assert client.welcome is not None and client.welcome.participant == pid
                    state = await client.next_event(m.State)
                    assert state.state["phase"] == "question_open"
                    assert state.state["question"]["deadline_ms"] == deadline_ms
                    assert state.state["you"]["answer"] == acked[pid][2]
                host_b = await stack.enter_async_context(open_client(url_b))
                await host_b.host(code, created.host_token)
                await host_b.request(m.Close)
                await host_b.request(m.Reveal)
                scores: dict[int, Any] = {}
                for pid, client in resumed.items():
                    result = await client.next_event(m.Result)
                    scores[pid] = result.score
                    assert result.correct == (acked[pid][2] == 0)
                assert sum(1 for s in scores.values() if s > 0) == sum(
                    1 for (_, _, v) in acked.values() if v == 0)
            print(f"takeover after kill -9: {takeover:.2f}s; {len(acked)} answers checked")
            other.send_signal(15)
            with trio.fail_after(30):
                assert await other.wait() == 0
    finally:
        await stop_all(processes)
    results, _ = await read_back(postgres_url, code)
    stored = sorted((a.participant_id, a.question) for a in results.answers)
    assert stored == sorted((pid, 0) for pid in acked)  # every acked answer, exactly once


async def test_sigstop_past_the_lease_then_sigcont_is_fenced(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The owner freezes (SIGSTOP) past its lease; another node takes over; when the owner
    thaws (SIGCONT) it finds its lease gone, tells its clients 4104 and writes nothing more."""
    processes: list[trio.Process] = []
    try:
        with trio.fail_after(90):
            (owner, url_a), (other, url_b), created = await two_engines_and_a_session(
                tmp_path, postgres_url, redis_url, redis_prefix, processes)
            code = created.code
            async with contextlib.AsyncExitStack() as stack:
                host_a = await stack.enter_async_context(open_client(url_a))
                await host_a.host(code, created.host_token)
                ann = await stack.enter_async_context(open_client(url_a))
                await ann.join(code, "Ann")
                await host_a.request(m.Start)
                question = await ann.next_event(m.Question)
                await ann.answer(question.q, 0)
                assert ann.token is not None
                owner.send_signal(19)  # SIGSTOP: frozen, sockets open, lease not renewed
                frozen_at = trio.current_time()
                ann_b = await resume_somewhere([url_b], ann.token, ann.last_seq, stack)
                takeover = trio.current_time() - frozen_at
                assert ann_b.welcome is not None and ann_b.welcome.participant == 1
                state = await ann_b.next_event(m.State)
                assert state.state["you"]["answer"] == 0
                owner.send_signal(18)  # SIGCONT: the old owner wakes up
                closed = await host_a.wait_closed(timeout=15)
                assert closed.code == 4104  # fenced: it stopped serving the session
                # The session goes on at B: the host moves there and scores the question.
                host_b = await stack.enter_async_context(open_client(url_b))
                await host_b.host(code, created.host_token)
                await host_b.request(m.Reveal)
                result = await ann_b.next_event(m.Result)
                assert result.correct and result.score == 3
            print(f"takeover of a frozen owner: {takeover:.2f}s")
            other.send_signal(15)  # graceful stop: the score records are flushed
            with trio.fail_after(30):
                assert await other.wait() == 0
    finally:
        await stop_all(processes)
    results, row = await read_back(postgres_url, code)
    assert [(a.participant_id, a.question) for a in results.answers] == [(1, 0)]  # once
    assert row is not None and row.epoch >= 2
    assert [s.score for s in results.standings] == [3.0]  # counted once, not twice


async def test_sigstop_across_the_deadline_then_sigcont_shows_nobody_the_close(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Issue 24's rollback with real processes: the owner is frozen (SIGSTOP) while a question
    is open; the other node takes over and the host gives the question a minute more there;
    the original deadline passes; the owner thaws (SIGCONT) and its timer fires at once. Its
    `closed` must reach nobody (output commit: its write is fenced, so it sends nothing), and
    the players it still had see the question open, deadline as extended, on the new owner."""
    processes: list[trio.Process] = []
    quiz = {**QUIZ, "rounds": [{"title": "R", "items": [
        {**QUIZ["rounds"][0]["items"][0], "time_limit": 12}]}]}  # type: ignore[index]
    try:
        with trio.fail_after(90):
            engines = []
            for name in ("a", "b"):
                process, url = await start_engine(tmp_path, name, postgres_url, redis_url,
                                                  redis_prefix)
                processes.append(process)
                engines.append((process, url))
            (owner, url_a), (_other, url_b) = engines
            async with open_client(url_a) as operator:
                created = await operator.create_session(KEY, quiz=quiz, mode="solo")
            code = created.code
            async with contextlib.AsyncExitStack() as stack:
                host_a = await stack.enter_async_context(open_client(url_a))
                await host_a.host(code, created.host_token)
                ann = await stack.enter_async_context(open_client(url_a))
                await ann.join(code, "Ann")
                bob = await stack.enter_async_context(open_client(url_a))
                await bob.join(code, "Bob")
                await host_a.request(m.Start)
                question = await ann.next_event(m.Question)
                await ann.answer(question.q, 0)
                assert bob.token is not None and ann.token is not None
                owner.send_signal(19)  # SIGSTOP
                bob_b = await resume_somewhere([url_b], bob.token, bob.last_seq, stack)
                host_b = await stack.enter_async_context(open_client(url_b))
                await host_b.host(code, created.host_token)
                await host_b.request(m.Extend, seconds=60)
                extended = await bob_b.next_event(m.Extended)
                # The original deadline passes while the owner is frozen (a wait for the clock
                # itself, not for a condition).
                await trio.sleep(max(0.0, question.deadline_ms / 1000 - time.time()) + 0.3)
                owner.send_signal(18)  # SIGCONT: its timer is overdue and fires at once
                closed = await ann.wait_closed(timeout=15)
                assert closed.code == 4104
                seen: list[m.Message] = []
                while True:
                    try:
                        seen.append(ann.events.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                assert not [e for e in seen if isinstance(e, m.Closed)], seen
                ann_b = await resume_somewhere([url_b], ann.token, ann.last_seq, stack)
                state = await ann_b.next_event(m.State)
                assert state.state["phase"] == "question_open"
                assert state.state["question"]["deadline_ms"] == extended.deadline_ms
                assert state.state["you"]["answer"] == 0
    finally:
        await stop_all(processes)
