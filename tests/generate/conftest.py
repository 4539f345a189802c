"""Fixtures for the generation tests: the fake model server, listening on 127.0.0.1."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from modelkit import FakeModel


@pytest.fixture
async def fake_model(nursery: trio.Nursery) -> FakeModel:
    """A ``FakeModel`` serving real HTTP on 127.0.0.1 (port 0) until the test ends."""
    fake = FakeModel()
    listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    return fake


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Both store backends: the generation cache must work on each."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
