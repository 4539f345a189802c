"""Shared fixtures: real PostgreSQL and Redis, one private database / key prefix per test run.

Under ``CI=true`` a missing service fails the test run; elsewhere the tests that need it skip.
Each run creates its own PostgreSQL database (dropped at the end) and uses its own Redis key
prefix (deleted at the end), so concurrent runs never see each other's data.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("PUBQUIZ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PUBQUIZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)


def _missing(service: str, why: object) -> None:
    message = f"{service} is not reachable: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: service tests never skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, as a URL; dropped afterwards."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - dev extra not installed
        _missing("PostgreSQL driver", exc)
    name = f"pubquiz_test_{RUN_ID}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _missing("PostgreSQL", exc)
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the real Redis server; use together with ``redis_prefix``."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover
        _missing("Redis driver", exc)
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        _missing("Redis", exc)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix private to this test; every key under it is deleted afterwards."""
    import redis

    prefix = f"pubquiz-test:{RUN_ID}:{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file private to this test."""
    return f"sqlite:///{tmp_path / 'pubquiz.sqlite3'}"
