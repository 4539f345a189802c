"""The perf-baselines toy protocol served by pubquiz_engine.server.transport (bench only).

Usage: python quizproto_server.py PORT [--eager]
(binds 127.0.0.1; prints "READY PORT" when listening; ``--eager`` sets
``TransportConfig.coalesce_writes=False``: every send goes to the kernel at once)

Same protocol and same work per frame as ``shared/perf-baselines/servers/trio_eager_server.py``
so that the two rows of ``run.py`` compare transports, not applications:
  join -> joined (registers the member); go{k} -> k broadcasts, each packed and framed ONCE and
  handed to every member with ``send_frame``, yielding to the scheduler between broadcasts;
  answer -> ack.
The load generator offers no subprotocol, hence ``require_subprotocol=False``.
"""

from __future__ import annotations

import functools
import sys

import msgpack
import trio

from pubquiz_engine.server.transport import TransportConfig, WebSocket, frame_binary, serve

QTEXT = "Which of these rivers flows through the most countries on its way to the sea, roughly?"[
    :90
]
OPTS = ["opt-a-xxxx", "opt-b-xxxx", "opt-c-xxxx", "opt-d-xxxx"]
packb, unpackb = msgpack.packb, msgpack.unpackb

members: set[WebSocket] = set()


async def broadcast(k: int) -> None:
    for s in range(k):
        framed = frame_binary(packb({"t": "q", "s": s, "q": QTEXT, "o": OPTS}))
        for ws in list(members):
            ws.send_frame(framed)
        await trio.sleep(0)  # noqa: ASYNC115 - the baseline's exact yield, kept for parity


async def main(port: int, eager: bool) -> None:
    async with trio.open_nursery() as background:

        async def handler(ws: WebSocket) -> None:
            try:
                while True:
                    m = unpackb(await ws.receive())
                    t = m["t"]
                    if t == "a":
                        ws.send(packb({"t": "ack", "s": m["s"]}))
                    elif t == "join":
                        members.add(ws)
                        ws.send(packb({"t": "joined", "id": m["id"]}))
                    elif t == "go":
                        background.start_soon(broadcast, m["k"])
            finally:
                members.discard(ws)

        config = TransportConfig(require_subprotocol=False, coalesce_writes=not eager)
        info = await background.start(
            functools.partial(serve, handler, host="127.0.0.1", port=port, config=config)
        )
        print("READY", info.port, flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), "--eager" in sys.argv[2:])
