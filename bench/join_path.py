"""Instructions the engine spends per join, counted by callgrind: the join path's figure that
the machine's load does not move (issue 18; the ``connections`` scenario's CPU per join swings
by a fifth between runs minutes apart on the 2-core VM).

Run: ``.venv/bin/python -m bench.join_path [--players 400] [--in-flight 20]``

The engine runs as its own process (``pubquiz-engine serve``, SQLite, no Redis) under
``valgrind --tool=callgrind`` with instrumentation off (``bench.answer_path``'s set-up); one
session is created, then collection is switched on for ``--players`` connections that each
open a WebSocket (the handshake), ``join`` and wait for their ``welcome`` and ``state``
(``--ping-only``: a ``ping`` instead), ``--in-flight`` at a time, and off again. Every thread
of the engine is counted (the SQLite writer's too); the kernel's work is not. Prints
instructions per join. ``--plain`` runs the
same load without callgrind. To compare builds, run it from a checkout of each
(``PYTHONPATH`` at that tree).

Only 127.0.0.1; every loop is bounded by ``--players``.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import trio

from bench.answer_path import _control, _total_ir, engine_under_callgrind
from pubquiz_engine.client import open_client
from pubquiz_engine.protocol import messages as m


async def main(players: int, in_flight: int, plain: bool, ping_only: bool = False
               ) -> dict[str, Any]:
    async with engine_under_callgrind("join-path", players, "fast", plain) as (
            url, pid, created, out):
        lanes = trio.Semaphore(in_flight)
        joined = 0
        all_joined, finish = trio.Event(), trio.Event()
        async with open_client(url) as host:
            await host.host(created.code, created.host_token)

            async def join(i: int) -> None:
                # Each connection stays open until every join is counted (closing is not part
                # of a join); its lane is free again once it has its state.
                nonlocal joined
                async with contextlib.AsyncExitStack() as stack:
                    async with lanes:
                        client = await stack.enter_async_context(open_client(url))
                        if ping_only:
                            await client.request(m.Ping)
                        else:
                            await client.join(created.code, f"player{i}")
                            await client.next_event(m.State, timeout=300)
                    joined += 1
                    if joined == players:
                        all_joined.set()
                    await finish.wait()

            async with trio.open_nursery() as nursery:
                _control("-i", "on", pid)
                started = trio.current_time()
                for i in range(players):
                    nursery.start_soon(join, i)
                await all_joined.wait()
                seconds = trio.current_time() - started
                _control("-i", "off", pid)
                finish.set()
            _control("-d", pid)
    ir = 0 if plain else _total_ir(out)
    return {"players": players, "in_flight": in_flight, "instructions": ir,
            "instructions_per_join": round(ir / players), "seconds": seconds}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--ping-only", action="store_true",
                        help="a ping instead of the join: the connection's cost without it")
    parser.add_argument("--plain", action="store_true",
                        help="no callgrind: the same load at full speed (to attach a profiler)")
    args = parser.parse_args()
    if not 1 <= args.players <= 2000 or not 1 <= args.in_flight <= 200:
        parser.error("--players 1..2000, --in-flight 1..200")
    result = trio.run(main, args.players, args.in_flight, args.plain, args.ping_only)
    what = "connections with a ping" if args.ping_only else "joins"
    print(f"{result['players']:,} {what} ({result['in_flight']} in flight): "
          f"{result['instructions']:,} instructions, {result['instructions_per_join']:,} per "
          f"{'connection' if args.ping_only else 'join'}; {result['seconds']:.2f} s")


if __name__ == "__main__":
    cli()
