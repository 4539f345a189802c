"""The pages' JavaScript, tested by node: the codec against every golden vector, the QR encoder
against libqrencode, and the JS message schema against the Python message classes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import attrs

from pubquiz_engine.protocol import fields as pf
from pubquiz_engine.protocol import messages as m

HERE = Path(__file__).parent
PROTOCOL_JS = HERE.parents[1] / "pubquiz_engine" / "web" / "static" / "protocol.js"


def _run_node(node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, *args], capture_output=True, text=True, timeout=120,
                          cwd=HERE.parents[1], check=False)


def test_node_tests_pass(node: str) -> None:
    """``node --test tests/web/js/``: codec vectors (valid, decode_only, invalid) and QR codes."""
    result = _run_node(node, "--test", "--test-reporter=tap", str(HERE / "js"))
    summary = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = dict(line[2:].split(" ", 1) for line in summary if line[2:].split(" ")[0] in
                  ("tests", "pass", "fail"))
    vectors = json.loads((HERE.parents[1] / "protocol" / "vectors" / "vectors.json").read_text())
    every_vector = sum(len(vectors[k]) for k in ("valid", "decode_only", "invalid"))
    assert int(counts["fail"]) == 0
    assert int(counts["pass"]) >= every_vector  # one test per vector, plus the others


def _spec(spec: pf.Spec) -> dict[str, Any]:
    nullable = isinstance(spec, pf.Nullable)
    inner = spec.inner if isinstance(spec, pf.Nullable) else spec
    kinds: dict[type[pf.Spec], tuple[str, dict[str, Any]]] = {
        pf.IntSpec: ("int", {"lo": getattr(inner, "lo", None), "hi": getattr(inner, "hi", None)}),
        pf.TextSpec: ("str", {"max": getattr(inner, "max_chars", None)}),
        pf.EnumSpec: ("enum", {"values": list(getattr(inner, "values", ()))}),
        pf.IntListSpec: ("ints", {"maxLen": getattr(inner, "max_len", None),
                                 "lo": getattr(inner, "lo", None),
                                 "hi": getattr(inner, "hi", None)}),
        pf.TextListSpec: ("strs", {"maxLen": getattr(inner, "max_len", None),
                                  "max": getattr(inner, "max_chars", None)}),
        pf.AnswerSpec: ("answer", {"acceptedTexts": getattr(inner, "accepted_texts", None)}),
        pf.BoolSpec: ("bool", {}),
        pf.MapSpec: ("map", {}),
        pf.LeaderboardSpec: ("leaderboard", {}),
        pf.ScoreListSpec: ("scores", {}),
    }
    kind, fields = kinds[type(inner)]
    return {"nullable": nullable, "kind": kind, **fields}


def test_js_schema_matches_the_python_messages(node: str) -> None:
    script = (f"import {{ describeSchema }} from {json.dumps(PROTOCOL_JS.as_uri())};"
              "console.log(JSON.stringify(describeSchema()));")
    result = _run_node(node, "--input-type=module", "-e", script)
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)
    python = {
        str(direction): {
            name: [[f.name, _spec(pf.field_spec(f))] for f in attrs.fields(cls)]
            for name, cls in m.registry(direction).items()
        }
        for direction in m.Direction
    }
    for direction, table in python.items():
        assert set(js[direction]) == set(table), direction
        for name, fields in table.items():
            assert js[direction][name] == fields, f"{direction} {name}"


STATIC = HERE.parents[1] / "pubquiz_engine" / "web" / "static"


def test_every_string_the_pages_use_is_in_the_table(node: str) -> None:
    """Strings live in i18n.js only: every key the HTML and scripts name exists in English."""
    script = (f"import {{ STRINGS }} from {json.dumps((STATIC / 'i18n.js').as_uri())};"
              "console.log(JSON.stringify(Object.keys(STRINGS.en)));")
    result = _run_node(node, "--input-type=module", "-e", script)
    assert result.returncode == 0, result.stderr
    known = set(json.loads(result.stdout))
    used: set[str] = set()
    for path in STATIC.iterdir():
        # (i18n.js itself is the table, and its comments show the syntax with a made-up key)
        pages = path.suffix in (".html", ".js") and path.name != "i18n.js"
        text = path.read_text("utf-8") if pages else ""
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder|-title)?="([\w.]+)"', text))
        used |= set(re.findall(r'\bt\("([\w.]+)"', text))
    assert used and used <= known, sorted(used - known)
    # Keys built at run time: a name for every question kind and phase of the protocol.
    assert {f"kind.{k}" for k in m.QUESTION_KINDS} <= known
    assert {f"phase.{p}" for p in m.PHASES} <= known
