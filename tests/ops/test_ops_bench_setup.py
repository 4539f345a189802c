"""`python -m bench.harness setup`: only `chart` needs matplotlib, so setup succeeds without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs the harness's setup with matplotlib made unimportable (whether or not it is installed).
WITHOUT_MATPLOTLIB = (
    "import sys; sys.modules['matplotlib'] = None\n"
    "from bench.harness.run import main\n"
    "sys.exit(main(['setup']))\n"
)


def test_setup_succeeds_without_matplotlib_and_says_what_chart_needs(tmp_path: Path) -> None:
    # A stand-in npm that records its arguments (no network, no node_modules written).
    npm = tmp_path / "npm"
    npm.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'npm-args'}\n")
    npm.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "npm-args").read_text().split()[0] in ("ci", "install")
    assert "ready: Node modules" in done.stdout
    assert "`chart` also needs matplotlib" in done.stderr
