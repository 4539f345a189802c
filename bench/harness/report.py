"""Results: one JSON file per run in ``bench/results/`` and a readable table on the terminal.

Pure apart from ``write_result`` (one file write). A row of the table is
``(figure, value, target)``; the JSON keeps everything the scenario measured, the exact command,
the machine and the core plan, so that a figure can always be traced to how it was produced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
Row = tuple[str, str, str]


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    """A figure for the table: ``None`` as ``-``, floats rounded, thousands separated."""
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip()


def table(title: str, rows: Sequence[Row]) -> str:
    """A plain-text table with a title line and three aligned columns."""
    header: Row = ("figure", "value", "target / note")
    all_rows = [header, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(3)]
    lines = [title, "-" * len(title)]
    for i, row in enumerate(all_rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_result(scenario: str, document: Mapping[str, Any],
                 directory: Path = RESULTS_DIR) -> Path:
    """Write ``document`` as ``<scenario>-<UTC time>.json``; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{scenario}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{scenario}-{stamp}-{n}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n",
                    encoding="utf-8")
    return path
