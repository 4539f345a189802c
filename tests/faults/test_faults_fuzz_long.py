"""Row 10 at length: many thousands of hypothesis frames against one live engine.

``tests/server/test_hostile_live.py`` runs 4 x 300 generated frames in the fast suite; this is
the same property (``_play_against``: the fuzzing connection is answered frame by frame, the
session in play goes on for everyone else) at ``PUBQUIZ_FAULT_FUZZ_BATCHES`` x 300 frames.
Generating the frames is what costs (about 7 ms a frame), so it runs only when asked::

    PUBQUIZ_FAULT_FUZZ_BATCHES=34 .venv/bin/pytest -s tests/faults/test_faults_fuzz_long.py

(34 x 300 = 10,200 frames, about 80 s on 2 cores.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_live import _play_against, frames

BATCHES = int(os.environ.get("PUBQUIZ_FAULT_FUZZ_BATCHES", "0"))
FRAMES = 300
played: list[int] = []


@pytest.mark.slow
@pytest.mark.skipif(not BATCHES, reason="set PUBQUIZ_FAULT_FUZZ_BATCHES to run it")
@settings(max_examples=max(BATCHES, 1), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames(), min_size=FRAMES, max_size=FRAMES))
def test_many_thousand_generated_frames_never_hurt_the_session(batch: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_play_against, Path(tmp), batch)
    played.append(len(batch))
    print(f"\r{sum(played)} frames played against live engines, session unhurt", end="")
