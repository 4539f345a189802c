"""The host console's rounds list and "Generate a round" form, in headless Chromium.

An engine with an operator key and ``generator_url`` pointing at the tests' own model server
(``FakeModel`` from tests/generate/modelkit.py, here behind a gate so the page's progress can be
seen while the model "thinks"). The host creates a session from the sample quiz, a player joins,
and the quiz master: tries a wrong operator key (``bad_key`` shown), hits a failing model
(``generator_unavailable`` and the model's error shown), generates a round (progress, then the
result with the dropped count; the rounds list and the player's ``state`` have the new round),
stops waiting for another one (which the engine still adds), and starts the quiz (the form goes).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from webkit import UNNAMED, WAIT_MS, EngineThread, Pages, TrioThread, expect, run_scenario

_GENERATE_TESTS = str(Path(__file__).resolve().parent.parent / "generate")
if _GENERATE_TESTS not in sys.path:
    sys.path.append(_GENERATE_TESTS)

from modelkit import FakeModel  # noqa: E402  (after the path set-up above, on purpose)

pytestmark = pytest.mark.slow

KEY = "operator-key-for-tests"
VIEWPORT = {"width": 1280, "height": 1000}


class GatedModel(FakeModel):
    """A ``FakeModel`` that tells the test when a request arrived and, while ``gate`` is set,
    answers only once the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None
        self.arrived = threading.Event()

    async def _answer(self, request: h11.Request, body: bytes) -> tuple[int, bytes]:
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return await super()._answer(request, body)


