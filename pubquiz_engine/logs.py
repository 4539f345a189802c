"""Structured logs: one JSON object per line on stdout, tagged with where it came from.

journald (or any collector) stores stdout as is; one JSON object per line keeps every field
machine-readable (``jq 'select(.session == "ABC234")'``) without a parser per message.

Rules this module keeps:

1. **Context travels with the task, not the call.** ``log_fields`` binds fields (the connection
   id, the session code, ...) in a ``contextvars`` variable; trio copies a task's context into
   the tasks it spawns, so every line a connection's handler logs, in any module, carries the
   same ``conn`` and ``session`` without each call site passing them. A field may be a
   callable, read when the line is written: a connection learns its session only after
   ``join``, and the lines after that carry the code.
2. **Explicit beats bound.** A value given with ``extra=`` on the call wins over a bound one.
3. **No secrets.** Nothing in the engine logs a host token, resume token or operator key;
   as a second line of defence the formatter replaces resume-token-shaped strings, passwords in
   URLs and every value registered with ``add_secret`` by ``***`` before the line is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

#: Fields copied from a record (from ``extra=`` or bound with ``log_fields``) into the JSON line.
FIELDS = ("node", "session", "conn", "participant", "quiz")

# A bound field is a value, or a callable giving the value when a line is written.
# Kept as a tuple of pairs: a ContextVar's default must be immutable, it is shared by all.
_bound: contextvars.ContextVar[tuple[tuple[str, object], ...]] = contextvars.ContextVar(
    "pubquiz_log_fields", default=())


def _merged(fields: Mapping[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple({**dict(_bound.get()), **fields}.items())


@contextlib.contextmanager
def log_fields(**fields: object) -> Iterator[None]:
    """Bind ``fields`` to every line logged in this task (and tasks it spawns) inside the block.

    Fields merge over those already bound; a field bound to ``None`` is unbound (a session's
    task, spawned from the connection that created it, drops that connection's ``conn``).
    """
    token = _bound.set(_merged(fields))
    try:
        yield
    finally:
        _bound.reset(token)


def bind_log_fields(**fields: object) -> None:
    """Bind ``fields`` for the rest of the current task (no block to leave).

    For a task's outermost frame, when lines logged by its caller after it returns, in the
    same task, must carry the fields too (the transport logs a handler's crash that way).
    """
    _bound.set(_merged(fields))


def bound_fields() -> dict[str, object]:
    """The fields bound here now, callables resolved, unbound (``None``) ones left out."""
    out: dict[str, object] = {}
    for key, value in _bound.get():
        if callable(value):
            try:
                value = value()
            except Exception:  # a log line must never fail because of its context
                value = None
        if value is not None:
            out[key] = value
    return out


class ContextFilter(logging.Filter):
    """Copies the bound fields (and fixed ones, such as the node id) onto each record."""

    def __init__(self, **fixed: object) -> None:
        super().__init__()
        self._fixed = {k: v for k, v in fixed.items() if v is not None}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (self._fixed | bound_fields()).items():
            if not hasattr(record, key):  # rule 2: extra= wins
                setattr(record, key, value)
        return True


# --- secrets ------------------------------------------------------------------------------------

# A resume token is CODE.PARTICIPANT.SECRET (see server.credentials); its secret part is
# token_urlsafe, so any such shape is scrubbed whether or not it was registered.
_RESUME_TOKEN = re.compile(r"\b([A-Za-z0-9]{6})\.(\d{1,9})\.[A-Za-z0-9_-]{8,}")
# scheme://user:password@host: keep the user, drop the password.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
# Runs of token characters: each is looked up in the registered set (one scan per line,
# whatever the number of registered secrets).
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{8,}")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class Redactor:
    """Replaces secrets in text by ``***``: registered values and secret-shaped patterns."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()  # made of token characters only: found by run lookup
        self._others: set[str] = set()  # anything else (an operator key with '/'): str.replace

    def add(self, secret: str | None) -> None:
        if secret is None or len(secret) < 8:
            return  # too short to scrub without mangling ordinary words
        (self._tokens if _TOKEN_CHARS.issuperset(secret) else self._others).add(secret)

    def discard(self, secret: str | None) -> None:
        if secret is not None:
            self._tokens.discard(secret)
            self._others.discard(secret)

    def __len__(self) -> int:
        return len(self._tokens) + len(self._others)

    def redact(self, text: str) -> str:
        text = _RESUME_TOKEN.sub(r"\1.\2.***", text)
        text = _URL_PASSWORD.sub(r"\1***@", text)
        if self._tokens:
            text = _TOKEN_RUN.sub(
                lambda m: "***" if m.group(0) in self._tokens else m.group(0), text)
        for secret in self._others:
            text = text.replace(secret, "***")
        return text


#: The process's redactor: the engine registers host tokens and the operator key here.
REDACTOR = Redactor()


def add_secret(secret: str | None) -> None:
    """Never let ``secret`` reach a log line (until ``discard_secret``)."""
    REDACTOR.add(secret)


def discard_secret(secret: str | None) -> None:
    REDACTOR.discard(secret)


# --- formatting -------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context fields, exc when any."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor if redactor is not None else REDACTOR

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return self._redactor.redact(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str, *, node: str | None = None, stream: TextIO | None = None
                  ) -> logging.Handler:
    """Send every log record, as JSON lines, to ``stream`` (stdout); returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(node=node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler
