"""Wagers and jokers from the player's page (headless Chromium against a real engine).

The page offers the joker and the wager control for the next round only where the quiz allows
them (the `rounds` of the `state` map, SPEC 11). Round 1 takes no joker, round 2 ("Double or
nothing", x2) takes wagers and a joker, round 3 takes neither. Ann and Bob score in round 1; at
the round summary both stake points on round 2 from their phones (Ann first asks for more than
she has and sees the server's refusal, then changes her stake) and Bob plays his joker. Bob's
stake is then changed from "another device" (straight in the engine): a reload shows the
server's stakes and joker. Ann answers round 2 right and wins her stake, Bob answers wrong and
loses his. Before round 3 and after the last round neither control is offered. The page texts
and the engine's game state (stakes, their results, jokers, totals) are checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from webkit import EngineThread, Pages, expect, run_scenario

from pubquiz_engine.game import commands

pytestmark = pytest.mark.slow

PHONE = {"width": 360, "height": 740}
DESK = {"width": 1280, "height": 900}

QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Wager night",
    "rounds": [
        {"title": "Warm-up", "joker": False, "items": [
            {"kind": "single", "prompt": "Which planet is called the Red Planet?",
             "choices": ["Venus", "Mars", "Jupiter"], "answer": "Mars", "points": 5,
             "time_limit": 120},
        ]},
        {"title": "Double or nothing", "wager": True, "multiplier": 2, "items": [
            {"kind": "single", "prompt": "What is the chemical symbol for gold?",
             "choices": ["Ag", "Au", "Fe"], "answer": "Au", "points": 5, "time_limit": 120},
        ]},
        {"title": "Last orders", "joker": False, "items": [
            {"kind": "truefalse", "prompt": "Is a tomato a fruit?", "answer": True,
             "points": 1, "time_limit": 120},
        ]},
    ],
}


def _host_click(host: Any, command: str) -> None:
    button = host.locator(f"[data-cmd={command}]")
    expect(button).to_be_enabled()
    button.click()


def _score(page: Any) -> int:
    match = re.search(r"Score: (-?\d+)", page.text_content("#score") or "")
    assert match is not None
    return int(match.group(1))


def _stake(page: Any, amount: str) -> None:
    page.fill("#wager-amount", amount)
    page.click("#wager-submit")


def _fits(page: Any) -> None:
    """Nothing sticks out of a 360 px phone and the stake controls are on screen."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#wager-amount", "#wager-submit"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
        assert box["height"] >= 44  # a touch target


def test_wagers_from_the_player_page(browser: Any, engine_thread: EngineThread,
                                     artifacts: Path, tmp_path: Path) -> None:
    pages = Pages(browser, engine_thread.base_url, artifacts)
    run_scenario(pages, lambda pages: _play(pages, engine_thread, tmp_path),
                 failure_prefix="failed-wager")


