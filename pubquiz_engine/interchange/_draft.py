"""The shared half of every importer: a draft quiz that remembers where each item came from.

An importer reads its format into a ``Draft`` (rounds of plain items, each tagged with its
place in the source file: ``row 12``, ``line 33``, ``results[4]``) and then calls
``Draft.finish``, which hands the plain data to the game's one validator and returns it.

Rules this module keeps:

1. Every problem is collected, never just the first. The importer's own problems (a Kahoot
   time limit outside the allowed set, a GIFT matching question) and the validator's (a
   duplicate choice) come back together in one ``QuizFileError``, in file order.
2. Every problem is located in the *source* file. The validator speaks of "round 1, question
   3"; ``finish`` rewrites that to the row, line or JSON index the question came from, so the
   quiz master can go straight to it in the spreadsheet or text editor.
3. Nothing is dropped in silence. What an importer cannot carry over and that changes how the
   quiz scores is a problem; what it leaves out without changing the scoring (feedback text,
   question names) is a *note*, which the caller may collect and show.
4. Pure: no file system, no clock. The importers receive bytes, and ``import_quiz`` in
   ``__init__`` is the thin shell that reads the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game.loader import FORMAT_VERSION, MAX_FILE_BYTES, load_quiz_data

# The most source records (rows, blocks, results) an importer reads: far above what a quiz can
# hold (the loader allows 100 rounds of 500 items), so hitting it means a wrong file, and it
# keeps every import loop bounded.
MAX_RECORDS = 20_000

__all__ = ["MAX_FILE_BYTES", "MAX_RECORDS", "Draft", "decode_text", "text_of", "title_from_path"]


# A round being built: its title, the place of its heading (None: it has none) and its items,
# each with the order key and the place it came from.
_Round = tuple[str, str | None, list[tuple[dict[str, Any], int, str]]]


class Draft:
    """A quiz being imported: rounds of plain items, their source places, problems and notes."""

    def __init__(self, source: str, title: str) -> None:
        self.source = source
        self.title = title
        # Each round: (title, place of its heading or None, [(item, order key, place), ...]).
        self._rounds: list[_Round] = []
        self._problems: list[tuple[int, str]] = []
        self.notes: list[str] = []

    # -- building ----------------------------------------------------------------------------

    def new_round(self, title: str, place: str | None = None) -> None:
        """Start a round; later items go into it. An empty round is dropped (with a note)."""
        self._rounds.append((title, place, []))

    def add(self, item: dict[str, Any], order: int, place: str) -> None:
        """Add a question or slide (plain data) that sits at ``place`` in the source.

        ``order`` sorts problems into file order (a row or line number, a result index).
        """
        if not self._rounds:
            self.new_round(self.title)
        self._rounds[-1][2].append((item, order, place))

    def problem(self, order: int, place: str, message: str) -> None:
        """Record a problem at ``place`` (empty: the file as a whole)."""
        prefix = f"{self.source}: {place}: " if place else f"{self.source}: "
        self._problems.append((order, prefix + message))

    def note(self, place: str, message: str) -> None:
        """Record something left out that does not change how the quiz scores."""
        prefix = f"{self.source}: {place}: " if place else f"{self.source}: "
        self.notes.append(prefix + message)

    @property
    def failed(self) -> bool:
        return bool(self._problems)

    # -- finishing ---------------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """The plain quiz data built so far (empty rounds left out)."""
        rounds = [
            {"title": title, "items": [item for item, _, _ in items]}
            for title, _, items in self._rounds
            if items
        ]
        return {"format": FORMAT_VERSION, "title": self.title, "rounds": rounds}

    def finish(self) -> dict[str, Any]:
        """Validate the draft; return its plain data or raise every problem, located (rule 2)."""
        kept = [r for r in self._rounds if r[2]]
        for title, place, items in self._rounds:
            if not items:
                self.note(place or "", f"round {title!r} has no questions and was left out")
        data = self.data()
        problems = list(self._problems)
        if not kept and not problems:
            problems.append((0, f"{self.source}: found no questions in the file"))
        # With nothing importable the validator would only add "the quiz has no questions"
        # on top of the real causes already listed.
        if kept:
            try:
                load_quiz_data(data, source=self.source)
            except QuizFileError as exc:
                problems.extend(self._relocate(p, kept) for p in exc.problems)
        if problems:
            # Stable sort: file-level problems (order 0) first, then in source order; the
            # validator's problems about one item stay in the order it found them.
            problems.sort(key=lambda p: p[0])
            raise QuizFileError([message for _, message in problems])
        return data

    def _relocate(self, problem: str, kept: list[_Round]) -> tuple[int, str]:
        """Map the validator's "round R, question Q" (or slide, or round) to the source place."""
        head = f"{self.source}: "
        rest = problem[len(head):] if problem.startswith(head) else problem
        found = _VALIDATOR_PLACE.match(rest)
        if not found:
            return 0, problem
        r = int(found.group("round")) - 1
        if not 0 <= r < len(kept):
            return 0, problem
        _, round_place, items = kept[r]
        kind, number = found.group("kind"), found.group("number")
        tail = found.group("tail")
        if kind is None:  # a problem with the round itself
            order = items[0][1] if items else 0
            where = round_place or (items[0][2] if items else f"round {r + 1}")
            return order, f"{head}{where}: round {r + 1}{tail}"
        # The validator counts questions and slides separately within a round.
        want_slide = kind == "slide"
        matching = [(o, p) for item, o, p in items if (item.get("kind") == "slide") == want_slide]
        n = int(number) - 1
        if not 0 <= n < len(matching):
            return 0, problem
        order, place = matching[n]
        return order, f"{head}{place}{tail}"


_VALIDATOR_PLACE = re.compile(
    r"^round (?P<round>\d+)(?:, (?P<kind>question|slide) (?P<number>\d+))?(?P<tail>: .*)$",
    re.DOTALL,
)


def decode_text(raw: bytes, source: str) -> str:
    """UTF-8 text (a leading byte-order mark, as spreadsheet programs write, is dropped)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise QuizFileError([f"{source}: line {line}: not valid UTF-8 (save the file as "
                             "UTF-8 and import it again)"]) from None


def title_from_path(path: str | Path) -> str:
    """A quiz title from a file name: ``friday_quiz-2.csv`` -> ``friday quiz 2``."""
    stem = Path(path).stem.replace("_", " ").replace("-", " ")
    return " ".join(stem.split()) or "Imported quiz"


def text_of(value: Any) -> str:
    """A cell or field as text: whole numbers without ``.0``, None as empty, trimmed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # how a spreadsheet shows a boolean cell
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
