"""The short run of the fault checker (part of the suite): a few seeds against two real engine
processes on PostgreSQL and Redis.

Each run checks the properties today's ``main`` keeps under the fault families it injects
(``properties.ON_MAIN``): the run fails on any anomaly among those, and prints the seed, the
history that shows it and the command that repeats it. The long run, with every property, is
``python -m bench.checker --seeds 50`` (docs/reliability.md, "The fault checker"); more seeds of
these runs: ``PUBQUIZ_CHECKER_SEEDS=10``.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import trio

from checker.properties import enabled_for
from checker.runner import RunConfig, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: Small on purpose: a run is two engine processes, a quiz of three 2 s questions and five
#: players who reconnect and reload; about 12 s each on a loaded 2-core machine. The database
#: faults never cause a takeover (the lease lives in Redis), so the no-takeover properties all
#: hold there; kill -9 forces two takeovers, a pause one (and a zombie that wakes up).
SHORT: dict[str, RunConfig] = {
    "db-cut-stall": RunConfig(seed=11, families=("db_cut", "db_stall"), faults=2, players=5,
                              questions=3, time_limit=2.0,
                              props=enabled_for(("db_cut", "db_stall"))),
    "kill9": RunConfig(seed=12, families=("kill9",), faults=2, players=5, questions=3,
                       time_limit=2.0, props=enabled_for(("kill9",))),
    # Issue 24: the owner paused past its lease, woken after the other node took over.
    "pause": RunConfig(seed=13, families=("pause",), faults=1, players=5, questions=3,
                       time_limit=2.0, props=enabled_for(("pause",))),
}


#: ``PUBQUIZ_CHECKER_SEEDS=N`` runs each short configuration with N seeds instead of one (the
#: same checks, for a longer look from pytest; ``bench.checker`` checks every property).
EXTRA = int(os.environ.get("PUBQUIZ_CHECKER_SEEDS", "1"))
RUNS = [(name, attrs.evolve(config, seed=config.seed + 100 * i))
        for name, config in SHORT.items() for i in range(max(1, EXTRA))]


@pytest.mark.parametrize("config", [c for _, c in RUNS],
                         ids=[f"{name}-seed{c.seed}" for name, c in RUNS])
async def test_short_checker_run_finds_no_anomaly(config: RunConfig, postgres_url: str,
                                                  redis_url: str, redis_prefix: str,
                                                  tmp_path: Path) -> None:
    with trio.fail_after(config.budget + 60):
        report = await run(config, postgres_url=postgres_url, redis_url=redis_url,
                           prefix=redis_prefix, tmp=tmp_path)
    print(report.render())
    outcomes = report.answers()
    # The run did what it is for: answers acked and refused, reconnects, every fault injected.
    assert outcomes["ack"] >= 10, report.summary()
    assert sum(h.entries[-1].conn for h in report.histories if h.entries) > config.players
    assert len(report.faults) == config.faults, report.summary()
    assert not report.anomalies, report.render(per_prop=3)
