"""The Python client follows the engine's redirect to the node that owns a session (issue 17
point 2, client side): two engines on one Redis and one PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_failover_engine import QUIZ, two_nodes

from pubquiz_engine.client import Client, open_session_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_a_player_sent_to_the_wrong_node_lands_on_the_owner(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    with trio.fail_after(60):
        async with two_nodes(tmp_path, postgres_url, redis_url, redis_prefix) as (
                a, addr_a, _kill_a, _b, addr_b):
            session, _ = await a.open_session(load_quiz_data(QUIZ), mode="solo")
            hops: list[str] = []

            async def join(client: Client) -> m.Welcome:
                hops.append(client.ws.path)
                return await client.join(session.code, "Ann")

            # Asked at node b, which does not own the session: b redirects to a.
            async with open_session_client(addr_b.url, session.code, join) as player:
                assert player.welcome is not None and player.welcome.name == "Ann"
                assert player.ws.remote.port == addr_a.port
            assert hops == [f"/?code={session.code}"] * 2
            assert [p.name for p in a.sessions[session.code].game.participants.values()] == \
                ["Ann"]
