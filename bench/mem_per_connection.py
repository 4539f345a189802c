"""Where an idle connection's memory goes: the engine under tracemalloc, N players joined.

Run: ``.venv/bin/python bench/mem_per_connection.py 2000`` (Node and ``python -m bench.harness
setup`` needed: the players are ``bench/harness/worker.js`` clients). Writes the 40 largest
allocation sites (Python heap grown between "no player" and "N players joined", per line and
per traceback) to ``bench/results/mem-lines.txt`` and ``mem-tracebacks.txt``, and prints the
traced bytes per connection. tracemalloc itself inflates RSS (about 3x): read the traced
bytes, not the RSS, and compare runs of the same N.

Only 127.0.0.1; the engine is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"


def engine_main(argv: list[str]) -> int:
    """The engine, with SIGUSR2 taking a snapshot (the first is the baseline; SIGUSR1 is the
    engine's own: it logs its state)."""
    tracemalloc.start(8)
    snaps: list[tracemalloc.Snapshot] = []

    def dump(signum: int, frame: object) -> None:
        snaps.append(tracemalloc.take_snapshot())
        if len(snaps) != 2:
            return
        OUT.mkdir(parents=True, exist_ok=True)
        for key, name in (("lineno", "mem-lines.txt"), ("traceback", "mem-tracebacks.txt")):
            stats = snaps[1].compare_to(snaps[0], key)
            with open(OUT / name, "w", encoding="utf-8") as fh:
                total = sum(s.size_diff for s in stats)
                fh.write(f"total {total / 1024:.0f} KiB\n")
                for s in stats[:40]:
                    fh.write(f"{s.size_diff / 1024:9.1f} KiB {s.count_diff:7d} blocks\n")
                    for line in s.traceback.format()[-8:]:
                        fh.write("      " + line + "\n")

    signal.signal(signal.SIGUSR2, dump)
    from pubquiz_engine.cli import main

    return main(argv)


def drive(n: int) -> None:
    import trio

    sys.path.insert(0, str(REPO))
    from bench.harness.engine import LOAD_SETTINGS, OPERATOR_KEY, free_port, http_get
    from bench.harness.loadgen import open_loadgen
    from bench.harness.quizzes import bench_quiz
    from bench.harness.scenarios import create_sessions
    from bench.harness.system import CorePlan

    port = free_port()
    work = tempfile.mkdtemp(prefix="pubquiz-mem-")
    cmd = [sys.executable, __file__, "--engine", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--data-dir", work, "--database-url", f"sqlite:///{work}/db.sqlite3",
           "--operator-key", OPERATOR_KEY]
    for key, value in LOAD_SETTINGS.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(Path(work) / "engine.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    async def run() -> None:
        try:
            with trio.fail_after(30):
                while True:
                    try:
                        if (await http_get(port, "/ready"))[0] == 200:
                            break
                    except (OSError, ValueError, IndexError, trio.TooSlowError):
                        pass
                    await trio.sleep(0.1)
            url = f"ws://127.0.0.1:{port}/"
            sessions = await create_sessions(url, 1, quiz=bench_quiz(1),
                                             options={"max_participants": n})
            players = [(sessions[0][0], f"p{i}", None) for i in range(n)]
            async with open_loadgen(CorePlan((), ()), port=port, players=players, workers=1,
                                    addresses=["127.0.0.1"], client="node") as lg:
                await trio.sleep(1)
                proc.send_signal(signal.SIGUSR2)
                await trio.sleep(2)
                await lg.go(timeout=300)
                await trio.sleep(2)
                proc.send_signal(signal.SIGUSR2)
                await trio.sleep(8)  # the snapshot and its comparison take a few seconds
        finally:
            proc.send_signal(signal.SIGTERM)

    try:
        trio.run(run)
    finally:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()  # by its own PID
            proc.wait()
    total_line = (OUT / "mem-lines.txt").read_text(encoding="utf-8").splitlines()[0]
    kib = float(total_line.split()[1])
    print(f"{n} connections: traced Python heap {kib:.0f} KiB = {kib / n:.2f} KiB per "
          f"connection; details in {OUT / 'mem-lines.txt'}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--engine"]:
        raise SystemExit(engine_main(sys.argv[2:]))
    drive(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
