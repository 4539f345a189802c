"""The game core is pure: importing it loads no trio, no socket, no database or Redis client."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("trio", "socket", "_socket", "ssl", "select", "selectors", "asyncio", "psycopg",
             "psycopg_pool", "redis", "sqlite3", "msgpack", "wsproto", "trio_websocket")


def test_importing_the_game_loads_no_io_module() -> None:
    code = (
        "import json, sys\n"
        "import pubquiz_engine.game\n"
        "from pubquiz_engine.game import GameSession, load_quiz, sample_quiz_path\n"
        "GameSession(load_quiz(sample_quiz_path())).to_snapshot()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    loaded = set(json.loads(out.stdout))
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert bad == []
    assert "pubquiz_engine.game.session" in loaded  # the check saw a real import
