"""Latency statistics: pure functions over lists of milliseconds.

Percentiles use the nearest-rank method on the sorted sample (the p99 of 100 samples is the
99th smallest), so a reported p99 is always a latency that was actually observed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of an already sorted sample."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """n, mean, p50, p90, p99, max of a sample (milliseconds), rounded to microseconds."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "n": len(ordered),
        "mean": r(sum(ordered) / len(ordered)),
        "p50": r(percentile(ordered, 50)),
        "p90": r(percentile(ordered, 90)),
        "p99": r(percentile(ordered, 99)),
        "max": r(ordered[-1]),
    }


def rate(count: int, seconds: float) -> float | None:
    """``count / seconds`` rounded to one decimal, or None for an empty window."""
    if seconds <= 0:
        return None
    return round(count / seconds, 1)
