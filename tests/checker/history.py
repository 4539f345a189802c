"""What one client of the checker records, and how evidence is printed.

A history is the client's own view, nothing more: every frame it sent (``out``), every frame it
received (``in``), each connection it opened (``connect``) and how each ended (``closed``, with
the close code, or ``lost`` for a timeout or a network error). Frames are kept as the plain
msgpack maps of the wire, so the printed evidence reads like ``protocol/SPEC.md``.

This module does no I/O: the workload appends to histories, the properties read them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

#: Entry kinds.
OUT, IN, CONNECT, CLOSED, LOST, NOTE = "out", "in", "connect", "closed", "lost", "note"


@attrs.frozen
class Entry:
    """One line of a client's history. ``at``: seconds since the run started; ``conn``: the
    client's connection number (1, 2, ...); ``frame``: the wire map (or, for ``connect``,
    ``closed``, ``lost`` and ``note``, a small map saying what happened)."""

    index: int
    at: float
    conn: int
    kind: str
    frame: dict[str, Any]

    def line(self, client: str) -> str:
        frame = self.frame
        if frame.get("t") == "state":  # the whole map is long: what the properties read
            frame = {"t": "state", "seq": frame.get("seq"), **_state_gist(frame.get("state"))}
        elif frame.get("t") == "question":
            frame = {k: frame.get(k) for k in ("t", "seq", "q", "deadline_ms")}
        elif frame.get("t") == "welcome":
            frame = {k: v for k, v in frame.items() if k not in ("code", "name", "team",
                                                                 "token")}
        body = ", ".join(f"{k}: {_short(v)}" for k, v in frame.items())
        arrow = {OUT: "->", IN: "<-"}.get(self.kind, "..")
        return f"  {self.at:8.3f}s {client:>5} c{self.conn:<2} #{self.index:<4} {arrow} " \
               f"{self.kind if self.kind not in (OUT, IN) else ''}{{{body}}}"


def _state_gist(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        return {"state": state}
    gist: dict[str, Any] = {"phase": state.get("phase")}
    question = state.get("question")
    if isinstance(question, dict):
        gist.update(q=question.get("q"), deadline_ms=question.get("deadline_ms"))
    you = state.get("you")
    if isinstance(you, dict):
        gist.update(answer=you.get("answer"), score=you.get("score"))
    return gist


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@attrs.define
class History:
    """One client's history (a player ``p3``, the host ``host``, ...)."""

    client: str
    entries: list[Entry] = attrs.Factory(list)
    participant: int | None = None

    def add(self, at: float, conn: int, kind: str, frame: dict[str, Any]) -> Entry:
        entry = Entry(len(self.entries), at, conn, kind, frame)
        self.entries.append(entry)
        return entry

    def show(self, entries: Iterable[Entry]) -> str:
        return "\n".join(e.line(self.client) for e in entries)


@attrs.frozen
class Anomaly:
    """A property broken, with the lines that show it. ``client`` is None when the evidence
    is the database's (it is then in ``detail``)."""

    prop: str
    summary: str
    client: str | None = None
    evidence: tuple[Entry, ...] = ()
    detail: str = ""

    def render(self) -> str:
        lines = [f"[{self.prop}] {self.summary}"]
        if self.evidence and self.client is not None:
            lines.extend(e.line(self.client) for e in self.evidence)
        if self.detail:
            lines.append("  " + self.detail.replace("\n", "\n  "))
        return "\n".join(lines)
