"""The export agrees with the live game (issue 20): players and teams, a team member who joins
late, marks and per-answer outcomes, through a real engine and its SQLite store."""

from __future__ import annotations

from pathlib import Path

import trio
from engine_fixtures import engine_at, short_quiz

from pubquiz_engine.client import open_client
from pubquiz_engine.protocol import messages as m


async def test_the_export_says_what_the_game_said(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="team")
            game = session.game
            async with open_client(address.url) as host, open_client(address.url) as ann, \
                    open_client(address.url) as cy:
                await host.host(session.code, host_token)
                await ann.join(session.code, "Ann", "Owls")
                await cy.join(session.code, "Cy", "Larks")
                await host.request(m.Start)
                q1 = await ann.next_event(m.Question)
                await ann.answer(q1.q, 1)  # Lyon: wrong...
                await ann.answer(q1.q, 0)  # ...changed to Paris: the one that counts
                await cy.answer(q1.q, 2)
                await host.request(m.Reveal)
                told_ann = await ann.next_event(m.Result)
                told_cy = await cy.next_event(m.Result)
                await host.request(m.Next)
                q2 = await ann.next_event(m.Question)
                await cy.answer(q2.q, "The Fab Four")
                await host.request(m.Reveal)
                await host.request(m.Mark, q=q2.q, participant=2, correct=True)
                marked_cy = await cy.next_event(m.Result)
                while marked_cy.q != q2.q or not marked_cy.correct:
                    marked_cy = await cy.next_event(m.Result)

                # Ben joins the Owls after they scored: the game shows him their total.
                async with open_client(address.url) as ben:
                    welcome = await ben.join(session.code, "Ben", "Owls")
                    state = await ben.next_event(m.State)
                    assert state.state["you"]["score"] == told_ann.score > 0
                    assert welcome.participant is not None
                    await host.request(m.End)
                    await ben.next_event(m.Ended)
                live_players = [(s.rank, s.name, s.score) for s in game.standings(teams=False)]
                live_teams = [(s.rank, s.name, s.score) for s in game.standings(teams=True)]
            await engine.persister.drain(timeout=20)
            results = await engine.store.session_results(session.code)

    assert [(s.rank, s.name, s.score) for s in results.standings] == live_players
    assert ("Ben" in [s.name for s in results.standings]) and all(
        isinstance(s.score, int) for s in results.standings)
    assert [(t.rank, t.team, t.score) for t in results.team_standings] == live_teams
    assert {t.team: t.members for t in results.team_standings} == {
        "Owls": ("Ann", "Ben"), "Larks": ("Cy",)}
    rows = [(a.name, a.question, a.answer_text, a.counted, a.result, a.points)
            for a in results.answers]
    assert rows == [
        ("Ann", 0, "Lyon", False, None, None),
        ("Ann", 0, "Paris", True, "right", told_ann.points),
        ("Cy", 0, "Nice", True, "wrong", told_cy.points),
        ("Cy", 1, "The Fab Four", True, "right", marked_cy.points),
    ]
    assert {a.question_text for a in results.answers} == {"Capital of France?",
                                                          "Band of Abbey Road?"}
