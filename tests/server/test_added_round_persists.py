"""A round added in the lobby is part of the quiz as it is played, in the database too (issue
21 point 3): the game applies it (``commands.AddRound``), the stored ``round_added`` event
carries the round, and the export names its questions, also after a restart without Redis
(the session interrupted, only the database left). On SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.game import commands
from pubquiz_engine.protocol import messages as m

ADDED = {"title": "Added round", "items": [
    {"kind": "truefalse", "prompt": "Was this round added in the lobby?", "answer": True,
     "time_limit": 30}]}


@pytest.mark.parametrize("backend", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_an_added_rounds_questions_reach_the_export_and_survive_a_restart(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    settings = ({"database_url": request.getfixturevalue("postgres_url")}
                if backend == "postgres" else {})
    with trio.fail_after(60):
        async with engine_at(tmp_path, **settings) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            code = session.code
            game = session.game
            assert session.add_round(ADDED) == 2
            assert session.game.quiz.rounds[2].title == "Added round"
            async with open_client(address.url) as ann:
                await ann.join(code, "Ann")
                session.command(commands.Start())
                for _ in range(20):  # three questions, a summary between rounds: bounded
                    game = session.game
                    if game.phase == "question_open" and game.current_question == 3:
                        break
                    session.command(commands.Skip() if game.phase in (
                        "question_open", "question_closed") else commands.Next())
                assert game.current_question == 3
                question = await ann.next_event(m.Question)
                while question.q != 3:
                    question = await ann.next_event(m.Question)
                await ann.answer(3, True)
            assert await engine.persister.drain(timeout=10)
            live = await engine.store.session_results(code)
        # A restart without Redis: the live session is interrupted, the database is all.
        async with engine_at(tmp_path, **settings) as (again, _):
            assert code not in again.sessions
            stored = await again.store.session_results(code)
    for results in (live, stored):
        assert [(a.name, a.question, a.question_text, a.answer_text)
                for a in results.answers] == [
            ("Ann", 3, "Was this round added in the lobby?", "true")]
