"""The Python load generator's join against a scripted server: retryable refusals are retried
as SPEC tells clients (next rid, after ``retry_after_ms``), the others end the player."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
import trio_websocket

from bench.harness.worker import JOIN_ATTEMPTS, Player, Worker, _JoinRefused


def _refusal(rid: int, code: str, retryable: bool) -> dict[str, Any]:
    return {"t": "error", "rid": rid, "code": code, "message": "scripted",
            "retryable": retryable, **({"retry_after_ms": 1} if retryable else {})}


@asynccontextmanager
async def scripted(replies: Sequence[str]) -> AsyncIterator[tuple[int, list[int]]]:
    """A WebSocket server on 127.0.0.1 that answers the n-th join with ``replies[n]``:
    ``welcome``, ``retry`` (a retryable ``unavailable``) or ``refuse`` (``not_found``).
    Yields its port and the rids of the joins it received."""
    rids: list[int] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="pubquiz.v1")
        for reply in replies:
            join = msgpack.unpackb(await ws.get_message())
            assert join["t"] == "join"
            rids.append(join["rid"])
            frame = ({"t": "welcome", "rid": join["rid"], "participant": 7}
                     if reply == "welcome" else
                     _refusal(join["rid"], "unavailable" if reply == "retry" else "not_found",
                              reply == "retry"))
            await ws.send_message(msgpack.packb(frame))
        await ws.get_message()  # until the client goes

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     None)
        yield server.port, rids
        nursery.cancel_scope.cancel()


def _worker(port: int) -> tuple[Worker, Player]:
    spec = {"host": "127.0.0.1", "port": port, "local_addresses": ["127.0.0.1"],
            "players": [("ABCD", "p0", None)]}
    out = trio.lowlevel.FdStream(os.open(os.devnull, os.O_WRONLY))
    worker = Worker(spec, out)
    return worker, worker.players[0]


async def test_a_retryable_join_refusal_is_retried_with_the_next_rid() -> None:
    with trio.fail_after(10):
        async with scripted(["retry", "retry", "welcome"]) as (port, rids), \
                trio.open_nursery() as nursery:
            worker, player = _worker(port)
            await worker._connect(nursery, player)
            assert player.participant == 7
            assert rids == [1, 2, 3]
            assert worker.join_retries == {"unavailable": 2}
            assert len(worker.join_ms) == 1
            assert player.ws is not None
            await player.ws.aclose()
            await worker.out.aclose()


@pytest.mark.parametrize("replies", [["refuse"], ["retry"] * JOIN_ATTEMPTS])
async def test_a_join_refused_for_good_or_too_often_ends_the_player(replies: list[str]) -> None:
    with trio.fail_after(10):
        async with scripted(replies) as (port, rids), trio.open_nursery() as nursery:
            worker, player = _worker(port)
            with pytest.raises(_JoinRefused):
                await worker._connect(nursery, player)
            assert rids == list(range(1, len(replies) + 1))
            assert player.participant is None
            await worker.out.aclose()
