"""SPEC.md and the code cannot drift: the message tables, the error table and the close codes
in protocol/SPEC.md are compared with the message classes and errors.py.

SPEC.md conventions this test relies on (keep them when editing the document):
- Client messages are the ``### `type` `` headings under ``## 8. Client to server messages``,
  server messages those under ``## 9. Server to client messages``.
- Each message has a table whose rows start ``| `field` | type |``, fields in canonical order,
  and the type column reads exactly as ``describe(spec)`` below renders the field's Spec.
- The error table rows read ``| `code` | yes/no | close code or - | meaning |`` and the close
  code rows ``| 4100 | `REPLACED` | meaning |``.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from pubquiz_engine.errors import CloseCode, ErrorCode
from pubquiz_engine.protocol import CLIENT_LIMITS, CLIENT_MESSAGES, SERVER_MESSAGES, Message
from pubquiz_engine.protocol import fields as pf
from pubquiz_engine.protocol import messages as m

SPEC_PATH = Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md"
SPEC = SPEC_PATH.read_text(encoding="utf-8")
CLIENT_SECTION = "## 8. Client to server messages"
SERVER_SECTION = "## 9. Server to client messages"


def _bound(n: int) -> str:
    return {pf.U31_MAX: "2^31-1", pf.SAFE_MAX: "2^53-1", pf.SAFE_MIN: "-(2^53-1)"}.get(n, str(n))


def describe(spec: pf.Spec) -> str:
    """How SPEC.md writes a field's type."""
    if isinstance(spec, pf.Nullable):
        return describe(spec.inner) + " or nil"
    if isinstance(spec, pf.IntSpec):
        return f"int {_bound(spec.lo)}..{_bound(spec.hi)}"
    if isinstance(spec, pf.BoolSpec):
        return "bool"
    if isinstance(spec, pf.TextSpec):
        return f"str ≤ {spec.max_chars}"
    if isinstance(spec, pf.EnumSpec):
        return " \\| ".join(f'"{v}"' for v in spec.values)
    if isinstance(spec, pf.IntListSpec):
        return f"array ≤ {spec.max_len} of int {_bound(spec.lo)}..{_bound(spec.hi)}"
    if isinstance(spec, pf.TextListSpec):
        return f"array ≤ {spec.max_len} of str ≤ {spec.max_chars}"
    if isinstance(spec, pf.AnswerSpec):
        return "answer value" + (" or accepted texts" if spec.accepted_texts else "")
    if isinstance(spec, pf.LeaderboardSpec):
        return f"array ≤ {pf.MAX_LEADERBOARD} of [rank, id, name, score]"
    if isinstance(spec, pf.ScoreListSpec):
        return f"array ≤ {pf.MAX_SCORE_ROWS} of [participant, score]"
    if isinstance(spec, pf.MapSpec):
        return "map (plain data)"
    raise AssertionError(f"describe() needs a branch for {spec!r}")


def _section(title: str) -> str:
    start = SPEC.index(title + "\n")
    end = SPEC.find("\n## ", start + len(title))
    return SPEC[start : end if end != -1 else len(SPEC)]


def _documented(title: str) -> dict[str, list[tuple[str, str]]]:
    """message type -> [(field, type column)] as SPEC.md documents them."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in _section(title).splitlines():
        heading = re.match(r"^### `([a-z_]+)`\s*$", line)
        if heading:
            assert heading.group(1) not in result, f"{heading.group(1)} documented twice"
            current = result[heading.group(1)] = []
            continue
        row = re.match(r"^\| `([a-z_]+)` \| (.*?) \| .* \|$", line)
        if row and current is not None:
            current.append((row.group(1), row.group(2)))
    return result


@pytest.mark.parametrize(
    ("title", "registry"),
    [(CLIENT_SECTION, CLIENT_MESSAGES), (SERVER_SECTION, SERVER_MESSAGES)],
    ids=["client", "server"],
)
def test_every_message_class_is_documented_and_vice_versa(
    title: str, registry: dict[str, type[Message]]
) -> None:
    documented = _documented(title)
    assert len(documented) > 10  # the parse found the section (the test can fail)
    assert sorted(documented) == sorted(registry)


@pytest.mark.parametrize(
    ("title", "cls"),
    [(CLIENT_SECTION, c) for c in CLIENT_MESSAGES.values()]
    + [(SERVER_SECTION, c) for c in SERVER_MESSAGES.values()],
    ids=[f"c-{t}" for t in CLIENT_MESSAGES] + [f"s-{t}" for t in SERVER_MESSAGES],
)
def test_message_table_matches_the_schema(title: str, cls: type[Message]) -> None:
    documented = _documented(title)[cls.TYPE]
    expected = [
        (f.name, describe(pf.field_spec(f)))
        for f in attrs.fields(cls)  # type: ignore[arg-type]
    ]
    assert documented == expected


def test_error_table_matches_errors_py() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (yes|no) \| (\d+|-) \| .+ \|$", SPEC, re.MULTILINE)
    table = {code: (retryable, close) for code, retryable, close in rows}
    assert set(table) == {code.value for code in ErrorCode}
    for code in ErrorCode:
        close = "-" if code.close_code is None else str(int(code.close_code))
        assert table[code.value] == ("yes" if code.retryable else "no", close), code


def test_close_code_table_matches_errors_py() -> None:
    rows = re.findall(r"^\| (\d{4}) \| `([A-Z_]+)` \| .+ \|$", SPEC, re.MULTILINE)
    assert {(int(n), name) for n, name in rows} == {(int(c), c.name) for c in CloseCode}


def test_every_error_code_appears() -> None:
    for code in ErrorCode:
        assert f"`{code.value}`" in SPEC, code


def test_limits_table_shows_the_defaults() -> None:
    limits = _section("## 6. Limits")
    assert f"| {CLIENT_LIMITS.max_frame_bytes:,} bytes |" in limits
    assert f"| {CLIENT_LIMITS.max_operator_frame_bytes:,} bytes |" in limits
    assert f"| {CLIENT_LIMITS.max_str_bytes:,} |" in limits
    assert f"| {CLIENT_LIMITS.max_array_len:,} elements |" in limits
    assert f"| {CLIENT_LIMITS.max_map_len:,} entries |" in limits
    assert f"| {CLIENT_LIMITS.max_depth} |" in limits


def test_phases_and_kinds_are_documented() -> None:
    phases = _section("## 7. Phases")
    for phase in m.PHASES:
        assert f"| `{phase}` |" in phases
    kinds = _section("## 10. Answer values")
    for kind in m.QUESTION_KINDS:
        assert f"| `{kind}` |" in kinds
