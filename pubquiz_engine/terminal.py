"""A person at a terminal: ``pubquiz-engine play`` and ``pubquiz-engine host``.

Both print what the session does as it happens and read commands from standard input (in a
worker thread, so the event loop keeps receiving while the person types).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio

from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.protocol import messages as m


async def _read_line(prompt: str = "") -> str | None:
    def read() -> str:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        return sys.stdin.readline()

    line = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
    return line.strip() if line else None


def describe(event: m.Message) -> str:
    """One human line for an event."""
    if isinstance(event, m.Question):
        choices = "".join(f"\n    {i}) {c}" for i, c in enumerate(event.choices or ()))
        media = f"\n    [media: {event.media}]" if event.media else ""
        return (f"Q{event.q + 1} ({event.kind}, {event.points} pts, "
                f"{event.time_limit_ms // 1000}s): {event.prompt}{media}{choices}")
    if isinstance(event, m.Slide):
        return f"== {event.title} ==\n{event.body}"
    if isinstance(event, m.Revealed):
        return f"Answer to Q{event.q + 1}: {event.correct}"
    if isinstance(event, m.Result):
        verdict = "right" if event.correct else "wrong"
        return f"You were {verdict}: +{event.points}, total {event.score}"
    if isinstance(event, m.Leaderboard):
        rows = "\n".join(f"  {r[0]:>2}. {r[2]} {r[3]}" for r in event.top)
        return f"Leaderboard{'' if event.round is None else f' (round {event.round + 1})'}:\n{rows}"
    if isinstance(event, m.You):
        return f"Your rank: {event.rank}, score {event.score}"
    if isinstance(event, m.Ended):
        return f"The quiz has ended ({event.reason})."
    if isinstance(event, m.PlayerJoined):
        return f"+ {event.name}" + (f" ({event.team})" if event.team else "")
    if isinstance(event, m.AnswerCount):
        return f"  answers: {event.answered}/{event.total}"
    if isinstance(event, m.Closed):
        return f"Q{event.q + 1} closed."
    return f"{event.TYPE}: {event}"


async def _printer(client: Client, open_question: dict[str, int | None]) -> None:
    """Print every event; remember which question is open (for the player's answers)."""
    while True:
        event: m.Message = await client.next_event(timeout=1e9)
        if isinstance(event, m.Question):
            open_question["q"] = event.q
        elif isinstance(event, m.Closed | m.Ended):
            open_question["q"] = None
        print(describe(event), flush=True)


def _parse_answer(text: str) -> Any:
    """Numbers stay numbers, "true"/"false" booleans, "1,3" a list, anything else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if "," in text and all(p.strip().isdigit() for p in text.split(",")):
        return [int(p) for p in text.split(",")]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


async def play(url: str, code: str, name: str, team: str | None) -> None:
    async with open_client(url) as client:
        welcome = await client.join(code, name, team)
        print(f"Joined {welcome.code} as {welcome.name} (player {welcome.participant}). "
              "Type an answer and Enter when a question is open.", flush=True)
        open_question: dict[str, int | None] = {"q": None}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_printer, client, open_question)
            while True:
                line = await _read_line()
                if line is None:
                    break
                q = open_question["q"]
                if not line:
                    continue
                if q is None:
                    print("No question is open.", flush=True)
                    continue
                try:
                    await client.answer(q, _parse_answer(line))
                    print("Answer received.", flush=True)
                except RemoteError as exc:
                    print(f"Refused: {exc.message}", flush=True)
            nursery.cancel_scope.cancel()


HOST_COMMANDS = {
    "start": (m.Start, {}), "next": (m.Next, {}), "close": (m.Close, {}),
    "pause": (m.Pause, {}), "unpause": (m.Unpause, {}), "reveal": (m.Reveal, {}),
    "skip": (m.Skip, {}), "board": (m.ShowLeaderboard, {"round": None}), "end": (m.End, {}),
}


async def host(url: str, *, key: str | None, quiz: str, mode: str, code: str | None,
               token: str | None) -> None:
    async with open_client(url) as client:
        if code is None or token is None:
            if not key:
                raise SystemExit("give --key to create a session, or --code and --token")
            created = await client.create_session(key, quiz_path=quiz, mode=mode)
            code, token = created.code, created.host_token
            print(f"Session {code} created. Host token (keep it secret): {token}", flush=True)
        await client.host(code, token)
        print("Commands: " + ", ".join(HOST_COMMANDS) +
              ", extend N, kick ID, adjust ID DELTA REASON, mark Q ID right|wrong, quit",
              flush=True)
        async with trio.open_nursery() as nursery:
            no_question: dict[str, int | None] = {"q": None}
            nursery.start_soon(_printer, client, no_question)
            while True:
                line = await _read_line("> ")
                if line is None or line == "quit":
                    break
                words = line.split()
                if not words:
                    continue
                try:
                    await _host_command(client, words)
                except RemoteError as exc:
                    print(f"Refused: {exc.code}: {exc.message}", flush=True)
                except (ValueError, IndexError):
                    print("Could not read that command.", flush=True)
            nursery.cancel_scope.cancel()


async def _host_command(client: Client, words: list[str]) -> None:
    verb = words[0]
    if verb in HOST_COMMANDS:
        cls, fields = HOST_COMMANDS[verb]
        await client.request(cls, **fields)
    elif verb == "extend":
        await client.request(m.Extend, seconds=int(words[1]))
    elif verb == "kick":
        await client.request(m.Kick, participant=int(words[1]))
    elif verb == "adjust":
        await client.request(m.Adjust, participant=int(words[1]), delta=int(words[2]),
                             reason=" ".join(words[3:]) or "host")
    elif verb == "mark":
        await client.request(m.Mark, q=int(words[1]) - 1, participant=int(words[2]),
                             correct=words[3] in ("right", "yes", "1", "true"))
    else:
        print(json.dumps({"unknown command": verb}), flush=True)
