"""Versioned schema migrations: numbered SQL files per backend, applied at start-up.

Layout: ``migrations/<backend>/NNNN_name.sql`` with ``backend`` in ``sqlite`` / ``postgres``.
Both directories hold the same versions and the same logical schema; only the dialect differs.
Each backend applies, in one transaction under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an
advisory transaction lock), every migration newer than ``max(schema_version.version)`` and
records it in ``schema_version``, so concurrent start-ups apply each migration exactly once.

Rules this module keeps: a migration file is never edited once released (add a new number);
statements are separated by ``;`` at the end of a line and contain no other semicolons; a
database at a newer version than this code knows is refused, never downgraded.
"""

from __future__ import annotations

import re
from importlib import resources

import attrs

BACKENDS = ("sqlite", "postgres")

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)
"""

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration file into statements; comment-only chunks are dropped."""
    out = []
    for chunk in re.split(r";\s*(?:\n|$)", sql):
        lines = [ln.strip() for ln in chunk.splitlines()]
        if any(ln and not ln.startswith("--") for ln in lines):
            out.append(chunk.strip())
    return tuple(out)


def load(backend: str) -> list[Migration]:
    """The backend's migrations, in version order. Versions must be 1, 2, 3, ... with no gap."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], split_statements(entry.read_text("utf-8"))))
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {found}")
    return found
