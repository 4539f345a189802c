"""The benchmark harness: scenarios that drive the real engine over real sockets.

One command per scenario (``python -m bench.harness <scenario> ...``, see ``bench/README.md``).
The engine runs as its own process (``pubquiz-engine serve``) pinned to one core; the load
generator is several worker processes (``bench.harness.worker``) pinned to the other cores,
each holding many lean clients that speak pubquiz.v1 through the engine's own codec.

Rules the harness keeps:

1. Only loopback addresses are ever a target; every loop is bounded in count and in time.
2. It stops only the processes it started, by their PID.
3. Every run writes one JSON file to ``bench/results/`` (the command, the machine, the
   parameters and every figure) and prints a readable table.
4. Pure parts (statistics, quiz data, the report table) import no trio and are unit-tested.
"""
