"""The fault campaign's fixtures: a TCP fault proxy in front of the test run's PostgreSQL.

``tests/server`` is put on the import path so that these tests reuse its ``engine_fixtures``
(``engine_at``, ``short_quiz``, ``SHORT_QUIZ``) when this directory runs on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

_SERVER_TESTS = str(Path(__file__).resolve().parent.parent / "server")
if _SERVER_TESTS not in sys.path:
    sys.path.append(_SERVER_TESTS)

from faultkit import RawWs  # noqa: E402  (after the path set-up above, on purpose)
from proxykit import FaultProxy  # noqa: E402


@pytest.fixture(autouse=True)
def _no_leftover_sockets() -> Iterator[None]:
    """Close raw connections a failed test left open (else they surface as a ResourceWarning,
    an error under ``filterwarnings = error``, in whichever later test the GC runs)."""
    yield
    RawWs.close_leftovers()


@pytest.fixture
async def pg_proxy(postgres_url: str, nursery: trio.Nursery) -> FaultProxy:
    """A ``FaultProxy`` to the run's PostgreSQL server; ``pg_proxy.url_for(postgres_url)``."""
    proxy = FaultProxy.for_url(postgres_url)
    await nursery.start(proxy.run)
    return proxy
