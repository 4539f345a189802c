"""Results export: CSV (two sections) and JSON, pure formatting."""

from __future__ import annotations

import csv
import io
import json

from pubquiz_engine.store import AnswerRow, Results, SessionRow, StandingRow
from pubquiz_engine.store.export import (
    ANSWERS_HEADER,
    STANDINGS_HEADER,
    answers_to_csv,
    results_to_csv,
    results_to_json,
    standings_to_csv,
)

RESULTS = Results(
    session=SessionRow(
        "ABCD", "q1", "Pub night", "team", "finished", 1.0, 9.0, 2, "secret-hash", None
    ),
    standings=(
        StandingRow(1, 2, '=HYPERLINK("x")', "Owls", 12.0, 7),
        StandingRow(2, 1, 'Ann, "the" brain', None, 5.5, 6),
    ),
    answers=(
        AnswerRow("ABCD", 1, None, 0, {"choice": 2}, 11, 3.25, 3, 2),
        AnswerRow("ABCD", 2, "Owls", 1, ["b", "a"], 12, 4.5, 5, 2),
    ),
)


def test_csv_has_two_titled_sections_that_parse() -> None:
    text = results_to_csv(RESULTS)
    standings_part, answers_part = text.split("\n\n")
    standings = list(csv.reader(io.StringIO(standings_part)))
    answers = list(csv.reader(io.StringIO(answers_part)))
    assert standings[0] == ["standings"] and tuple(standings[1]) == STANDINGS_HEADER
    assert answers[0] == ["answers"] and tuple(answers[1]) == ANSWERS_HEADER
    # A formula-looking name is neutralised; commas and quotes survive the round trip.
    assert standings[2] == ["1", "2", '\'=HYPERLINK("x")', "Owls", "12.0"]
    assert standings[3] == ["2", "1", 'Ann, "the" brain', "", "5.5"]
    assert answers[2] == ["3", "1", "", "0", '{"choice":2}', "11", "3.25", "2"]
    assert json.loads(answers[3][4]) == ["b", "a"]


def test_separate_files_have_no_title_line() -> None:
    assert standings_to_csv(RESULTS).splitlines()[0] == ",".join(STANDINGS_HEADER)
    assert answers_to_csv(RESULTS).splitlines()[0] == ",".join(ANSWERS_HEADER)
    assert len(answers_to_csv(RESULTS).splitlines()) == 3


def test_json_roundtrips_and_leaves_out_the_token_hash() -> None:
    document = json.loads(results_to_json(RESULTS))
    assert set(document) == {"session", "standings", "answers"}
    assert "host_token_hash" not in document["session"]
    assert document["session"]["code"] == "ABCD"
    assert [s["participant_id"] for s in document["standings"]] == [2, 1]
    assert document["answers"][1]["value"] == ["b", "a"]
    assert document["answers"][0]["submitted_at"] == 3.25
