"""The demo: a whole pub quiz night on this machine, over real sockets.

The engine runs on the embedded default (SQLite in the data directory, no Redis) and plays the
sample quiz. A host, a big-screen display and a few dozen simulated players in teams connect
through the thin client exactly as phones would; the players know each answer with some
probability (so the standings are interesting) and answer after a human-ish delay. The terminal
shows live progress and the final leaderboard, then the results are read back from the store.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.game import GameSession, QuestionKind, load_quiz, sample_quiz_path
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import running_engine

TEAM_NAMES = ("Quizteama Aguilera", "The Know-It-Ales", "Les Quizerables", "Agatha Quiztie",
              "Trivia Newton John", "The Quizzly Bears", "Universally Challenged", "E=MC Hammer")
FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dev", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jo", "Kai",
               "Lena", "Max", "Nia", "Oli", "Pia", "Raj", "Sam", "Tess", "Uma", "Vic", "Wes",
               "Xia", "Yan", "Zoe")


@attrs.frozen
class DemoOptions:
    players: int = 24
    teams: int = 6
    data_dir: str | None = None
    answer_delay: tuple[float, float] = (0.05, 0.6)
    seed: int = 7


def _guess(game: GameSession, q: int, rng: random.Random, knows: bool) -> Any:
    """A plausible answer: the right one if the player knows it, else a wild guess."""
    view = game.question_view(q)
    correct = game.correct_view(q).answer
    kind = view.kind
    if kind is QuestionKind.TRUEFALSE:
        return bool(correct) if knows else rng.random() < 0.5
    if kind is QuestionKind.SINGLE:
        return int(correct) if knows else rng.randrange(len(view.choices))
    if kind in (QuestionKind.MULTIPLE, QuestionKind.ORDERING):
        if knows:
            return list(correct)
        picks = list(range(len(view.choices)))
        rng.shuffle(picks)
        return picks if kind is QuestionKind.ORDERING else picks[: rng.randint(1, len(picks))]
    if kind is QuestionKind.TEXT:
        return str(correct[0]).lower() if knows else rng.choice(["no idea", "pass", "erm"])
    if kind is QuestionKind.NUMERIC:
        value = float(correct)
        return value if knows else round(value * rng.uniform(0.7, 1.3), 1)
    return None


async def _player(url: str, code: str, name: str, team: str, skill: float, captain: bool,
                  game: GameSession, opts: DemoOptions, rng: random.Random,
                  stats: dict[str, int]) -> None:
    """One phone. In team mode the captain enters the team's answer; the others follow along
    (the question closes as soon as every team has answered)."""
    async with open_client(url) as client:
        await client.join(code, name, team)
        while True:
            try:
                event = await client.next_event(timeout=600)
            except Exception:
                return
            if isinstance(event, m.Ended):
                return
            if isinstance(event, m.Question) and captain:
                await trio.sleep(rng.uniform(*opts.answer_delay))
                value = _guess(game, event.q, rng, rng.random() < skill)
                try:
                    await client.answer(event.q, value)
                    stats["acked"] += 1
                except RemoteError:
                    stats["refused"] += 1


async def _host(client: Client, say: Callable[[str], None], total_questions: int,
                stats: dict[str, int]) -> None:
    """Drive the quiz from the first slide to the end, like a quiz master would."""
    await client.request(m.Start)
    while True:
        event = await client.next_event(timeout=120)
        if isinstance(event, m.Slide):
            say(f"  [slide] {event.title}")
            await client.request(m.Next)
        elif isinstance(event, m.Question):
            opened = trio.current_time()
            say(f"  Q{event.q + 1}/{total_questions} [{event.kind}] {event.prompt[:70]}")
            closed = await client.next_event(m.Closed, timeout=120)
            assert closed.q == event.q
            say(f"      closed after {trio.current_time() - opened:.2f}s, "
                f"{stats['acked']} answers acked so far")
            await client.request(m.Reveal)
            await client.next_event(m.Revealed)
            await client.request(m.Next)
        elif isinstance(event, m.RoundSummary):
            say(f"  -- end of round {event.round + 1}: {event.title}")
            await client.request(m.ShowLeaderboard, round=None)
            board = await client.next_event(m.Leaderboard)
            leader = board.top[0] if board.top else None
            if leader is not None:
                say(f"     leading: {leader[2]} with {leader[3]}")
            await client.request(m.Next)
        elif isinstance(event, m.Leaderboard):
            continue
        elif isinstance(event, m.Ended):
            return


def command_hint() -> str:
    """How to run ``pubquiz-engine`` from here: ``make demo`` installs it in ``.venv/bin``,
    which is not on PATH, so a bare name would not be found."""
    script = Path(sys.executable).with_name("pubquiz-engine")
    if not script.exists():
        return f"{sys.executable} -m pubquiz_engine.cli"
    on_path = os.environ.get("PATH", "").split(os.pathsep)
    if str(script.parent) in on_path:
        return "pubquiz-engine"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


async def run_demo(opts: DemoOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Play the sample quiz end to end; returns a summary (used by the demo's test)."""
    rng = random.Random(opts.seed)
    quiz = load_quiz(sample_quiz_path())
    data_dir = opts.data_dir or tempfile.mkdtemp(prefix="pubquiz-demo-")
    # The simulated host clicks faster than a person: lift the per-connection message rate.
    config = ServerConfig(port=0, data_dir=data_dir, join_rate=1000.0, join_burst=1000,
                          message_rate=1000.0, message_burst=1000)
    await trio.Path(data_dir).mkdir(parents=True, exist_ok=True)
    stats = {"acked": 0, "refused": 0}
    async with running_engine(config) as (engine, address):
        session, host_token = engine.create_session(
            quiz, mode="team", options={"close_when_all_answered": True})
        say(f"pubquiz-engine demo: {quiz.title}")
        say(f"  engine on {address.url}, database {config.resolved_database_url()}")
        say(f"  join code {session.code}; {opts.players} players in {opts.teams} teams")
        async with open_client(address.url) as host, open_client(address.url) as display:
            await host.host(session.code, host_token)
            await display.watch(session.code)
            async with trio.open_nursery() as players:
                for i in range(opts.players):
                    team = TEAM_NAMES[i % opts.teams % len(TEAM_NAMES)]
                    name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]}{i // len(FIRST_NAMES) or ''}"
                    skill = rng.uniform(0.3, 0.9)
                    players.start_soon(_player, address.url, session.code, name, team, skill,
                                       i < opts.teams, session.game, opts,
                                       random.Random(rng.random()), stats)
                with trio.fail_after(60):
                    while len(session.game.participants) < opts.players:
                        await display.next_event(m.PlayerJoined)
                say(f"  {len(session.game.participants)} players joined; the quiz starts")
                await _host(host, say, len(quiz.questions), stats)
        standings = session.game.standings(teams=True)
        code = session.code
        await engine.persister.drain(timeout=30)
        results = await engine.store.session_results(code)
        stored = len(results.answers)
    say("")
    say("Final standings")
    for line in standings:
        say(f"  {line.rank:>2}. {line.name:<26} {line.score:>4}")
    say(f"  {stats['acked']} answers acked, {stats['refused']} refused, "
        f"{stored} stored in {config.resolved_database_url()}")
    say(f"  export them with: {command_hint()} export {code} --database-url "
        f"{config.resolved_database_url()} --format csv")
    return {"code": code, "standings": standings, "acked": stats["acked"],
            "refused": stats["refused"], "stored": stored,
            "database_url": config.resolved_database_url()}
