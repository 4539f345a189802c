"""Results export: the rows rebuilt as the live game told them (``export_results``), and their
CSV (titled sections) and JSON forms (issue 20)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pubquiz_engine.store import AnswerRow, Results, SessionRow, StandingRow, TeamStandingRow
from pubquiz_engine.store.export import (
    ANSWERS_HEADER,
    STANDINGS_HEADER,
    TEAMS_HEADER,
    answers_to_csv,
    results_to_csv,
    results_to_json,
    standings_to_csv,
)
from pubquiz_engine.store.export_results import assemble

SESSION = SessionRow("ABCD", "q1", "Pub night", "team", "finished", 1.0, 9.0, 2, "secret-hash",
                     None)
RESULTS = Results(
    session=SESSION,
    standings=(
        StandingRow(1, 2, '=HYPERLINK("x")', "Owls", 12, 7),
        StandingRow(2, 1, 'Ann, "the" brain', None, 5, 6),
    ),
    answers=(
        AnswerRow("ABCD", 1, None, 0, 2, 11, 3.25, 3, 2, "Ann", "Capital?", "Nice", True,
                  "wrong", 0),
        AnswerRow("ABCD", 2, "Owls", 1, [2, 0], 12, 4.5, 5, 2, "Bo", "Order them", "c > a",
                  True, "partly right", 1),
        AnswerRow("ABCD", 2, "Owls", 2, "beatles", 13, 5.5, 6, 2, "Bo", "Band?", "beatles",
                  False, None, None),
    ),
    team_standings=(TeamStandingRow(1, 1, "Owls", 12, ("Bo", "Cy")),),
)


def _sections(text: str) -> list[list[list[str]]]:
    return [list(csv.reader(io.StringIO(part))) for part in text.split("\n\n")]


def test_csv_has_titled_sections_that_parse() -> None:
    standings, teams, answers = _sections(results_to_csv(RESULTS))
    assert standings[0] == ["standings"] and tuple(standings[1]) == STANDINGS_HEADER
    assert teams[0] == ["teams"] and tuple(teams[1]) == TEAMS_HEADER
    assert answers[0] == ["answers"] and tuple(answers[1]) == ANSWERS_HEADER
    # Integer scores; a formula-looking name is neutralised; commas and quotes survive.
    assert standings[2] == ["1", "2", '\'=HYPERLINK("x")', "Owls", "12"]
    assert standings[3] == ["2", "1", 'Ann, "the" brain', "", "5"]
    assert teams[2] == ["1", "1", "Owls", "12", "Bo; Cy"]
    assert answers[2] == ["3", "1", "Ann", "", "0", "Capital?", "2", "Nice", "true", "wrong",
                          "0", "11", "3.25", "2"]
    assert json.loads(answers[3][6]) == [2, 0]
    # A text answer is the text itself, not JSON-quoted ("beatles", not '"beatles"').
    assert answers[4][6] == "beatles" and answers[4][8:11] == ["false", "", ""]
    assert '"""' not in results_to_csv(RESULTS)


def test_solo_csv_has_no_team_section_and_separate_files_no_title() -> None:
    solo = Results(SessionRow("ABCD", "q1", "T", "solo", "live", 1.0, None, 1, "h", None),
                   RESULTS.standings, RESULTS.answers)
    assert [part[0] for part in _sections(results_to_csv(solo))] == [["standings"], ["answers"]]
    assert standings_to_csv(RESULTS).splitlines()[0] == ",".join(STANDINGS_HEADER)
    assert answers_to_csv(RESULTS).splitlines()[0] == ",".join(ANSWERS_HEADER)


def test_json_roundtrips_and_leaves_out_the_token_hash() -> None:
    document = json.loads(results_to_json(RESULTS))
    assert set(document) == {"session", "standings", "teams", "answers"}
    assert "host_token_hash" not in document["session"]
    assert [s["score"] for s in document["standings"]] == [12, 5]
    assert document["teams"][0] == {"rank": 1, "team_id": 1, "team": "Owls", "score": 12,
                                    "members": ["Bo", "Cy"]}
    assert document["answers"][1]["value"] == [2, 0]
    assert document["answers"][1]["result"] == "partly right"


def _joined(pid: int, name: str, team: str, tid: int) -> tuple[str, dict[str, Any]]:
    return "participant_joined", {"participant": pid, "name": name, "team": team,
                                  "team_id": tid}


QUIZ = {"rounds": [{"items": [
    {"kind": "slide", "title": "Hi"},
    {"kind": "single", "prompt": "Capital?", "choices": ["Paris", "Lyon"]},
    {"kind": "text", "prompt": "Band?"},
]}]}


def test_a_late_team_joiner_has_the_team_score_as_in_the_game() -> None:
    """Ben joins the Owls after round 1 scored 3: the game shows him 3 (the team's total);
    no score row was ever written for him."""
    events = [
        _joined(1, "Ann", "Owls", 1), _joined(2, "Cy", "Larks", 2), ("started", {}),
        ("revealed", {"question": 0, "outcomes": [[1, True, 3], [2, False, 0]]}),
        ("scores_changed", {"scores": [[1, 3]], "team_scores": [[1, 3]], "reason": "reveal"}),
        _joined(3, "Ben", "Owls", 1),
    ]
    answers = [AnswerRow("ABCD", 1, "Owls", 0, 0, 5, 1.0, 4, 1),
               AnswerRow("ABCD", 2, "Larks", 0, 1, 6, 1.5, 5, 1)]
    results = assemble(SESSION, [(1, "Ann", "Owls"), (2, "Cy", "Larks"), (3, "Ben", "Owls")],
                       [(1, 3.0, 6)], answers, events, QUIZ)
    assert [(s.rank, s.name, s.score) for s in results.standings] == [
        (1, "Ann", 3), (1, "Ben", 3), (3, "Cy", 0)]
    assert [(t.rank, t.team, t.score, t.members) for t in results.team_standings] == [
        (1, "Owls", 3, ("Ann", "Ben")), (2, "Larks", 0, ("Cy",))]
    assert [(a.name, a.question_text, a.answer_text, a.counted, a.result, a.points)
            for a in results.answers] == [
        ("Ann", "Capital?", "Paris", True, "right", 3),
        ("Cy", "Capital?", "Lyon", True, "wrong", 0)]


def test_only_the_last_answer_counts_and_marks_replace_outcomes() -> None:
    session = SessionRow("ABCD", "q1", "T", "solo", "live", 1.0, None, 1, "h", None)
    events = [
        ("participant_joined", {"participant": 1, "name": "Ann", "team": None, "team_id": None}),
        ("participant_joined", {"participant": 2, "name": "Lea", "team": None, "team_id": None}),
        ("participant_left", {"participant": 2}),  # left the lobby: forgotten
        ("started", {}),
        ("revealed", {"question": 1, "outcomes": [[1, False, 0]]}),
        ("answer_marked", {"question": 1, "participant": 1, "outcomes": [[1, True, 1]]}),
    ]
    answers = [AnswerRow("ABCD", 1, None, 1, "beetles", 7, 1.0, 4, 1),
               AnswerRow("ABCD", 1, None, 1, "The Fab Four", 8, 2.0, 5, 1)]
    results = assemble(session, [(1, "Ann", None), (2, "Lea", None)], [(1, 1.0, 9)],
                       answers, events, QUIZ)
    assert [(s.name, s.score) for s in results.standings] == [("Ann", 1)]
    assert [(a.value, a.counted, a.result, a.points) for a in results.answers] == [
        ("beetles", False, None, None), ("The Fab Four", True, "right", 1)]
