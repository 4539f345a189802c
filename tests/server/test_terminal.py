"""`pubquiz-engine play` and `host`: a person at a terminal, driven through stdin/stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.protocol import messages as m


async def _read_until(stream: trio.abc.ReceiveStream, needle: bytes, seen: bytearray) -> None:
    while needle not in seen:
        chunk = await stream.receive_some(4096)
        assert chunk, f"process ended before {needle!r}: {seen.decode(errors='replace')}"
        seen += chunk


async def test_play_from_a_terminal(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "pubquiz_engine.cli", "play", session.code,
                 "--name", "Terminal Tess", "--url", address.url],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert process.stdin is not None and process.stdout is not None
            seen = bytearray()
            try:
                await _read_until(process.stdout, b"Joined", seen)
                async with open_client(address.url) as host:
                    await host.host(session.code, host_token)
                    await host.request(m.Start)
                    await _read_until(process.stdout, b"Capital of France?", seen)
                    await process.stdin.send_all(b"0\n")
                    await _read_until(process.stdout, b"Answer received.", seen)
                    answered = await host.next_event(m.Answered)
                    assert answered.q == 0
                    await host.request(m.Close)
                    await host.request(m.Reveal)
                    await _read_until(process.stdout, b"You were right", seen)
            finally:
                process.kill()
                await process.wait()
