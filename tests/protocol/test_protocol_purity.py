"""The protocol package is pure: importing it loads no event loop, socket or database module."""

from __future__ import annotations

import json
import subprocess
import sys

# Top-level module names that mean I/O (or a whole framework) crept into the pure layer.
FORBIDDEN = {
    "trio",
    "trio_websocket",
    "wsproto",
    "h11",
    "asyncio",
    "socket",
    "_socket",
    "ssl",
    "selectors",
    "psycopg",
    "psycopg_pool",
    "redis",
    "sqlite3",
    "_sqlite3",
    "prometheus_client",
    "pubquiz_engine.server",
    "pubquiz_engine.store",
    "pubquiz_engine.snapshot",
    "pubquiz_engine.game",
}

SCRIPT = (
    "import json, sys\n"
    "import pubquiz_engine.protocol\n"
    "import pubquiz_engine.protocol.codec, pubquiz_engine.protocol.messages\n"
    "import pubquiz_engine.protocol.limits\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def test_importing_protocol_loads_no_io_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))
    assert "pubquiz_engine.protocol" in loaded  # the check can fail: it did import something
    offending = sorted(
        name
        for name in loaded
        if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN or _under(name, FORBIDDEN)
    )
    assert offending == []


def _under(name: str, packages: set[str]) -> bool:
    return any(name.startswith(package + ".") for package in packages)
