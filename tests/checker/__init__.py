"""The randomized, model-based fault checker (issues 16 and 24), in the spirit of Jepsen.

Many clients play a quiz against two real engine processes that share PostgreSQL and Redis,
while a nemesis injects faults on a schedule drawn from a seed. Every client records what it
sent and everything it received; at the end the histories are compared with what the database
holds. The parts:

- ``history``: what one client records (its frames in and out, connects, closes), and how an
  anomaly's evidence is printed;
- ``properties``: the promises checked, as pure functions of the histories and the database
  facts (no I/O: they are unit-tested on hand-written histories);
- ``cluster``: the engine processes, the fault proxies in front of PostgreSQL and Redis, and
  the nemesis (kill -9, SIGTERM, SIGSTOP past the lease, database cut or stall, Redis cut);
- ``workload``: the players and the host, as protocol clients (trio-websocket, plain msgpack
  maps, written from ``protocol/SPEC.md``);
- ``runner``: one seeded run, start to verdict.

The short CI run is ``tests/checker/test_checker_run.py``; the long run is
``python -m bench.checker``. ``docs/reliability.md`` ("The fault checker") has the figures.
"""
