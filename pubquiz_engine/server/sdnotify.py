"""systemd's notify protocol (``sd_notify``): READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT.

With ``Type=notify`` systemd passes the path of a datagram socket in ``NOTIFY_SOCKET`` and, with
``WatchdogSec=``, the watchdog period in ``WATCHDOG_USEC``; the service sends newline-separated
``KEY=VALUE`` assignments to that socket (``man sd_notify``). The protocol is one datagram per
message, so it needs no library.

Rules this module keeps:

1. **A no-op when not under systemd.** Without ``NOTIFY_SOCKET`` every method returns at once;
   the engine calls them unconditionally.
2. **Sending never blocks and never raises.** The socket is non-blocking: a full queue on
   systemd's side drops the datagram (the next watchdog or status message follows soon), and an
   error is logged once rather than taking the engine down for the sake of a status line.
3. **The watchdog is the event loop's.** ``watchdog_interval`` is half the period systemd
   expects (as ``sd_watchdog_enabled`` recommends); the engine pings from a trio task, so a
   stalled event loop stops the pings and systemd restarts the process.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd; see the module docstring."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """``address``: the ``NOTIFY_SOCKET`` value (a path, or ``@name`` for the abstract
        namespace); None disables the notifier. ``watchdog_usec``: ``WATCHDOG_USEC``."""
        self.address = address
        self.watchdog_interval: float | None = (
            watchdog_usec / 2e6 if watchdog_usec and address else None)
        self._sock: socket.socket | None = None
        self._failed = False
        if address:
            self._target = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd set up for this process (disabled when there is none).

        ``WATCHDOG_PID``, when set, names the process the watchdog is for; any other process
        (a child that inherited the environment) does not ping.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                watchdog = int(env.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                watchdog = None
        return cls(address, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; whether it was handed to the kernel."""
        if self._sock is None or not assignments:
            return False
        # A newline inside a value would start a new assignment: keep each on its line.
        payload = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            self._sock.sendto(payload, self._target)
        except BlockingIOError:
            return False  # rule 2: systemd's queue is full; the next message follows soon
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.notify(*_status(status))

    def watchdog(self, status: str | None = None) -> bool:
        return self.notify("WATCHDOG=1", *_status(status))

    def stopping(self, status: str | None = None, *, extend_timeout: float | None = None
                 ) -> bool:
        """STOPPING=1; with ``extend_timeout`` also asks systemd for that many more seconds
        from now before it kills the process (``EXTEND_TIMEOUT_USEC``)."""
        extra = [] if extend_timeout is None else [_extend(extend_timeout)]
        return self.notify("STOPPING=1", *_status(status), *extra)

    def extend_timeout(self, seconds: float) -> bool:
        return self.notify(_extend(seconds))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _status(status: str | None) -> list[str]:
    return [] if status is None else [f"STATUS={status}"]


def _extend(seconds: float) -> str:
    return f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}"
