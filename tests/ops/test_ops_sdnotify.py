"""sd_notify: the notifier alone, then a real ``serve`` process talking to a fake systemd.

The fake systemd is what systemd itself is to a ``Type=notify`` service: a datagram unix socket
whose path is in ``NOTIFY_SOCKET``, plus ``WATCHDOG_USEC`` for the watchdog period.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest
import trio
import trio.socket
from httpkit import http_get
from opskit import serve_process

from pubquiz_engine.server.sdnotify import Notifier


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping()
    assert not notifier.status("x") and not notifier.extend_timeout(5)
    notifier.close()


def test_watchdog_is_half_the_period_and_only_for_its_pid() -> None:
    env = {"NOTIFY_SOCKET": "@unused", "WATCHDOG_USEC": "3000000"}
    with Notifier.from_environ(env) as notifier:
        assert notifier.watchdog_interval == pytest.approx(1.5)
    with Notifier.from_environ({**env, "WATCHDOG_PID": str(os.getpid())}) as notifier:
        assert notifier.watchdog_interval == pytest.approx(1.5)
    with Notifier.from_environ({**env, "WATCHDOG_PID": str(os.getpid() + 1)}) as notifier:
        assert notifier.enabled and notifier.watchdog_interval is None
    with Notifier.from_environ({"WATCHDOG_USEC": "3000000"}) as notifier:
        assert notifier.watchdog_interval is None  # no socket to ping


def test_datagrams_reach_path_and_abstract_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "n")
    abstract = f"pubquiz-test-{os.getpid()}"
    for address, bind_to in ((path, path), ("@" + abstract, "\0" + abstract)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
            systemd.bind(bind_to)
            systemd.settimeout(5)
            with Notifier(address) as notifier:
                assert notifier.ready("serving\nsecond line")
                assert _fields(systemd.recv(4096)) == {"READY": "1",
                                                       "STATUS": "serving second line"}
                assert notifier.stopping("draining", extend_timeout=1.5)
                assert _fields(systemd.recv(4096)) == {
                    "STOPPING": "1", "STATUS": "draining", "EXTEND_TIMEOUT_USEC": "1500000"}


def test_a_missing_socket_is_reported_not_raised(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with Notifier(str(tmp_path / "nobody-listens")) as notifier:
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


async def test_serve_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    assert len(path) < 100, "unix socket paths are limited to 108 bytes"
    with trio.fail_after(45):
        systemd = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
        with systemd:
            await systemd.bind(path)
            env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
            async with serve_process(tmp_path, "--admin-port", "0", env=env) as served:
                received: list[dict[str, str]] = []

                async def next_message() -> dict[str, str]:
                    with trio.fail_after(10):
                        fields = _fields(await systemd.recv(4096))
                    received.append(fields)
                    return fields

                ready = await next_message()
                while "READY" not in ready:  # nothing may come before READY but STATUS
                    assert set(ready) <= {"STATUS"}, ready
                    ready = await next_message()
                assert ready["READY"] == "1"
                match = re.fullmatch(r"serving 127\.0\.0\.1:(\d+) \(admin (\d+)\): 0 sessions, "
                                     r"0 members, 0 connections, write-behind depth 0",
                                     ready["STATUS"])
                assert match, ready
                port, admin = int(match[1]), int(match[2])
                assert port == served.port
                # READY means both ports listen: each answers at once. With an admin port,
                # /metrics is served there and not on the public port.
                assert (await http_get(port, "/ready"))[0] == 200
                assert (await http_get(admin, "/metrics"))[0] == 200
                assert (await http_get(port, "/metrics"))[0] == 404

                pings = 0
                while pings < 3:
                    message = await next_message()
                    if message.get("WATCHDOG") == "1":
                        pings += 1
                        assert message["STATUS"].startswith("serving ")
                assert all("STOPPING" not in m for m in received)

                served.process.send_signal(signal.SIGTERM)
                stopping = await next_message()
                while "STOPPING" not in stopping:
                    stopping = await next_message()
                assert stopping["STOPPING"] == "1"
                assert stopping["STATUS"].startswith("draining: ")
                # drain_timeout (20 s by default) plus the engine's stop margin (10 s)
                assert int(stopping["EXTEND_TIMEOUT_USEC"]) == 30_000_000
                with trio.fail_after(30):
                    assert await served.process.wait() == 0