class ModelThread(TrioThread):
    """The gated model server on 127.0.0.1 port 0, under ``trio.run`` in a thread of its own."""

    what = "the model server"
    stop_timeout = 20.0

    def __init__(self) -> None:
        super().__init__("model")
        self.model = GatedModel()

    async def serve(self, ready: Callable[[], None], stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, self.model.handle, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            self.model.base_url = f"http://127.0.0.1:{port}/v1"
            ready()
            await stop.wait()
            nursery.cancel_scope.cancel()  # a request still held at the gate included

    def hold(self) -> None:
        """From now on, requests wait at a closed gate."""
        def close_gate() -> None:
            self.model.gate = trio.Event()
            self.model.arrived.clear()
        self.call_sync(close_gate)

    def release(self) -> None:
        gate = self.model.gate
        assert gate is not None
        self.call_sync(gate.set)


@pytest.fixture
def model_thread() -> Iterator[ModelThread]:
    running = ModelThread().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def generating_engine(tmp_path: Path, model_thread: ModelThread) -> Iterator[EngineThread]:
    """An engine with operator key ``KEY`` whose model server is ``model_thread``'s."""
    running = EngineThread(port=0, host="127.0.0.1", data_dir=str(tmp_path), operator_key=KEY,
                           join_rate=1000.0, join_burst=1000,
                           generator_url=model_thread.model.base_url,
                           generator_model="test-model", generator_timeout=60.0).start()
    try:
        yield running
    finally:
        running.stop()


def _round_titles(engine: EngineThread, code: str) -> list[str]:
    assert engine.engine is not None
    return [r.title for r in engine.engine.sessions[code].game.quiz.rounds]


def _fill_generate(host: Any, *, topic: str, count: int, kind: str, title: str = "",
                   key: str = KEY) -> None:
    host.fill("#gen-topic", topic)
    host.fill("#gen-count", str(count))
    host.check(f"#generate-form input[name=kind][value={kind}]")
    host.fill("#gen-title", title)
    host.fill("#gen-key", key)


def test_the_host_generates_a_round_from_the_console(
        browser: Any, generating_engine: EngineThread, model_thread: ModelThread,
        artifacts: Path) -> None:
    pages = Pages(browser, generating_engine.base_url, artifacts)
    run_scenario(pages, lambda pages: _generate(pages, generating_engine, model_thread),
                 failure_prefix="failed-generate")


def _generate(pages: Pages, engine: EngineThread, model_thread: ModelThread) -> None:
    model = model_thread.model
    artifacts = pages.artifacts
    debug: list[str] = []

    # --- the host creates a session from the sample quiz: the key is kept for generating ------
    host = pages.open("/host", VIEWPORT, "host")
    expect(host.locator("#create-file-help")).to_contain_text("pubquiz-engine quiz validate")
    host.fill("#create-key", KEY)
    host.check("input[name=quiz][value=sample]")
    host.check("input[name=mode][value=solo]")
    host.click("#create-form button[type=submit]")
    host.wait_for_selector("#player-link:has-text('/play?code=')")
    code = (host.text_content("#player-link") or "").rsplit("=", 1)[1]
    expect(host.locator("#generate-card")).to_be_visible()
    assert host.input_value("#gen-key") == KEY
    sample = _round_titles(engine, code)
    assert len(sample) >= 2
    rows = host.locator("#rounds tr")
    expect(rows).to_have_count(len(sample))
    assert [text.strip() for text in host.locator("#rounds tr th").all_text_contents()] == sample
    assert host.evaluate(UNNAMED) == []

    # --- a player joins, and logs what it receives --------------------------------------------
    ann = pages.open(f"/play?code={code}", VIEWPORT, "ann")
    ann.on("console", lambda msg: debug.append(msg.text) if msg.type == "debug" else None)
    ann.fill("#join-name", "Ann")
    ann.click("#join-submit")
    ann.wait_for_selector("text=You are in")
    ann.evaluate("globalThis.pubquizDebug = true")
    host.wait_for_selector("#people tr:has-text('Ann')")

    # --- a wrong operator key: bad_key, and the model is never asked --------------------------
    _fill_generate(host, topic="rivers", count=2, kind="text", key="not-the-key")
    host.click("#gen-submit")
    expect(host.locator("#gen-error")).to_have_text("Wrong operator key.")
    assert model.requests == []
    expect(host.locator("#gen-submit")).to_be_enabled()

    # --- the model fails: generator_unavailable, with what the model server said --------------
    model.default = "fail"
    _fill_generate(host, topic="volcanoes", count=2, kind="numeric")
    host.click("#gen-submit")
    expect(host.locator("#gen-error")).to_contain_text("The model could not write the questions")
    expect(host.locator("#gen-error")).to_contain_text("model crashed: out of memory")
    expect(host.locator("#log")).to_contain_text("No round generated")
    assert len(model.requests) == 1
    model.default = "good"
    assert _round_titles(engine, code) == sample
    expect(rows).to_have_count(len(sample))

    # --- a round generated: progress while the model thinks, then the result ------------------
    model.script = ["half"]  # one invalid question in the first answer: dropped, asked again
    model_thread.hold()
    _fill_generate(host, topic="90s music", count=3, kind="choice", title="Nineties")
    host.click("#gen-submit")
    expect(host.locator("#gen-progress-text")).to_have_text(
        "Asking the model… this can take a minute or more.")
    expect(host.locator("#gen-submit")).to_be_disabled()
    expect(host.locator("#gen-cancel")).to_be_visible()
    expect(host.locator("#gen-error")).to_have_text("")
    assert model.arrived.wait(WAIT_MS / 1000)
    host.screenshot(path=str(artifacts / "host-generating.png"), full_page=True)
    model_thread.release()
    number = len(sample) + 1
    result = host.locator("#gen-result")
    expect(result).to_contain_text(f"Round {number} (Nineties) added with 3 questions.")
    expect(result).to_contain_text("Left out 1 of the model's questions")
    expect(host.locator("#gen-submit")).to_be_enabled()
    expect(host.locator("#gen-cancel")).to_be_hidden()
    expect(host.locator("#gen-progress-text")).to_have_text("")
    # The console's rounds list (from the host's new `state`) has it ...
    expect(rows).to_have_count(number)
    new_row = host.locator(f"#rounds tr[data-round='{number - 1}']")
    expect(new_row.locator("th")).to_have_text("Nineties")
    expect(new_row.locator("td").nth(1)).to_have_text("3")
    expect(host.locator("#rounds-summary")).to_contain_text(f"{number} rounds")
    expect(host.locator("#log")).to_contain_text(f"Round {number} generated: 3 questions")
    host.screenshot(path=str(artifacts / "host-generated.png"), full_page=True)
    # ... and so do the engine's quiz and the state the player was sent.
    assert _round_titles(engine, code) == [*sample, "Nineties"]
    states = [json.loads(line.split(" ", 2)[2]) for line in debug
              if line.startswith("pubquiz <- ") and '"t":"state"' in line]
    assert states, debug
    assert [r["title"] for r in states[-1]["state"]["rounds"]] == [*sample, "Nineties"]
    assert states[-1]["state"]["rounds"][-1]["questions"] == 3

    # --- stop waiting: the page lets go, the engine still adds the round ----------------------
    model_thread.hold()
    _fill_generate(host, topic="rivers", count=2, kind="text")
    host.click("#gen-submit")
    assert model.arrived.wait(WAIT_MS / 1000)
    expect(host.locator("#gen-cancel")).to_be_visible()
    host.click("#gen-cancel")
    expect(result).to_contain_text("Stopped waiting. The engine may still add the round")
    expect(host.locator("#gen-submit")).to_be_enabled()
    expect(host.locator("#gen-progress-text")).to_have_text("")
    model_thread.release()
    expect(rows).to_have_count(number + 1)
    expect(host.locator(f"#rounds tr[data-round='{number}'] th")).to_have_text("rivers")
    expect(result).to_contain_text("Stopped waiting")  # no late result for a request let go

    # --- once the quiz starts, rounds can no longer be added: the form goes -------------------
    start = host.locator("[data-cmd=start]")
    expect(start).to_be_enabled()
    start.click()
    expect(host.locator("#generate-card")).to_be_hidden()
    expect(host.locator("#phase-line")).to_have_text("Phase: slide")
    expect(host.locator("#rounds tr.current")).to_have_count(0)  # a slide names no round
    host.click("[data-cmd=next]")
    expect(host.locator("#phase-line")).to_have_text("Phase: question open")
    expect(host.locator("#rounds tr.current")).to_have_attribute("data-round", "0")
