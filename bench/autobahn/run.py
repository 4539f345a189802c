"""Autobahn|Testsuite's fuzzing client against the transport: one command.

    .venv/bin/python -m bench.autobahn.run [--readers epoll,portable] [--cases 1-7,9,10]

1. builds the suite's environment once (Python 2.7 -> a virtualenv made with
   ``virtualenv<20.22`` -> ``autobahntestsuite==25.10.1`` from PyPI) in ``--env``
   (default ``~/.cache/pubquiz-engine/autobahn``); Python 2.7 is found as ``--python2``,
   ``$PYTHON2``, ``python2.7`` on the PATH or ``~/.pyenv/versions/2.7*/bin/python``;
2. for each reader, starts ``bench/autobahn/echo_server.py`` (the transport echoing binary
   and text) on a free loopback port and runs ``wstest -m fuzzingclient`` against it;
3. prints the count of cases per behaviour, the 9.x round-trip times, and exits 1 unless
   every case is OK, NON-STRICT or INFORMATIONAL (its close behaviour too).

Exit 2: the environment could not be built (no Python 2.7, no network to PyPI).
The HTML/JSON reports stay in ``--out`` (default ``bench/results/autobahn``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUITE_VERSION = "25.10.1"
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
CASE_GROUPS = {"1": "1.*", "2": "2.*", "3": "3.*", "4": "4.*", "5": "5.*", "6": "6.*",
               "7": "7.*", "9": "9.*", "10": "10.*", "12": "12.*", "13": "13.*"}


def find_python2(explicit: str | None) -> str | None:
    """The first candidate that runs and is Python 2.7 (a pyenv shim may exist and fail)."""
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/2.7*/bin/python")))
    for candidate in (explicit, os.environ.get("PYTHON2"), *reversed(pyenv),
                      shutil.which("python2.7")):
        if not candidate:
            continue
        try:
            ok = subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (2, 7))"],
                capture_output=True, timeout=30, check=False).returncode == 0
        except OSError:
            ok = False
        if ok:
            return candidate
    return None


def build_env(env: Path, python2: str) -> Path:
    """The virtualenv's ``wstest``, built if missing (virtualenv itself goes to a private
    target directory: nothing is installed into the Python 2.7 it starts from)."""
    wstest = env / "venv" / "bin" / "wstest"
    if wstest.exists():
        return wstest
    env.mkdir(parents=True, exist_ok=True)
    boot = env / "bootstrap"
    quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run([python2, "-m", "pip", "install", *quiet, "--target", str(boot),
                    "virtualenv<20.22"], check=True)
    subprocess.run([python2, "-m", "virtualenv", "--quiet", str(env / "venv")], check=True,
                   env={**os.environ, "PYTHONPATH": str(boot)})
    subprocess.run([str(env / "venv" / "bin" / "pip"), "install", *quiet,
                    f"autobahntestsuite=={SUITE_VERSION}"], check=True)
    return wstest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_echo(reader: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.autobahn.echo_server", "--port", str(port),
         "--reader", reader], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"echo server exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError("echo server did not listen within 20 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_reader(wstest: Path, reader: str, cases: list[str], out: Path,
               timeout: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    agent = f"pubquiz-transport-{reader}"
    spec = {"outdir": str(out / "reports"),
            "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
            "cases": cases, "exclude-cases": [], "exclude-agent-cases": {}}
    spec_path = out / f"fuzzingclient-{reader}.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    server = start_echo(reader, port, out / f"echo-{reader}.log")
    started = time.monotonic()
    try:
        with (out / f"wstest-{reader}.log").open("wb") as log:
            subprocess.run([str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)],
                           cwd=out, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                           check=False)
    finally:
        stop(server)
    seconds = time.monotonic() - started
    index = json.loads((out / "reports" / "index.json").read_text())[agent]
    return {"reader": reader, "seconds": round(seconds, 1), "cases": index}


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case.split("."))


def summarize(result: dict[str, Any]) -> tuple[dict[str, int], list[str], list[str]]:
    counts: collections.Counter[str] = collections.Counter()
    bad, timings = [], []
    for case in sorted(result["cases"], key=_case_key):
        info = result["cases"][case]
        behaviour, close = info["behavior"], info["behaviorClose"]
        counts[behaviour] += 1
        if behaviour not in ACCEPTED or close not in ACCEPTED:
            bad.append(f"{case}: {behaviour} (close {close}, remote code "
                       f"{info.get('remoteCloseCode')})")
        if case.startswith("9."):
            timings.append(f"{case} {info['duration']} ms")
    return dict(counts), bad, timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", default="auto",
                        help="comma-separated: auto, epoll, portable (default auto)")
    parser.add_argument("--cases", default="1,2,3,4,5,6,7,9,10",
                        help="case groups, comma-separated (default 1-7, 9, 10)")
    parser.add_argument("--env", type=Path,
                        default=Path("~/.cache/pubquiz-engine/autobahn").expanduser())
    parser.add_argument("--python2", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autobahn")
    parser.add_argument("--timeout", type=float, default=1200.0, help="per reader, seconds")
    args = parser.parse_args()
    python2 = find_python2(args.python2)
    if python2 is None:
        print("autobahn: no Python 2.7 found (--python2, $PYTHON2, python2.7, ~/.pyenv)")
        return 2
    try:
        wstest = build_env(args.env, python2)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"autobahn: could not build the suite's environment: {exc}")
        return 2
    cases = [CASE_GROUPS[g.strip()] for g in args.cases.split(",")]
    failed = False
    summary = []
    for reader in args.readers.split(","):
        result = run_reader(wstest, reader.strip(), cases, args.out / reader.strip(),
                            args.timeout)
        counts, bad, timings = summarize(result)
        total = sum(counts.values())
        print(f"autobahn fuzzingclient, reader {result['reader']}: {total} cases in "
              f"{result['seconds']} s: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if timings:
            print("  9.x round trips: " + "; ".join(timings))
        for line in bad:
            print(f"  not accepted: {line}")
        failed = failed or bool(bad) or total == 0
        summary.append({"reader": result["reader"], "seconds": result["seconds"],
                        "counts": counts, "not_accepted": bad, "timings_9": timings})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
