"""A client that (re)connects while a slide is shown gets the slide in its ``state`` (SPEC 11:
``slide`` is ``{title, body}`` while a slide is shown), also while the host has paused on it;
a question clears it."""

from __future__ import annotations

from pathlib import Path

import trio
from engine_fixtures import engine_at

from pubquiz_engine.client import open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m

QUIZ = {"title": "Slides", "rounds": [{"title": "Opening", "items": [
    {"kind": "slide", "title": "Welcome to the Lion", "text": "Phones on silent.\nNo googling."},
    {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True},
]}]}


async def _state_seen_by_a_new_screen(url: str, code: str) -> dict[str, object]:
    async with open_client(url) as screen:
        await screen.watch(code)
        return (await screen.next_event(m.State)).state


async def test_a_reconnecting_client_sees_the_slide_on_screen(tmp_path: Path) -> None:
    quiz = load_quiz_data(QUIZ, source="test")
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(quiz, mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as ada:
                await host.host(session.code, host_token)
                await ada.join(session.code, "Ada")
                await host.request(m.Start)
                shown = await ada.next_event(m.Slide)
                expected = {"title": shown.title, "body": shown.body}
                assert expected == {"title": "Welcome to the Lion",
                                    "body": "Phones on silent.\nNo googling."}

                state = await _state_seen_by_a_new_screen(address.url, session.code)
                assert (state["phase"], state["slide"]) == ("slide", expected)

                await host.request(m.Pause)
                state = await _state_seen_by_a_new_screen(address.url, session.code)
                assert (state["phase"], state["slide"]) == ("paused", expected)

                await host.request(m.Unpause)
                await host.request(m.Next)
                await ada.next_event(m.Question)
                state = await _state_seen_by_a_new_screen(address.url, session.code)
                assert (state["phase"], state["slide"]) == ("question_open", None)