def _play(pages: Pages, engine: EngineThread, tmp_path: Path) -> None:
    host = pages.open("/host", DESK, "host")
    quiz_file = tmp_path / "wager.json"
    quiz_file.write_text(json.dumps(QUIZ))
    host.fill("#create-key", "operator-key-for-tests")
    host.check("input[name=quiz][value=upload]")
    host.set_input_files("#create-file", str(quiz_file))
    host.check("input[name=mode][value=solo]")
    host.click("#create-form button[type=submit]")
    host.wait_for_selector("#player-link:has-text('/play?code=')")
    code = (host.text_content("#player-link") or "").rsplit("=", 1)[1]
    assert engine.engine is not None
    live = engine.engine.sessions[code]

    async def snapshot() -> dict[str, Any]:
        return live.game.to_snapshot()

    def game_state() -> dict[str, Any]:
        data: dict[str, Any] = engine.call(snapshot)
        return data

    ann = pages.open(f"/play?code={code}", PHONE, "ann")
    bob = pages.open(f"/play?code={code}", PHONE, "bob")
    for page, name in ((ann, "Ann"), (bob, "Bob")):
        page.fill("#join-name", name)
        page.click("#join-submit")
        page.wait_for_selector("text=You are in")
    players = [ann, bob]
    ids = {row[1]: row[0] for row in game_state()["participants"]}
    # The lobby: round 1 takes no joker and no wagers (and nobody has points to stake yet).
    for page in players:
        expect(page.locator("#prompt")).to_have_text("Wager night")
        expect(page.locator("#wager")).to_be_hidden()
        expect(page.locator("#extra button")).to_have_count(0)

    # --- round 1: both score 5 ------------------------------------------------------------------
    _host_click(host, "start")
    for page in players:
        page.wait_for_selector("#prompt:has-text('Red Planet')")
        expect(page.locator("#wager")).to_be_hidden()
        page.locator("#controls .choice").nth(1).click()
        page.wait_for_selector("#feedback:has-text('Answer received')")
    _host_click(host, "reveal")
    for page in players:
        page.wait_for_selector("#feedback:has-text('Right!')")
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector("#prompt:has-text('End of round 1')")
        expect(page.locator("#score")).to_contain_text("Score: 5")

    # --- the round summary: stakes and a joker on round 2 ----------------------------------------
    for page in players:
        expect(page.locator("#wager")).to_be_visible()
        expect(page.locator("#wager-title")).to_have_text(
            "Wager on Round 2: Double or nothing, x2")
        expect(page.locator("#extra button")).to_have_text(
            "Play our joker on Round 2: Double or nothing, x2")
        page.click("#wager-title")  # unfold
        expect(page.locator("#wager-help")).to_contain_text("0 to 5 points")
        _fits(page)
    _stake(ann, "99")
    # The server's own refusal (invalid_wager), with the limit it names.
    expect(ann.locator("#wager-status")).to_have_text(
        "Stake not accepted: stake a whole number from 0 to 5")
    assert game_state()["wagers"] == []
    _stake(ann, "-2")  # no whole number of points: refused before sending
    expect(ann.locator("#wager-status")).to_have_text(
        "Enter a whole number of points from 0 to 5.")
    _stake(ann, "3")
    expect(ann.locator("#wager-status")).to_have_text("You staked 3 on round 2.")
    _stake(ann, "4")  # changed before the round starts: the new stake replaces the old
    expect(ann.locator("#wager-status")).to_have_text("You staked 4 on round 2.")
    _stake(bob, "2")
    expect(bob.locator("#wager-status")).to_have_text("You staked 2 on round 2.")
    bob.click("#extra button")
    expect(bob.locator("#extra")).to_have_text("Joker played on round 2: double points!")
    assert game_state()["jokers"] == [[ids["Bob"], 1]]
    ann.screenshot(path=str(pages.artifacts / "player-wager-phone.png"))
    # A reload shows the stake and the joker the server has (the prompt is the quiz title).
    ann.reload()
    expect(ann.locator("#prompt")).to_have_text("Wager night")
    expect(ann.locator("#wager-status")).to_have_text("You staked 4 on round 2.")
    expect(ann.locator("#wager-amount")).to_have_value("4")
    expect(ann.locator("#extra button")).to_have_text(
        "Play our joker on Round 2: Double or nothing, x2")

    # Bob's stake changes elsewhere (his other phone): his page learns it from the reload's state.
    async def restake() -> None:
        live.command(commands.PlaceWager(participant=ids["Bob"], round=1, amount=5))

    engine.call(restake)
    assert sorted(map(tuple, game_state()["wagers"])) == sorted(
        [(1, ids["Ann"], 4), (1, ids["Bob"], 5)])
    bob.reload()
    expect(bob.locator("#prompt")).to_have_text("Wager night")
    expect(bob.locator("#wager-status")).to_have_text("You staked 5 on round 2.")
    expect(bob.locator("#wager-amount")).to_have_value("5")
    expect(bob.locator("#extra")).to_have_text("Joker played on round 2: double points!")
    expect(bob.locator("#extra button")).to_have_count(0)

    # --- round 2 starts: the control goes; Ann is right, Bob is wrong ---------------------------
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector("#prompt:has-text('symbol for gold')")
        expect(page.locator("#wager")).to_be_hidden()
    ann.locator("#controls .choice").nth(1).click()
    bob.locator("#controls .choice").nth(0).click()
    for page in players:
        page.wait_for_selector("#feedback:has-text('Answer received')")
    _host_click(host, "reveal")
    ann.wait_for_selector("#feedback:has-text('Right! +10 points')")  # x2
    bob.wait_for_selector("#feedback:has-text('Not this time')")
    expect(ann.locator("#score")).to_contain_text("Score: 19")  # 5 + 10 + the stake of 4
    expect(bob.locator("#score")).to_contain_text("Score: 0")  # 5 - the stake of 5

    # --- before round 3: no wagers and no joker there (Bob's joker is still named) -------------
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector("#prompt:has-text('End of round 2')")
        expect(page.locator("#wager")).to_be_hidden()
        expect(page.locator("#extra button")).to_have_count(0)
    expect(bob.locator("#extra")).to_have_text("Joker played on round 2: double points!")
    ann.reload()  # the same from the state map
    expect(ann.locator("#prompt")).to_have_text("Wager night")
    expect(ann.locator("#wager")).to_be_hidden()
    expect(ann.locator("#extra button")).to_have_count(0)

    # --- round 3, then the last round summary: nothing left to offer ----------------------------
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector("#prompt:has-text('tomato')")
    _host_click(host, "reveal")
    _host_click(host, "next")
    for page in players:
        page.wait_for_selector("#prompt:has-text('End of round 3')")
        expect(page.locator("#wager")).to_be_hidden()
        expect(page.locator("#extra button")).to_have_count(0)
    ann.reload()
    expect(ann.locator("#prompt")).to_have_text("Wager night")
    expect(ann.locator("#feedback")).to_contain_text("19")  # the state has been applied
    expect(ann.locator("#wager")).to_be_hidden()
    expect(ann.locator("#extra button")).to_have_count(0)

    _host_click(host, "next")  # the end
    for page in players:
        page.wait_for_selector("#prompt:has-text('Thanks for playing')")
        expect(page.locator("#wager")).to_be_hidden()
    assert _score(ann) == 19
    assert _score(bob) == 0
    state = game_state()
    totals = dict(map(tuple, state["totals"]))
    assert totals[ids["Ann"]] == 19
    assert totals[ids["Bob"]] == 0
    assert sorted(map(tuple, state["wager_results"])) == sorted(
        [(1, ids["Ann"], 4), (1, ids["Bob"], -5)])
