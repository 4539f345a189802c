"""The engine's counters: cheap to bump on the hot path, read by /health and /metrics.

Plain integers and a fixed-bucket histogram: bumping one is an attribute increment, with no
lock (one trio thread) and no label lookup. ``render_prometheus`` writes them in the Prometheus
text exposition format.
"""

from __future__ import annotations

import bisect
from collections import Counter

import attrs

#: Ack latency buckets in seconds (the durable target is p99 < 25 ms).
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@attrs.define
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = attrs.field()
    total: float = 0.0
    count: int = 0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


@attrs.define
class Metrics:
    messages_in: int = 0
    answers_accepted: int = 0
    answers_rejected: Counter[str] = attrs.field(factory=Counter)
    frame_errors: Counter[str] = attrs.field(factory=Counter)
    sessions_created: int = 0
    ack: Histogram = attrs.field(factory=lambda: Histogram(ACK_BUCKETS))

    def frame_error(self, code: str) -> None:
        self.frame_errors[code] += 1

    def answer_accepted(self) -> None:
        self.answers_accepted += 1

    def answer_rejected(self, reason: str) -> None:
        self.answers_rejected[reason] += 1

    def ack_latency(self, seconds: float) -> None:
        self.ack.observe(seconds)


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def render_prometheus(metrics: Metrics, gauges: dict[str, float]) -> str:
    """The counters, the ack histogram and the given gauges in Prometheus text format."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    metric("pubquiz_messages_in_total", "counter", "Client messages received.")
    out.append(_line("pubquiz_messages_in_total", metrics.messages_in))
    metric("pubquiz_answers_accepted_total", "counter", "Answers accepted.")
    out.append(_line("pubquiz_answers_accepted_total", metrics.answers_accepted))
    metric("pubquiz_answers_rejected_total", "counter", "Answers refused, by error code.")
    for reason, n in sorted(metrics.answers_rejected.items()):
        out.append(_line("pubquiz_answers_rejected_total", n, {"reason": reason}))
    metric("pubquiz_frame_errors_total", "counter", "Errors answered to clients, by code.")
    for code, n in sorted(metrics.frame_errors.items()):
        out.append(_line("pubquiz_frame_errors_total", n, {"code": code}))
    metric("pubquiz_sessions_created_total", "counter", "Sessions created.")
    out.append(_line("pubquiz_sessions_created_total", metrics.sessions_created))
    metric("pubquiz_ack_latency_seconds", "histogram", "Answer receipt to ack sent.")
    cumulative = 0
    for bound, n in zip(metrics.ack.bounds, metrics.ack.counts, strict=False):
        cumulative += n
        out.append(_line("pubquiz_ack_latency_seconds_bucket", cumulative, {"le": str(bound)}))
    out.append(_line("pubquiz_ack_latency_seconds_bucket", metrics.ack.count, {"le": "+Inf"}))
    out.append(_line("pubquiz_ack_latency_seconds_sum", metrics.ack.total))
    out.append(_line("pubquiz_ack_latency_seconds_count", metrics.ack.count))
    for name, value in sorted(gauges.items()):
        metric(name, "gauge", name.replace("_", " "))
        out.append(_line(name, value))
    return "\n".join(out) + "\n"
