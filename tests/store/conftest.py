"""Fixtures for the store tests: every backend test runs on SQLite AND on real PostgreSQL.

``store_url`` is parametrised over both backends (the PostgreSQL case is marked ``postgres``
and, through the shared ``postgres_url`` fixture, fails under CI=true when the server is
absent). The PostgreSQL database is shared by the whole run, so every test works on session
codes of its own (``codes``), never on "all rows".
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from pubquiz_engine.store import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def codes() -> Callable[[], str]:
    """A factory of session codes unique to this test (the PostgreSQL database is shared)."""
    prefix = secrets.token_hex(3).upper()
    counter = iter(range(1_000_000))
    return lambda: f"T{prefix}{next(counter)}"
