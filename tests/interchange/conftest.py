"""Fixtures for the interchange tests: the sample files, and Kahoot workbooks made on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kahootkit import MakeKahoot, write_kahoot

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def make_kahoot(tmp_path: Path) -> MakeKahoot:
    """Write a Kahoot-template workbook with the given question rows; returns its path."""

    def make(rows: Any, *, name: str = "kahoot.xlsx", **layout: Any) -> Path:
        return write_kahoot(tmp_path / name, rows, **layout)

    return make
