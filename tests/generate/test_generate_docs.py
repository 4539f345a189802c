"""docs/quiz-format.md documents every option and setting of ``quiz generate``; what the
package loads on import."""

from __future__ import annotations

import argparse
from pathlib import Path

from pubquiz_engine.generate.cli import (
    ENV_API_KEY,
    ENV_MODEL,
    ENV_TIMEOUT,
    ENV_URL,
    add_generate_command,
)

DOC = Path(__file__).parents[2] / "docs" / "quiz-format.md"


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert "## Generating questions" in text
    return text.split("## Generating questions", 1)[1]


def test_every_flag_and_variable_is_documented() -> None:
    doc = section()
    parser = argparse.ArgumentParser()
    add_generate_command(parser.add_subparsers())
    generate = parser._subparsers._group_actions[0].choices["generate"]  # type: ignore[union-attr]
    flags = {opt for action in generate._actions for opt in action.option_strings
             if opt.startswith("--") and opt != "--help"}
    missing = sorted(flag for flag in flags if flag not in doc)
    assert missing == []
    for name in (ENV_URL, ENV_MODEL, ENV_API_KEY, ENV_TIMEOUT, "PUBQUIZ_REDIS_URL",
                 "PUBQUIZ_DATABASE_URL"):
        assert name in doc
    assert "llama-server" in doc and "ollama" in doc.lower()


def test_importing_the_package_and_its_command_loads_neither_httpx_nor_redis() -> None:
    import subprocess
    import sys

    code = ("import sys, pubquiz_engine.generate, pubquiz_engine.generate.cli; "
            "print(sorted(m for m in ('httpx', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
