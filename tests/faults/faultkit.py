"""Tools of the fault campaign: a TCP fault proxy, a raw WebSocket player, a real engine process.

- ``FaultProxy`` (in ``tests/proxykit.py``, shared with the snapshot tests): a trio TCP proxy
  between the engine and a server (PostgreSQL here) that can pass, *delay* every chunk, *stall*
  (hold every byte, keep every socket open: a black hole that later resumes) and *cut* (close
  every proxied connection and refuse new ones at once, like a server that went away). The
  shared database server is never stopped: only the path to it breaks.
- ``RawWs``: a WebSocket client on a raw socket (wsproto), for what the thin client cannot do:
  bind a chosen loopback source address (one "phone" per address), keep the exact bytes of a
  reply (byte-identical error checks), stay silent (never answer pings, never send a FIN), and
  abort with a TCP RST. Hundreds of them cost little, so the engine's own figures dominate.
- ``serve_process``: a real ``pubquiz-engine serve`` child process; its output is read all
  the time (an unread pipe would block the engine once its buffer filled).
- ``health`` / ``lag_histogram``: ``/health`` and the event-loop lag histogram of ``/metrics``
  (over ``tests/httpkit.py``).

Rules: every address is loopback, every wait has a deadline, every process and socket a test
opens is closed by that test (processes by their own handle, never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import trio
from httpkit import http_get
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
)

HOST = "127.0.0.1"
SUB = "pubquiz.v1"


def phone_address(i: int) -> str:
    """A distinct loopback source address per simulated phone (Linux routes all of 127/8)."""
    return f"127.0.{i // 250 + 1}.{i % 250 + 2}"


async def wait_until(predicate: Callable[[], bool], *, timeout: float, every: float = 0.01
                     ) -> float:
    """Wait (polling) until ``predicate()`` holds; returns the seconds it took.

    Only for engine state that has no event to wait on (a connection count, a queue depth);
    the deadline makes a condition that never comes a failure, not a hang."""
    started = trio.current_time()
    with trio.fail_after(timeout):
        # Polling on purpose: these conditions have no event to wait on (see the docstring).
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(every)
    return trio.current_time() - started


# --- a raw WebSocket player ----------------------------------------------------------------------


class HandshakeRefused(ConnectionError):
    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


class RawWs:
    """One pubquiz.v1 connection on a raw socket. Messages are plain dicts (msgpack maps).

    Every instance is remembered until closed, so that a test that fails half way leaks no
    socket: the autouse fixture in conftest.py calls ``close_leftovers`` after each test."""

    _open: ClassVar[set[RawWs]] = set()

    @classmethod
    def close_leftovers(cls) -> None:
        for raw in list(cls._open):
            raw.abort()

    def __init__(self, stream: trio.SocketStream) -> None:
        RawWs._open.add(self)
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self._pending: list[bytes] = []
        self._partial = b""
        self.close_code: int | None = None
        self.eof = False
        #: Answer pings (a live phone). False: a peer that vanished without a FIN.
        self.answer_pings = True

    @classmethod
    async def connect(cls, port: int, *, source: str | None = None, origin: str | None = None
                      ) -> RawWs:
        sock = trio.socket.socket()
        try:
            if source is not None:
                await sock.bind((source, 0))
            await sock.connect((HOST, port))
        except BaseException:
            sock.close()
            raise
        self = cls(trio.SocketStream(sock))
        headers = [(b"Origin", origin.encode())] if origin else []
        await self.stream.send_all(self.ws.send(Request(host=HOST, target="/",
                                                        subprotocols=[SUB],
                                                        extra_headers=headers)))
        while True:
            await self._feed()
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return self
                if isinstance(event, RejectConnection):
                    await self.aclose()
                    raise HandshakeRefused(event.status_code)
                raise AssertionError(f"unexpected handshake event {event!r}")

    async def _feed(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            self.ws.receive_data(None)
            raise EOFError("the server hung up")
        self.ws.receive_data(data)

    async def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else msgpack.packb(message)
        await self.stream.send_all(self.ws.send(BytesMessage(data=data)))

    async def send_many(self, messages: list[dict[str, Any]]) -> None:
        """Pipeline ``messages`` in one write (a flooder does not wait for replies)."""
        out = b"".join(self.ws.send(BytesMessage(data=msgpack.packb(x))) for x in messages)
        await self.stream.send_all(out)

    async def receive_raw(self) -> bytes:
        """The bytes of the next data message; pings answered unless ``answer_pings`` is off.
        Raises EOFError at the close (``close_code`` then holds the server's code)."""
        while not self._pending:
            if self.close_code is not None:
                raise EOFError(f"closed with {self.close_code}")
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    # wsproto hands over a message in pieces as its bytes arrive.
                    self._partial += bytes(event.data)
                    if event.message_finished:
                        self._pending.append(self._partial)
                        self._partial = b""
                elif isinstance(event, Ping) and self.answer_pings:
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
            if not self._pending and self.close_code is None:
                await self._feed()
        return self._pending.pop(0)

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = msgpack.unpackb(await self.receive_raw())
        return message

    async def reply(self, rid: int) -> dict[str, Any]:
        """Read until the reply carrying ``rid`` (events before it are dropped)."""
        while True:
            message = await self.receive()
            if message.get("rid") == rid:
                return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.reply(message["rid"])

    async def outcome(self, message: dict[str, Any]) -> str:
        """Send a request; its reply's type, or the error code if it was refused."""
        reply = await self.request(message)
        return str(reply["code"] if reply["t"] == "error" else reply["t"])

    async def next_of(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message.get("t") == kind:
                return message

    def abort(self) -> None:
        """Reset the connection (SO_LINGER 0: an RST, no close frame, no FIN)."""
        RawWs._open.discard(self)
        sock = self.stream.socket
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    async def aclose(self) -> None:
        RawWs._open.discard(self)
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            await self.stream.aclose()


# --- a real engine process -----------------------------------------------------------------------


class ServeProcess:
    """A ``pubquiz-engine serve`` child: its port, its output so far, its process handle."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.port = 0
        self.output: list[str] = []
        self._listening = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while chunk := await self.process.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.output.append(line)
                if not self._listening.is_set() and "listening on" in line:
                    self.port = int(json.loads(line)["msg"].split()[2].rsplit(":", 1)[1])
                    self._listening.set()

    def kill_9(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)


@contextlib.asynccontextmanager
async def serve_process(*args: str) -> AsyncIterator[ServeProcess]:
    """Run ``pubquiz-engine serve --port 0 *args`` until the block ends (then SIGKILL if it is
    still running). Yields once the engine listens."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pubquiz_engine.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    served = ServeProcess(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(served._read)
        try:
            with trio.fail_after(30):
                while not served._listening.is_set():
                    if process.returncode is not None:
                        raise AssertionError("engine exited early:\n" + "\n".join(served.output))
                    with trio.move_on_after(0.1):
                        await served._listening.wait()
            yield served
        finally:
            # Whatever happened, the child goes (then the reader sees EOF and ends).
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}"


# --- HTTP -----------------------------------------------------------------------------------------


async def health(port: int) -> dict[str, Any]:
    status, _, body = await http_get(port, "/health")
    assert status == 200, status
    result: dict[str, Any] = json.loads(body)
    return result


async def lag_histogram(port: int) -> dict[str, float]:
    """The cumulative bucket counts of ``pubquiz_event_loop_lag_seconds`` (``le`` -> count)."""
    status, _, body = await http_get(port, "/metrics")
    assert status == 200, status
    buckets: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("pubquiz_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    return buckets


def lags_over(before: dict[str, float], after: dict[str, float], bound: str) -> int:
    """How many loop-lag observations between two scrapes were above ``bound`` seconds."""
    total = after["+Inf"] - before["+Inf"]
    under = after[bound] - before[bound]
    return int(total - under)


def worst_bucket(before: dict[str, float], after: dict[str, float]) -> str:
    """The smallest bucket bound that holds every observation between two scrapes."""
    new_total = after["+Inf"] - before["+Inf"]
    for le in sorted((k for k in after if k != "+Inf"), key=float):
        if after[le] - before[le] >= new_total:
            return le
    return "+Inf"
