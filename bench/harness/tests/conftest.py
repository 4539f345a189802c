"""Make ``bench.harness`` importable when pytest is pointed at this folder from anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[3])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
