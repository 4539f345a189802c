"""The engine on PostgreSQL (for real), and a session's life cycle limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.protocol import messages as m


@pytest.mark.postgres
@pytest.mark.parametrize("ack_mode", ["durable", "fast"])
async def test_quiz_on_postgresql_stores_every_acked_answer(
    tmp_path: Path, postgres_url: str, ack_mode: str
) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path, database_url=postgres_url, ack_mode=ack_mode) as (
                engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host:
                await host.host(session.code, host_token)
                acked = []
                async with trio.open_nursery() as nursery:
                    async def player(i: int) -> None:
                        async with open_client(address.url) as client:
                            await client.join(session.code, f"P{i}")
                            question = await client.next_event(m.Question)
                            await client.answer(question.q, i % 3)
                            acked.append(i)
                    for i in range(20):
                        nursery.start_soon(player, i)
                    for _ in range(20):
                        await host.next_event(m.PlayerJoined)
                    await host.request(m.Start)
                assert len(acked) == 20
                await host.request(m.Close)
                await host.request(m.Reveal)
            assert await engine.persister.drain(timeout=10)
            results = await engine.store.session_results(session.code)
            assert len(results.answers) == 20
            assert len({a.participant_id for a in results.answers}) == 20
            # Paris (choice 0) was right for every third player: their scores were stored.
            right = [s for s in results.standings if s.score > 0]
            assert len(right) == 7


async def test_idle_session_ends_and_its_members_are_told(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, session_idle_timeout=0.3) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
                closed = await ann.wait_closed(timeout=10)
                assert closed.code == CloseCode.SESSION_ENDED
            await session.ended.wait()
            assert session.code not in engine.sessions
            async with open_client(address.url) as late:
                with pytest.raises(RemoteError) as gone:
                    await late.join(session.code, "Bob")
                assert gone.value.code is ErrorCode.BAD_CODE
            assert await engine.persister.drain(timeout=10)
            stored = await engine.store.load_session(session.code)
            assert stored is not None and stored.status == "finished"


async def test_finished_session_is_archived_after_its_linger(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, session_finished_linger=0.3) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                await host.request(m.End)
                assert session.code in engine.sessions  # results stay up for a while
                closed = await ann.wait_closed(timeout=10)
                assert closed.code == CloseCode.SESSION_ENDED
            await session.ended.wait()
            assert session.code not in engine.sessions
