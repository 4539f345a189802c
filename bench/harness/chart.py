"""The PNG chart: latency and throughput against load, from the JSON results of earlier runs.

``python -m bench.harness chart [--results DIR] [--out FILE.png]`` reads every result file of
``fanout``, ``answers`` and ``sustained`` in ``DIR`` and draws three panels:

1. fanout: one-core capacity (delivered messages/s divided by the server's CPU share; ours and
   each same-run baseline) and the question broadcast p99 against the number of members
   (S x P), the median of the runs at each size;
2. answers: ack latency p99 against the offered answer rate, one line per store and ack mode;
3. sustained (the latest run): ack p99 and engine RSS against time.

Pure apart from reading the files and writing the PNG; matplotlib is imported here only (it is
a bench dependency, not the engine's), with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def load_results(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Result documents by scenario, oldest first (file names carry the UTC time)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "scenario" in doc and doc.get("figures"):
            doc["_path"] = str(path)
            found[doc["scenario"]].append(doc)
    return found


def fanout_points(docs: list[dict[str, Any]]) -> dict[str, list[tuple[int, float, float]]]:
    """series name -> [(members, one-core capacity msgs/s, broadcast p99 ms)], the median
    over the runs at each member count, sorted by members. Capacity = delivered/s divided by
    the share of its core the server used (robust on a shared machine; the raw delivered/s is
    in the JSON). Ours only from flood runs with the Node client."""
    raw: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for doc in docs:
        f = doc["figures"]
        members = f.get("joined")
        if not members or f.get("client", "python") != "node" or f.get("pace") != "flood":
            continue
        cpu = (f.get("cpu") or {}).get("engine_cpu_pct")
        if f.get("delivered_per_s") and cpu:
            raw["pubquiz engine"][members].append(
                (f["delivered_per_s"] * 100 / cpu,
                 (f.get("broadcast_last_ms") or {}).get("p99") or 0.0))
        for b in f.get("baselines", []):
            if b.get("delivered_per_s") and b.get("server_cpu_pct"):
                raw[b["name"]][b["n"]].append((b["delivered_per_s"] * 100 / b["server_cpu_pct"],
                                               b.get("rtt_p99_ms") or 0.0))
    return {name: sorted((n, statistics.median(v[0] for v in vals),
                          statistics.median(v[1] for v in vals)) for n, vals in by_n.items())
            for name, by_n in raw.items()}


def answers_points(docs: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """"store ack_mode" -> [(offered rate, ack p99 ms)], the latest run per rate."""
    latest: dict[tuple[str, float], float] = {}
    for doc in docs:
        for r in doc["figures"].get("runs", []):
            p99 = (r.get("ack_ms") or {}).get("p99")
            if p99 is not None:
                latest[(f"{r['store']} {r['ack_mode']}", float(r["offered_rate"]))] = p99
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (name, offered), p99 in latest.items():
        series[name].append((offered, p99))
    return {k: sorted(v) for k, v in series.items()}


def draw(directory: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results(directory)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    ax = axes[0]
    fan = fanout_points(results.get("fanout", []))
    for name, pts in fan.items():
        style = "o-" if name == "pubquiz engine" else "s--"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("members (sessions x players)")
    ax.set_ylabel("one-core capacity: delivered msgs/s / CPU share")
    ax.set_title("fanout (flood): throughput, median per load")
    if fan.get("pubquiz engine"):
        twin = ax.twinx()
        pts = fan["pubquiz engine"]
        twin.plot([p[0] for p in pts], [p[2] for p in pts], "r^:", label="engine broadcast p99")
        twin.set_ylabel("broadcast p99 (ms)")
        twin.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    for name, rate_p99 in answers_points(results.get("answers", [])).items():
        ax.plot([p[0] for p in rate_p99], [p[1] for p in rate_p99], "o-", label=name)
    ax.axhline(25, color="grey", linestyle="--", linewidth=1, label="durable target 25 ms")
    ax.axhline(5, color="grey", linestyle=":", linewidth=1, label="fast target 5 ms")
    ax.set_xlabel("offered answers/s")
    ax.set_ylabel("ack p99 (ms)")
    ax.set_yscale("log")
    ax.set_title("answers: ack latency")
    ax.legend(fontsize=8)

    ax = axes[2]
    sustained = results.get("sustained", [])
    if sustained:
        samples = sustained[-1]["figures"]["samples"][1:]
        ts = [s["t_s"] for s in samples]
        ax.plot(ts, [s["ack_ms"]["p99"] or 0 for s in samples], "o-", label="ack p99 (ms)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("ack p99 (ms)")
        twin = ax.twinx()
        twin.plot(ts, [s["rss_kib"] / 1024 for s in samples], "g.-", label="engine RSS (MiB)")
        twin.set_ylabel("engine RSS (MiB)")
        twin.legend(loc="upper right", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("sustained: latency and RSS over time")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
