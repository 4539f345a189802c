"""Reading participants back (failover replays the players who joined after a snapshot)."""

from __future__ import annotations

from collections.abc import Callable

from storekit import participant, session

from pubquiz_engine.store import Store


async def test_participants_come_back_in_id_order(store: Store, codes: Callable[[], str]) -> None:
    code, other = codes(), codes()
    await store.write([session(code), session(other),
                       participant(code, 2, name="Bob"), participant(code, 1, name="Ann"),
                       participant(other, 1, name="Zed")])
    rows = await store.load_participants(code)
    assert [(r.participant_id, r.name) for r in rows] == [(1, "Ann"), (2, "Bob")]
    assert all(r.code == code and r.resume_token_hash for r in rows)
    assert await store.load_participants(codes()) == []
