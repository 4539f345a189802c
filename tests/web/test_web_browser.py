"""A whole quiz in headless Chromium: a host page, a big-screen page and three player pages.

Every question kind is answered through the pages' own controls; one player reloads mid-question
and resumes with its score (no name asked again), another loses its connection and its answer
still arrives. The host pauses, extends, marks a free-text answer, adjusts a score, removes a
player, ends the quiz and downloads the results. Screenshots of each page at phone and projector
sizes land in tests/artifacts/web/.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from webkit import UNNAMED, EngineThread, Pages, expect, run_scenario

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
PROJECTOR = {"width": 1920, "height": 1080}

#: Quiz media must be an http(s) URL: the picture is one of the engine's own files, so the page
#: needs no network beyond the engine.
MEDIA_PATH = "/static/icon.svg"

QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Browser night",
    "rounds": [
        {"title": "Warm-up", "items": [
            {"kind": "single", "prompt": "Whose flag is this?", "media": MEDIA_PATH,
             "choices": ["France", "Italy", "Ireland"], "answer": "France", "points": 2,
             "time_limit": 120},
            {"kind": "multiple", "prompt": "Which are noble gases?",
             "choices": ["Neon", "Iron", "Argon"], "answer": ["Neon", "Argon"], "time_limit": 120},
            {"kind": "truefalse", "prompt": "A group of crows is called a murder.", "answer": True,
             "time_limit": 120},
        ]},
        {"title": "Finale", "items": [
            {"kind": "text", "prompt": "Which band made Abbey Road?",
             "answer": ["The Beatles", "Beatles"], "time_limit": 120},
            {"kind": "numeric", "prompt": "In which year did the Berlin Wall fall?",
             "answer": 1989, "time_limit": 120},
            {"kind": "ordering", "prompt": "Order these planets from the Sun.",
             "choices": ["Mars", "Venus", "Mercury"], "answer": ["Mercury", "Venus", "Mars"],
             "time_limit": 120},
        ]},
    ],
}


def _assert_named(page: Any) -> None:
    assert page.evaluate(UNNAMED) == []
    assert page.evaluate("() => document.documentElement.lang") == "en"


def _join(page: Any, name: str) -> None:
    page.fill("#join-name", name)
    page.click("#join-submit")
    page.wait_for_selector("text=You are in")


def _received(page: Any) -> None:
    page.wait_for_selector("#feedback:has-text('Answer received')")


def _choose(page: Any, index: int) -> None:
    page.locator("#controls .choice").nth(index).click()


def _score(page: Any) -> int:
    match = re.search(r"Score: (-?\d+)", page.text_content("#score") or "")
    assert match is not None
    return int(match.group(1))


def _host_click(host: Any, command: str) -> None:
    button = host.locator(f"[data-cmd={command}]")
    expect(button).to_be_enabled()
    button.click()


def _next_question(host: Any, players: list[Any], prompt: str) -> None:
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector(f"#prompt:has-text({json.dumps(prompt)})")


def _reveal(host: Any, players: list[Any]) -> None:
    _host_click(host, "reveal")
    host.wait_for_selector("#phase-line:has-text('answer revealed')")
    for page in players:
        page.wait_for_selector("#phase-title:text-matches('^(Answer|Accepted):')")


def test_a_short_quiz_in_the_browser(browser: Any, engine_thread: EngineThread,
                                     artifacts: Path, tmp_path: Path) -> None:
    pages = Pages(browser, engine_thread.base_url, artifacts,
                  shot_sizes={"phone": PHONE, "projector": PROJECTOR})
    run_scenario(pages, lambda pages: _play(pages, engine_thread, tmp_path),
                 failure_prefix="failed")


def _play(pages: Pages, engine: EngineThread, tmp_path: Path) -> None:
    index = pages.open("/", PROJECTOR, "index")
    assert index.locator("a[href='/play']").is_visible()
    pages.shot(index, "index")

    # --- the host creates a session from an uploaded quiz -------------------------------------
    host = pages.open("/host", PROJECTOR, "host")
    host.on("dialog", lambda dialog: dialog.accept("3" if dialog.type == "prompt" else None))
    pages.shot(host, "host-setup")
    quiz_file = tmp_path / "quiz.json"
    quiz = json.loads(json.dumps(QUIZ))
    quiz["rounds"][0]["items"][0]["media"] = pages.base + MEDIA_PATH
    quiz_file.write_text(json.dumps(quiz))
    host.fill("#create-key", "operator-key-for-tests")
    host.check("input[name=quiz][value=upload]")
    host.set_input_files("#create-file", str(quiz_file))
    host.check("input[name=mode][value=solo]")
    host.click("#create-form button[type=submit]")
    host.wait_for_selector("#player-link:has-text('/play?code=')")
    player_link = host.text_content("#player-link") or ""
    code = player_link.rsplit("=", 1)[1]
    assert engine.engine is not None and code in engine.engine.sessions
    assert host.locator("#player-qr svg").count() == 1

    screen = pages.open(f"/screen?code={code}", PROJECTOR, "screen")
    screen.wait_for_selector(f"#join-code:has-text('{code}')")
    assert screen.locator("#join-qr svg").count() == 1

    # --- three players join from the link ------------------------------------------------------
    ann = pages.open(f"/play?code={code}", PHONE, "ann")
    bob = pages.open(f"/play?code={code}", PHONE, "bob")
    cat = pages.open(f"/play?code={code}", PHONE, "cat")
    pages.shot(ann, "player-join")
    _assert_named(ann)
    for page, name in ((ann, "Ann"), (bob, "Bob"), (cat, "Cat")):
        assert page.input_value("#join-code") == code
        _join(page, name)
    players = [ann, bob, cat]
    screen.wait_for_selector("#lobby-count:has-text('3 players')")
    host.wait_for_selector("#people tr >> nth=2")
    pages.shot(screen, "screen-lobby")
    pages.shot(host, "host-lobby")
    pages.shot(ann, "player-lobby")
    for page in (screen, host, index):
        _assert_named(page)

    # --- question 1: single choice with a picture ----------------------------------------------
    _host_click(host, "start")
    for page in players:
        page.wait_for_selector("#prompt:has-text('Whose flag is this?')")
    assert ann.locator("#media img").count() == 1
    _choose(ann, 0)
    _choose(bob, 1)
    _choose(cat, 0)
    for page in players:
        _received(page)
    screen.wait_for_selector("#q-count:has-text('3 of 3 answered')")
    host.wait_for_selector("#current-count:has-text('3 of 3 answered')")
    assert host.locator("#people td:has-text('✓')").count() == 3
    pages.shot(ann, "player-question")
    _assert_named(ann)
    pages.shot(screen, "screen-question")
    pages.shot(host, "host-question")
    _reveal(host, players)
    ann.wait_for_selector("#feedback:has-text('Right!')")
    bob.wait_for_selector("#feedback:has-text('Not this time')")
    cat.wait_for_selector("#feedback:has-text('Right!')")
    screen.wait_for_selector("#q-answer:has-text('France')")
    counts = screen.locator("#q-choices .dist-count").all_text_contents()
    assert counts == ["2", "1", "0"]
    pages.shot(screen, "screen-reveal")
    pages.shot(ann, "player-reveal")
    _host_click(host, "show_leaderboard")
    screen.wait_for_selector("#board-rows .row >> nth=2")
    ann.wait_for_selector("#feedback:has-text('You are number')")
    pages.shot(screen, "screen-standings")
    pages.shot(ann, "player-standings")
    cat_score = _score(cat)
    assert cat_score >= 2

    # --- question 2: multiple choice; Cat reloads, Bob's network drops -------------------------
    _next_question(host, players, "Which are noble gases?")
    cat.reload()
    cat.wait_for_selector("#prompt:has-text('Which are noble gases?')")
    assert cat.locator("[data-view=join]").is_hidden()
    assert "Cat" in (cat.text_content("#me") or "")
    assert _score(cat) == cat_score  # resumed with its score, without asking for the name
    for page in (ann, cat):
        _choose(page, 0)
        _choose(page, 2)
        page.click("#controls .send")
        _received(page)
    bob.evaluate("pubquizConnection.drop(pubquizConnection.ws)")
    _choose(bob, 1)
    bob.click("#controls .send")
    _received(bob)  # sent again with the same rid once the connection came back
    bob.wait_for_selector("#status:has-text('Connected')")
    _reveal(host, players)
    cat.wait_for_selector("#feedback:has-text('Right!')")

    # --- question 3: true/false, with pause, resume and extra time -----------------------------
    _next_question(host, players, "A group of crows")
    _host_click(host, "pause")
    ann.wait_for_selector("#feedback:has-text('Paused')")
    assert ann.locator("#controls .choice >> nth=0").is_disabled()
    screen.wait_for_selector("#paused:visible")
    _host_click(host, "unpause")
    _host_click(host, "extend")
    expect(ann.locator("#controls .choice").first).to_be_enabled()
    _choose(ann, 0)
    _choose(bob, 1)
    _choose(cat, 0)
    for page in players:
        _received(page)
    _reveal(host, players)
    _host_click(host, "next")  # end of round one
    host.wait_for_selector("#phase-line:has-text('round over')")
    ann.wait_for_selector("#prompt:has-text('End of round 1')")
    ann.click("#extra button")  # the joker on round two
    ann.wait_for_selector("#extra:has-text('Joker played')")
    _host_click(host, "round_leaderboard")
    screen.wait_for_selector("#board-title:has-text('after round 1')")
    pages.shot(screen, "screen-round-standings")

    # --- question 4: free text, marked by the host ---------------------------------------------
    _next_question(host, players, "Which band made Abbey Road?")
    for page, text in ((ann, "beatles"), (bob, "The Rolling Stones"), (cat, "The Beatles")):
        page.fill("#answer-input", text)
        page.press("#answer-input", "Enter")
        _received(page)
    _host_click(host, "close")
    host.click("#marking button")
    host.wait_for_selector("#marking li:has-text('The Rolling Stones')")
    pages.shot(host, "host-marking")
    host.click("#marking li:has-text('The Rolling Stones') button:has-text('Right')")
    host.wait_for_selector("#log:has-text('Bob')")
    _reveal(host, players)

    # --- question 5: numeric (an integer and a float) ------------------------------------------
    _next_question(host, players, "Berlin Wall")
    for page, text in ((ann, "1989"), (bob, "1990"), (cat, "1989,5")):
        page.fill("#answer-input", text)
        page.click("#controls button[type=submit]")
        _received(page)
    _reveal(host, players)
    ann.wait_for_selector("#feedback:has-text('Right!')")
    cat.wait_for_selector("#feedback:has-text('Not this time')")

    # --- question 6: ordering, with the move buttons -------------------------------------------
    _next_question(host, players, "Order these planets")
    # Mars, Venus, Mercury -> Mercury, Venus, Mars: Mercury up twice, then Venus up once.
    ann.click("button[aria-label='Move Mercury up']")
    ann.click("button[aria-label='Move Mercury up']")
    ann.click("button[aria-label='Move Venus up']")
    assert ann.locator(".order-text").all_text_contents() == ["Mercury", "Venus", "Mars"]
    pages.shot(ann, "player-ordering")
    _assert_named(ann)
    for page in players:
        page.click("#controls .send")
        _received(page)
    _reveal(host, players)
    ann.wait_for_selector("#feedback:has-text('Right!')")

    # --- the host corrects a score, removes Bob and ends the quiz ------------------------------
    host.click("#people tr:has-text('Cat') button:has-text('Adjust')")
    host.wait_for_selector("#log:has-text('Cat: 3 points')")
    host.click("#people tr:has-text('Bob') button:has-text('Remove')")
    bob.wait_for_selector("#over-title:has-text('removed you')")
    host.wait_for_selector("#people tr:has-text('Bob'):has-text('removed')")
    pages.shot(bob, "player-removed")
    _host_click(host, "end")
    screen.wait_for_selector("#board-title:has-text('Final standings')")
    for page in (ann, cat):
        page.wait_for_selector("#prompt:has-text('quiz')")
    # The host's table follows the scores (the host-only `scores` event at each reveal).
    expect(host.locator("#people tr:has-text('Ann') td.num").first).to_have_text(str(_score(ann)))
    pages.shot(screen, "screen-final")
    pages.shot(ann, "player-final")
    pages.shot(host, "host-final")
    screen_scores = {
        row.locator(".name").text_content(): int(row.locator(".points").text_content() or 0)
        for row in screen.locator("#board-rows .row").all()
    }
    assert screen_scores["Ann"] == _score(ann)
    assert screen_scores["Cat"] == _score(cat)

    with host.expect_download() as download_info:
        host.click("#download-csv")
    text = Path(download_info.value.path()).read_text("utf-8")
    standings, _, answers = text.partition("\n\n")
    names = {row["name"] for row in csv.DictReader(io.StringIO(standings.split("\n", 1)[1]))}
    assert {"Ann", "Cat"} <= names
    answer_rows = list(csv.DictReader(io.StringIO(answers.split("\n", 1)[1])))
    assert {row["question"] for row in answer_rows} == {str(q) for q in range(6)}
    assert len({(row["participant_id"], row["question"]) for row in answer_rows}) == 18
