"""Drive ``pubquiz-engine`` commands through a pseudo-terminal, as a person at a keyboard would.

The command runs in its own session with the pty's slave side as its controlling terminal, so
Ctrl-C (``interrupt``) reaches it as the kernel's SIGINT and Ctrl-D (``end_input``) as the end of
its input, exactly as at a real terminal; its output is read from the master side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import sys
import termios
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import trio


def _take_terminal() -> None:  # runs in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Term:
    """One command on a pty. ``expect`` waits for a pattern in what it printed since the last
    match; everything is bounded by the caller's ``trio.fail_after``."""

    def __init__(self, process: trio.Process, master: trio.lowlevel.FdStream) -> None:
        self.process = process
        self._master = master
        self.output = ""  # everything printed, "\r\n" turned into "\n"
        self._pos = 0
        self._changed = trio.Event()
        self.ended = False

    async def _read(self) -> None:
        try:
            while chunk := await self._master.receive_some(65536):
                self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
                self._changed.set()
                self._changed = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # EIO: the command exited and the slave side closed
        self.ended = True
        self._changed.set()

    async def expect(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` (a regex) after the previous match."""
        compiled = re.compile(pattern)
        while True:
            found = compiled.search(self.output, self._pos)
            if found is not None:
                self._pos = found.end()
                return found
            if self.ended:
                raise AssertionError(f"ended without {pattern!r}; it printed:\n{self.output}")
            await self._changed.wait()

    def since_last(self) -> str:
        return self.output[self._pos:]

    async def type(self, line: str) -> None:
        await self._master.send_all(line.encode() + b"\r")

    async def interrupt(self) -> None:
        await self._master.send_all(b"\x03")

    async def end_input(self) -> None:
        await self._master.send_all(b"\x04")

    async def exit_code(self) -> int:
        code = await self.process.wait()
        while not self.ended:
            await self._changed.wait()
        return code


@contextlib.asynccontextmanager
async def terminal(args: list[str], *, state_dir: Path,
                   env: Mapping[str, str] | None = None) -> AsyncIterator[Term]:
    """``pubquiz-engine ARGS`` on a fresh pty; killed at the end if still running."""
    master_fd, slave_fd = pty.openpty()
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "PUBQUIZ_STATE_DIR": str(state_dir),
               "COLUMNS": "120", "TERM": "dumb", **(env or {})}
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "pubquiz_engine.cli", *args],
            stdin=slave_fd, stdout=slave_fd, stderr=slave_fd, env=environ,
            start_new_session=True, preexec_fn=_take_terminal)
    finally:
        os.close(slave_fd)
    master = trio.lowlevel.FdStream(master_fd)
    term = Term(process, master)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(term._read)
            try:
                yield term
            except BaseException:
                # A failed or timed-out expectation: show what the person would have seen.
                print(f"--- pubquiz-engine {' '.join(args)} printed:\n{term.output}",
                      file=sys.stderr)
                raise
            finally:
                if process.returncode is None:
                    process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        await master.aclose()
