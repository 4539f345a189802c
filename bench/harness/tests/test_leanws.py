"""The load generators' WebSocket client (``bench/baselines/leanws.js``) and msgpack peek
(``msgpeek.js``): their Node tests (a raw server that fragments, pings, splits frames across
TCP writes and closes; msgpeek against msgpackr). Against the real engine they are exercised by
``test_harness_scenarios.py`` (``fanout`` with the node client and a node_ws baseline)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from bench.harness.loadgen import NODE_MODULES, REPO

TEST = REPO / "bench" / "baselines" / "leanws_test.js"


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_MODULES / "msgpackr").is_dir(),
                    reason="needs node and bench/baselines/node_modules")
def test_leanws_node_tests() -> None:
    env = {**os.environ, "PERF_NODE_MODULES": str(NODE_MODULES)}
    result = subprocess.run(["node", "--test", str(TEST)], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
