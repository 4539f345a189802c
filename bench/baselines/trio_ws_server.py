"""(a) trio + trio-websocket server for the pubquiz fan-out/fan-in micro-benchmark.
Usage: python trio_ws_server.py PORT   (binds 127.0.0.1 only)
Env: TWS_QUEUE=message_queue_size (default: library default 1)
     TWS_RECVBUF=receive_buffer_size (default: library default 4096)
"""
import os
import sys

import msgpack
import trio
from trio_websocket import ConnectionClosed, serve_websocket

QTEXT = "Which of these rivers flows through the most countries on its way to the sea, roughly?"
QTEXT = QTEXT[:90]
OPTS = ["opt-a-xxxx", "opt-b-xxxx", "opt-c-xxxx", "opt-d-xxxx"]
packb, unpackb = msgpack.packb, msgpack.unpackb

conns = set()
stats = {"answers": 0}

async def broadcast(k):
    for s in range(k):
        data = packb({"t": "q", "s": s, "q": QTEXT, "o": OPTS})   # packed once per broadcast
        for ws in list(conns):
            try:
                await ws.send_message(data)
            except ConnectionClosed:
                conns.discard(ws)

async def main(port):
    kw = {}
    if os.environ.get("TWS_QUEUE"):
        kw["message_queue_size"] = int(os.environ["TWS_QUEUE"])
    if os.environ.get("TWS_RECVBUF"):
        kw["receive_buffer_size"] = int(os.environ["TWS_RECVBUF"])
    async with trio.open_nursery() as bg:
        async def handler(request):
            ws = await request.accept()
            try:
                while True:
                    m = unpackb(await ws.get_message())
                    t = m["t"]
                    if t == "a":
                        stats["answers"] += 1
                        await ws.send_message(packb({"t": "ack", "s": m["s"]}))
                    elif t == "join":
                        conns.add(ws)
                        await ws.send_message(packb({"t": "joined", "id": m["id"]}))
                    elif t == "go":
                        bg.start_soon(broadcast, m["k"])
            except ConnectionClosed:
                pass
            finally:
                conns.discard(ws)

        await bg.start(lambda task_status: serve_websocket(
            handler, "127.0.0.1", port, ssl_context=None, task_status=task_status, **kw))
        print("READY", port, flush=True)

if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
