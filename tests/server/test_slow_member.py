"""A member that stops reading is disconnected (4101) with bounded memory; the others get
every event and the session goes on."""

from __future__ import annotations

import socket
from pathlib import Path

import msgpack
import trio
from engine_fixtures import engine_at
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from pubquiz_engine.client import open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m

QUESTIONS = 200


def _long_quiz():  # type: ignore[no-untyped-def]
    rounds = [
        {"title": f"R{r}", "items": [
            {"kind": "single", "prompt": f"Question {r}.{i}: " + "x" * 900,
             "choices": ["a", "b"], "answer": "a", "time_limit": 60} for i in range(100)]}
        for r in range(QUESTIONS // 100)
    ]
    return load_quiz_data({"format": 1, "title": "Long", "rounds": rounds})


async def _stalled_player(port: int, code: str) -> trio.SocketStream:
    """Connect with a tiny receive window, join, and never read again."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/",
                                          subprotocols=["pubquiz.v1"])))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            break
    join = msgpack.packb({"t": "join", "rid": 1, "code": code, "name": "Sleepy", "team": None})
    await stream.send_all(ws.send(BytesMessage(data=join)))
    return stream


async def test_a_member_that_stops_reading_is_dropped_and_others_get_everything(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path, max_backlog_bytes=16 * 1024, socket_send_buffer=16 * 1024,
                             message_rate=1000.0,
                             message_burst=1000) as (engine, address):
            session, host_token = engine.create_session(_long_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ann:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann")
                stalled = await _stalled_player(address.port, session.code)
                async with stalled:
                    await host.next_event(m.PlayerJoined)
                    await host.next_event(m.PlayerJoined)
                    await host.request(m.Start)
                    for q in range(QUESTIONS - 1):
                        await host.request(m.Skip)
                        if q % 100 == 99:  # a round summary between rounds
                            await host.request(m.Next)
                    seen = [(await ann.next_event(m.Question)).q for _ in range(QUESTIONS)]
                    assert seen == list(range(QUESTIONS))
                    stats = engine._listener.statistics()  # type: ignore[union-attr]
                    assert stats.closed_slow_consumer == 1
                    # Bounded: what is queued for anyone stays under the configured bound.
                    assert all(mb.ws.backlog_bytes <= 16 * 1024 for mb in session.members())
                    sleepy = [mb for mb in session.members() if mb.participant == 2]
                    for member in sleepy:  # detached once its handler sees the close
                        assert member.ws.closed and member.ws.close_code == 4101
                    assert engine.health()["sessions"] == 1
