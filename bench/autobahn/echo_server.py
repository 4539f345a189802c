"""An echo application on the engine's transport, for the Autobahn|Testsuite fuzzing client.

Not part of the engine: pubquiz.v1 refuses text, this echoes binary as binary and text as
text, so the whole RFC 6455 suite (cases 1-7, 9, 10) applies to the transport itself.

    python -m bench.autobahn.echo_server --port 9001 [--reader auto|epoll|portable]

Prints ``listening <port>`` once it accepts connections; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import functools
import signal

import trio

from pubquiz_engine.server.transport import (
    ConnectionClosed,
    ListenerInfo,
    TransportConfig,
    WebSocket,
    serve,
)

# Case 9.x sends messages of up to 16 MiB, and echoes them back whole.
_MAX_MESSAGE = 20 * 1024 * 1024
_MAX_BACKLOG = 64 * 1024 * 1024


async def echo(ws: WebSocket) -> None:
    try:
        while True:
            data = await ws.receive()
            if isinstance(data, str):
                ws.send_text(data)
            else:
                ws.send(data)
    except ConnectionClosed:
        pass


def config_for(reader: str) -> TransportConfig:
    return TransportConfig(
        max_message_size=_MAX_MESSAGE,
        max_backlog_bytes=_MAX_BACKLOG,
        require_subprotocol=False,  # the fuzzing client offers none
        reader=reader,
    )


async def main(port: int, reader: str) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            info: ListenerInfo = await nursery.start(
                functools.partial(serve, echo, host="127.0.0.1", port=port,
                                  config=config_for(reader))
            )
            print(f"listening {info.port}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--reader", choices=["auto", "epoll", "portable"], default="auto")
    args = parser.parse_args()
    trio.run(main, args.port, args.reader)
