"""The engine as operators run it: a real ``pubquiz-engine serve`` process, stopped by SIGTERM
mid-question. Every acked answer must be in the store afterwards, in both ack modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from engine_fixtures import SHORT_QUIZ
from httpkit import http_get

from pubquiz_engine.cli import FULL_COLLECTION_EVERY
from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.store import open_store

KEY = "test-operator-key"


async def _start_engine(tmp_path: Path, *extra: str) -> tuple[trio.Process, int]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pubquiz_engine.cli", "serve", "--port", "0",
         "--data-dir", str(tmp_path), "--operator-key", KEY, "--join-burst", "1000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(20):
        while b"listening on" not in buffer:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"engine exited early: {buffer.decode(errors='replace')}"
            buffer += chunk
    line = next(x for x in buffer.decode().splitlines() if "listening on" in x)
    port = int(json.loads(line)["msg"].split()[2].split(":")[1])
    return process, port


@pytest.mark.parametrize("ack_mode", ["durable", "fast"])
async def test_sigterm_mid_question_loses_no_acked_answer(tmp_path: Path, ack_mode: str) -> None:
    with trio.fail_after(60):
        process, port = await _start_engine(tmp_path, "--ack-mode", ack_mode)
        url = f"ws://127.0.0.1:{port}/"
        acked: list[tuple[int, int]] = []
        try:
            async with open_client(url) as operator:
                created = await operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo")
            async with open_client(url) as host:
                await host.host(created.code, created.host_token)
                all_acked = trio.Event()
                async with trio.open_nursery() as nursery:
                    async def player(i: int) -> None:
                        async with open_client(url) as client:
                            welcome = await client.join(created.code, f"P{i}")
                            question = await client.next_event(m.Question)
                            await client.answer(question.q, i % 3)
                            acked.append((welcome.participant or 0, question.q))
                            if len(acked) == 40:
                                all_acked.set()
                            closed = await client.wait_closed(timeout=30)
                            assert closed.code == CloseCode.SERVICE_RESTART

                    for i in range(40):
                        nursery.start_soon(player, i)
                    with trio.fail_after(20):  # start once the host has seen everyone join
                        for _ in range(40):
                            await host.next_event(m.PlayerJoined)
                    await host.request(m.Start)
                    with trio.fail_after(20):
                        await all_acked.wait()
                    process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                code = await process.wait()
            assert code == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    store = await open_store(f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}")
    try:
        results = await store.session_results(created.code)
    finally:
        await store.aclose()
    stored = {(a.participant_id, a.question) for a in results.answers}
    assert set(acked) <= stored
    assert len(results.answers) == len(stored) == 40


async def test_serve_spaces_the_gcs_full_collections_out(tmp_path: Path) -> None:
    """``serve`` (the process, not the library) sets the cyclic GC's third threshold, and
    /health reports the thresholds and the collections per generation."""
    with trio.fail_after(30):
        process, port = await _start_engine(tmp_path)
        try:
            status, _, body = await http_get(port, "/health")
            assert status == 200
            gc_health = json.loads(body)["gc"]
            assert gc_health["thresholds"][2] == FULL_COLLECTION_EVERY != 10  # CPython's default
            assert len(gc_health["collections"]) == 3
            assert gc_health["collections"][0] > 0  # start-up allocates: gen 0 has run
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_usr1_logs_every_session_and_its_members_connections(tmp_path: Path) -> None:
    """``kill -USR1``: the engine logs each session and one line per member with its
    connection's state, then ``state logged``; it goes on serving."""
    with trio.fail_after(30):
        process, port = await _start_engine(tmp_path)
        url = f"ws://127.0.0.1:{port}/"
        assert process.stdout is not None
        try:
            async with open_client(url) as operator:
                created = await operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo")
            async with open_client(url) as host, open_client(url) as ann:
                await host.host(created.code, created.host_token)
                welcome = await ann.join(created.code, "Ann")
                await host.next_event(m.PlayerJoined)
                process.send_signal(signal.SIGUSR1)
                buffer = b""
                while b"state logged" not in buffer:
                    chunk = await process.stdout.receive_some(4096)
                    assert chunk, buffer.decode(errors="replace")
                    buffer += chunk
                lines = [json.loads(x)["msg"] for x in buffer.decode().splitlines()
                         if x.startswith("{")]
                assert any(line.startswith(f"state: session {created.code} at seq ")
                           and "2 members" in line for line in lines), lines
                mine = [line for line in lines
                        if f": player {welcome.participant} conn " in line]
                assert len(mine) == 1 and mine[0].endswith(
                    "open close=None pending=0 backlog=0 writer=False queued=0 waiting=True"), mine
                assert "state logged: 1 sessions" in lines
                assert (await ann.request(m.Ping)).TYPE == "pong"  # still serving
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
