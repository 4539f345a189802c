"""`pubquiz-engine play` and `host` as a person uses them: through a pseudo-terminal
(``termkit``), against a real engine on 127.0.0.1 (issue 20)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import socket
from pathlib import Path

import trio
import trio_websocket
from engine_fixtures import engine_at, short_quiz
from httpkit import http_get
from proxykit import FaultProxy
from termkit import Term, terminal

from pubquiz_engine.client import SUBPROTOCOL, open_client
from pubquiz_engine.errors import CloseCode, ErrorCode
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m

KEY = "terminal-test-key"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def no_traceback(term: Term) -> None:
    assert "Traceback" not in term.output and "Error:" not in term.output, term.output


async def test_no_engine_is_one_line_with_what_to_do_and_exit_3(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{closed_port()}/"
    with trio.fail_after(30):
        async with terminal(["play", "ABCD", "--name", "Ann", "--url", url],
                            state_dir=tmp_path) as term:
            assert await term.exit_code() == 3
    no_traceback(term)
    lines = [line for line in term.output.splitlines() if line.strip()]
    assert len(lines) == 1, term.output
    assert f"No quiz engine answers at {url}" in lines[0] and "--url" in lines[0]


async def test_a_bad_url_scheme_is_a_usage_error(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with terminal(["host", "--key", "k", "--url", "http://127.0.0.1:8765/"],
                            state_dir=tmp_path) as term:
            assert await term.exit_code() == 2
    no_traceback(term)
    assert "must start with ws:// or wss://" in term.output
    assert "use ws://127.0.0.1:8765/" in term.output


def hinted_args(term: Term, pattern: str) -> list[str]:
    """The arguments of the command the terminal told the person to type (in backquotes)."""
    found = re.search(pattern + r" `(\S*pubquiz-engine) ([^`]*)`", term.output)
    assert found is not None, term.output
    return found[2].split()


async def test_ctrl_c_keeps_the_place_and_the_next_start_resumes_it(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            code = session.code
            async with terminal(["play", code, "--name", "Ann", "--url", address.url],
                                state_dir=tmp_path) as term:
                await term.expect(f"Joined {code} as Ann")
                await term.expect("Waiting for the quiz master to start")
                await term.interrupt()
                assert await term.exit_code() == 130
            no_traceback(term)
            # The hint is the whole command, --url included (the engine is not at the default).
            assert re.search(rf"Interrupted\. Your place is kept: `.*play {code} --url "
                             rf"{address.url}` brings you back\.", term.output), term.output
            saved = json.loads((tmp_path / f"player-{code}.json").read_text())
            assert saved["name"] == "Ann" and saved["token"]
            assert (tmp_path / f"player-{code}.json").stat().st_mode & 0o077 == 0

            # The hinted command (no --name needed) resumes Ann and shows where the quiz is.
            async with terminal(hinted_args(term, "Your place is kept:"),
                                state_dir=tmp_path) as term:
                await term.expect(rf"Back in {code} as Ann\.\n.*lobby, 1 participant\.\n"
                                  r"You are Ann: 0 points\.\nWaiting for the quiz master")
                async with open_client(address.url) as host:
                    await host.host(code, host_token)
                    await host.request(m.Start)
                    await term.expect("Capital of France")
                    await term.type("/quit")
                    assert await term.exit_code() == 0
            no_traceback(term)
            assert "Bye." in term.output
            assert [p.name for p in session.game.participants.values()] == ["Ann"]

            # A new run mid-question, without --url (the saved place knows the engine): the
            # whole state, the open question with the time left, and the answer is taken.
            async with terminal(["play", code], state_dir=tmp_path) as term:
                await term.expect(rf"Back in {code} as Ann\.")
                await term.expect(r"Q1 \(round 1 \(Round one\), question 1\) · 2 points · "
                                  r"\d+ s\n  Capital of France\?")
                await term.type("a")
                await term.expect(r"Answer received: A\) Paris\.")
                await term.end_input()  # Ctrl-D
                assert await term.exit_code() == 0
            no_traceback(term)
            assert [p.name for p in session.game.participants.values()] == ["Ann"]

            # --new joins as someone else.
            async with terminal(["play", code, "--name", "Bob", "--new", "--url", address.url],
                                state_dir=tmp_path) as term:
                await term.expect(f"Joined {code} as Bob")
                await term.end_input()  # Ctrl-D
                assert await term.exit_code() == 0
            assert sorted(p.name for p in session.game.participants.values()) == ["Ann", "Bob"]


async def test_ctrl_c_in_host_and_the_hint_brings_the_host_back(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path, operator_key=KEY) as (_engine, address):
            async with terminal(["host", "--key", KEY, "--mode", "solo", "--url", address.url],
                                state_dir=tmp_path) as term:
                code = (await term.expect(r"Session ([A-Z0-9]+) created \(solo mode\)\. "
                                          r"Players join with: \S*pubquiz-engine play "
                                          r"[A-Z0-9]+ --name NAME --url (\S+)\n"))[1]
                await term.expect(f"Hosting {code}")
                await term.type("start")
                await term.expect("== Welcome to the Red Lion Quiz! ==")
                await term.interrupt()
                assert await term.exit_code() == 130
            no_traceback(term)
            async with terminal(hinted_args(term, "Interrupted. Come back with"),
                                state_dir=tmp_path) as term:
                # A new run gets the whole state: where the quiz is now, the slide on screen
                # included (SPEC section 11).
                await term.expect(rf"Hosting {code}\.")
                await term.expect(r"The Red Lion Thursday Quiz: slide, 0 participants\.")
                await term.expect("== Welcome to the Red Lion Quiz! ==")
                await term.type("quit")
                assert await term.exit_code() == 0
            no_traceback(term)
            assert re.search(rf"Bye\. The quiz goes on\. Come back with `.*host --code {code} "
                             rf"--url {address.url}`", term.output), term.output


class RefusingFront:
    """A WebSocket relay in front of an engine that can drop its connections (as a restarting
    node does, 1012) and refuse the next ``refuse`` identifications (``join``/``resume``) with
    the retryable ``unavailable`` and ``retry_after_ms``, as a node whose session is moving or
    whose store is being retried does (SPEC error table)."""

    def __init__(self, engine_url: str, retry_after_ms: int) -> None:
        self.engine_url = engine_url.rstrip("/")
        self.retry_after_ms = retry_after_ms
        self.refuse = 0
        self.refused = 0
        self.hellos: list[m.Message] = []  # every connection's first message, in order
        self.port = 0
        self._open: set[trio_websocket.WebSocketConnection] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_websocket.serve_websocket, self._handle,
                                         "127.0.0.1", 0, None)
            self.port = server.port
            task_status.started()

    async def drop_all(self) -> None:
        for ws in list(self._open):
            await ws.aclose(CloseCode.SERVICE_RESTART, "restarting")

    async def notice_and_close(self) -> None:
        """As an engine that stops serving a session: an unsolicited ``unavailable`` error
        with ``retry_after_ms``, then close 1013 (try again later)."""
        for ws in list(self._open):
            await ws.send_message(codec.encode(m.ErrorReply(
                rid=None, code=ErrorCode.UNAVAILABLE.value, message="the store is away",
                retryable=True, retry_after_ms=self.retry_after_ms)))
            await ws.aclose(1013, "try again later")

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        down = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            first = await down.get_message()
        except trio_websocket.ConnectionClosed:
            return
        assert isinstance(first, bytes)
        hello = codec.decode(first, direction=m.Direction.CLIENT_TO_SERVER)
        self.hellos.append(hello)
        if self.refuse > 0 and isinstance(hello, m.Join | m.Resume):
            self.refuse -= 1
            self.refused += 1
            await down.send_message(codec.encode(m.ErrorReply(
                rid=hello.rid, code=ErrorCode.UNAVAILABLE.value,
                message="the session is moving to another node", retryable=True,
                retry_after_ms=self.retry_after_ms)))
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                while True:  # until the client hangs up
                    await down.get_message()
            return
        async with trio_websocket.open_websocket_url(
                f"{self.engine_url}{down.path}", subprotocols=[SUBPROTOCOL]) as up:
            self._open.add(down)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, down, up, nursery.cancel_scope)
                    nursery.start_soon(self._pump, up, down, nursery.cancel_scope)
                    await up.send_message(first)
            finally:
                self._open.discard(down)

    @staticmethod
    async def _pump(source: trio_websocket.WebSocketConnection,
                    sink: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                await sink.send_message(await source.get_message())
        scope.cancel()


def asked_wait(found: re.Match[str]) -> None:
    """The wait a line announced honours the engine's 1.7 s: at least that, plus up to as much
    again of jitter (SPEC section 12); the line prints it rounded to 0.1 s."""
    assert found[2] == "1.7" and 1.7 - 0.05 <= float(found[1]) <= 3.4 + 0.05, found[0]


WAITED = r"in (\d+\.\d) s \(the engine asked for at least (1\.7) s\)\.\.\."


async def test_comebacks_wait_what_the_engine_asks_with_unavailable(tmp_path: Path) -> None:
    """A node that says ``unavailable`` with ``retry_after_ms`` is waited out for at least that
    long, said in a line, and the player comes back as the same participant."""
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address), trio.open_nursery() as nursery:
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            front = RefusingFront(address.url, retry_after_ms=1700)
            await nursery.start(front.serve)
            url = f"ws://127.0.0.1:{front.port}/"
            front.refuse = 1  # even the first join
            async with terminal(["play", session.code, "--name", "Ann", "--url", url],
                                state_dir=tmp_path) as term:
                asked_wait(await term.expect(r"Still not connected: the session is moving to "
                                             r"another node \(unavailable\); trying again "
                                             + WAITED))
                await term.expect(f"Joined {session.code} as Ann")
                await term.expect("Waiting for the quiz master")
                front.refuse = 2
                await front.drop_all()
                await term.expect(r"Connection lost: the engine is stopping or restarting; "
                                  r"reconnecting in \d\.\d s\.\.\.")
                for _ in range(2):
                    asked_wait(await term.expect(r"Still not connected: the session is moving "
                                                 r"to another node \(unavailable\); trying "
                                                 r"again " + WAITED))
                await term.expect(f"Back in {session.code} as Ann\\.")
                # Told before the close: the notice and its wait are the reason and the delay.
                await front.notice_and_close()
                asked_wait(await term.expect(r"Connection lost: the store is away "
                                             r"\(unavailable\); reconnecting " + WAITED))
                await term.expect(f"Back in {session.code} as Ann\\.")
                async with open_client(address.url) as host:
                    await host.host(session.code, host_token)
                    await host.request(m.Start)
                    await term.expect("Capital of France")
                await term.type("/quit")
                assert await term.exit_code() == 0
            nursery.cancel_scope.cancel()
    no_traceback(term)
    assert front.refused == 3
    assert [p.name for p in session.game.participants.values()] == ["Ann"]
    # Each comeback names the epoch its last_seq counts in (SPEC 13.4): after a takeover the
    # engine would answer with a full state rather than an empty replay over a stale view.
    resumes = [h for h in front.hellos if isinstance(h, m.Resume)]
    assert len(resumes) == 4 and all(r.epoch == session.epoch for r in resumes), resumes
    # ... and the last seq it saw, even when the comeback begins a new block of request ids.
    assert all(r.last_seq == 1 for r in resumes), resumes


async def test_the_engine_stopping_is_one_line_and_exit_3_when_it_stays_away(
        tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with terminal(["play", session.code, "--name", "Ann", "--url", address.url,
                                 "--reconnect-for", "1"], state_dir=tmp_path) as term:
                await term.expect(f"Joined {session.code}")
                await term.expect("Waiting for the quiz master")
                await engine.shutdown()
                await term.expect(r"Connection lost: the engine is stopping or restarting; "
                                  r"reconnecting in \d\.\d s")
                assert await term.exit_code() == 3
    no_traceback(term)
    assert re.search(r"Lost the connection to .* and could not get back within 1 s\. Your "
                     r"place is kept", term.output), term.output


def test_nothing_is_printed_as_a_repr() -> None:
    """Every event type the terminal may receive becomes sentences, never ``Type(field=...)``."""
    from pubquiz_engine.terminal import View

    question = m.Question(seq=3, q=0, round=0, number=1, kind="single", prompt="Capital?",
                          choices=("Paris", "Lyon"), points=2, time_limit_ms=30_000,
                          deadline_ms=1_000_030_000)
    samples: list[m.Message] = [
        m.State(seq=0, state={"phase": "lobby", "mode": "solo", "title": "T",
                              "participant_count": 1, "rounds": [], "next_round": 0}),
        m.Slide(seq=1, title="Hi", body="Play your joker"),
        question,
        m.Answered(seq=4, q=0, participant=1),
        m.AnswerCount(seq=5, q=0, answered=1, total=2),
        m.Paused(seq=6, remaining_ms=12_000),
        m.Unpaused(seq=7, deadline_ms=1_000_012_000),
        m.Extended(seq=8, q=0, deadline_ms=1_000_040_000),
        m.Closed(seq=9, q=0),
        m.Revealed(seq=10, q=0, correct=0, distribution=(1, 1)),
        m.Result(q=0, correct=True, points=3, score=3, answered=True),
        m.Leaderboard(seq=11, round=None, teams=False, top=((1, 1, "Ann", 3),)),
        m.You(rank=1, score=3),
        m.RoundSummary(seq=12, round=0, title="R1"),
        m.ScoreAdjusted(seq=13, participant=1, delta=2, reason="good sport"),
        m.PlayerJoined(seq=14, participant=2, name="Bob"),
        m.PlayerLeft(seq=15, participant=2),
        m.PlayerKicked(seq=16, participant=2),
        m.Started(seq=18),
        m.RoundStarted(seq=19, round=0, title="R1"),
        m.JokerPlayed(seq=20, participant=1, round=1),
        m.WagerPlaced(seq=21, participant=1, round=1, amount=3),
        m.Marked(seq=22, q=0, participant=1, correct=True),
        m.Scores(seq=23, reason="mark", q=0, scores=((1, 5),)),
        m.Ended(seq=17, reason="ended_by_host"),
    ]
    for role in ("player", "host"):
        view = View(role=role, now=lambda: 1_000_000.0)
        text = "\n".join(line for message in samples for line in view.lines(message))
        assert not re.search(r"\w+\(\w+=", text), text
        assert "1000030000" not in text and "1_000" not in text
    player = View(role="player", now=lambda: 1_000_000.0)
    said: dict[str, list[str]] = {}
    for message in samples:
        said[message.TYPE] = player.lines(message)
    assert said["question"][0].endswith("· 30 s") and "    A) Paris" in said["question"]
    assert said["unpaused"] == ["Running again: 12 s left."]
    assert said["extended"] == ["More time for Q1: 40 s left."]
    assert said["reveal"] == ["The answer to Q1: A) Paris"]
    assert said["result"] == ["Right! +3 points. Your score: 3."]
    assert View(role="player", now=lambda: 1_000_000.0).lines(
        m.Result(q=1, correct=False, points=0, score=3, answered=False)) == [
        "No answer to Q2: 0 points. Your score: 3."]


NIGHT = {
    "format": 1,
    "title": "Terminal night",
    "rounds": [
        {"title": "Warm-up", "items": [
            {"kind": "single", "prompt": "Capital of France?", "choices": ["Paris", "Lyon",
                                                                            "Nice"],
             "answer": "Paris", "time_limit": 120, "points": 2, "speed_bonus": 2,
             "explanation": "Paris has been the capital for a thousand years."},
            {"kind": "text", "prompt": "Band of Abbey Road?",
             "answer": ["The Beatles", "Beatles"], "time_limit": 120},
        ]},
        {"title": "Finale", "items": [
            {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True,
             "time_limit": 120},
            {"kind": "multiple", "prompt": "Noble gases?", "choices": ["Neon", "Iron",
                                                                      "Argon"],
             "answer": ["Neon", "Argon"], "partial": True, "points": 4, "time_limit": 120},
        ]},
    ],
}


async def test_a_whole_quiz_from_two_terminals_with_a_network_drop(tmp_path: Path) -> None:
    """Host and player at their terminals; the player's network drops mid-question and comes
    back; every line reads as a sentence; the export says what the screens said."""
    quizzes = tmp_path / "quizzes"
    quizzes.mkdir()
    (quizzes / "night.json").write_text(json.dumps(NIGHT))
    with trio.fail_after(120):
        async with engine_at(tmp_path, operator_key=KEY, quiz_dir=str(quizzes)) as (
                _engine, address), trio.open_nursery() as nursery:
            proxy = FaultProxy("127.0.0.1", address.port)
            await nursery.start(proxy.run)
            player_url = f"ws://127.0.0.1:{proxy.port}/"
            async with terminal(["host", "--key", KEY, "--quiz", "night.json", "--mode",
                                 "solo", "--url", address.url],
                                state_dir=tmp_path / "host-home") as host:
                code = (await host.expect(r"Session ([A-Z0-9]+) created"))[1]
                await host.expect(f"Hosting {code}")
                async with terminal(["play", code, "--name", "Ann", "--url", player_url],
                                    state_dir=tmp_path / "ann-home") as ann:
                    await ann.expect(f"Joined {code} as Ann")
                    await ann.expect(r"You may play your joker on round 1 \(Warm-up\): /joker")
                    await host.expect(r"\+ Ann joined \(#1\)")
                    await ann.type("/joker")
                    await ann.expect("Joker played on round 1 \\(Warm-up\\): its points count "
                                     "double")

                    await host.type("start")
                    await ann.expect(r"Q1 \(round 1 \(Warm-up\), question 1\) · 2 points \+ up "
                                     r"to 2 for speed · 120 s\n  Capital of France\?\n"
                                     r"    A\) Paris\n    B\) Lyon\n    C\) Nice\n"
                                     r"  Answer with one letter\.")

                    # The network drops in the middle of the question, then comes back.
                    proxy.cut()
                    await ann.expect(r"Connection lost: the network dropped; reconnecting "
                                     r"in \d+\.\d s\.\.\.")
                    await ann.type("a")
                    await ann.expect(r"Not connected right now \(reconnecting\)")
                    proxy.restore()
                    await ann.expect(f"Back in {code} as Ann.")
                    await ann.type("a")
                    await ann.expect(r"Answer received: A\) Paris\. You may change it until "
                                     "the question closes.")
                    await host.expect(r"Ann \(#1\) answered Q1")

                    await host.type("reveal")
                    await ann.expect(r"The answer to Q1: A\) Paris\n  Paris has been the capital "
                                     "for a thousand years.")
                    first = await ann.expect(r"Right! \+(\d+) points \(4 with your joker, \+ "
                                             r"(\d+) for speed\)\. Your score: (\d+)\.")
                    assert int(first[1]) == 4 + int(first[2]) == int(first[3])
                    score = int(first[3])
                    await host.expect(r"picked: A 1 · B 0 · C 0")
                    await host.type("board")
                    await host.expect(rf"Standings:\n    1\. Ann +{score} points")
                    await ann.expect(rf"Standings:\n    1\. Ann +{score} points\n"
                                     rf"You: rank 1 with {score} points\.")

                    # Host command mistakes get their usage, not a dict or a shrug.
                    await host.type("extend")
                    await host.expect(r"Usage: extend SECONDS")
                    await host.type("extend soon")
                    await host.expect(r"SECONDS must be a whole number, not 'soon'")
                    await host.type("foo")
                    await host.expect(r"Unknown command 'foo'\. Type help for the list\.")
                    await host.type("extend -5")  # past what the protocol carries
                    await host.expect(r"seconds: not in 1\.\.600\. Usage: extend SECONDS")
                    await host.type("close")
                    await host.expect(r"Not now: close cannot be used while the standings "
                                      r"are shown \(wrong_phase\)\.")
                    await host.type("players")
                    await host.expect(r"  #1 Ann\n")

                    await host.type("next")
                    await ann.expect(r"Band of Abbey Road\?\n  Type your answer\.")
                    await ann.type("la" * 550)  # more than an answer may hold
                    await ann.expect(r"Could not send that answer: value: longer than 1024 "
                                     r"characters\.")
                    await ann.type("The Fab Four")
                    await ann.expect("Answer received: The Fab Four.")
                    await host.type("reveal")
                    await ann.expect(r"The answer to Q2: The Beatles \(also accepted: Beatles\)")
                    await ann.expect(rf"Not right this time: 0 points\. Your score: {score}\.")
                    # The quiz master overrules, then adds points: Ann is told each time.
                    await host.type("mark 2 1 right")
                    await ann.expect(rf"The quiz master marked your answer to Q2 right: now 2 "
                                     rf"points for it \(\+2\)\. Your score: {score + 2}\.")
                    await host.type("adjust 1 3 good sport")
                    await host.expect(r"Score of Ann \(#1\) adjusted by \+3: good sport")
                    await ann.expect(rf"The quiz master adjusted your score by \+3: now "
                                     rf"{score + 5}\.")
                    score += 5

                    await host.type("next")
                    await ann.expect(r"End of round 1 \(Warm-up\)\.")
                    await host.type("next")
                    await ann.expect(r"Crows: a murder\?\n  Answer true or false\.")
                    await ann.type("yes")
                    await ann.expect("Answer received: true.")
                    # Ann's network drops again; the quiz master reveals meanwhile. Back, she
                    # sees the reveal she missed and what it gave her (results are not
                    # replayed: the comeback's score says it), not a quiz master's adjustment.
                    proxy.cut()
                    await ann.expect(r"Connection lost: the network dropped;")
                    await host.type("reveal")
                    await host.expect(r"The answer to Q3: true")
                    proxy.restore()
                    await ann.expect(f"Back in {code} as Ann.")
                    await ann.expect(r"The answer to Q3: true")
                    await ann.expect(rf"Your score: {score + 1} \(\+1 while you were away\)\.")
                    score += 1
                    # Partial credit is named as such, with its points.
                    await host.type("next")
                    await ann.expect(r"Noble gases\?\n    A\) Neon\n    B\) Iron\n    C\) Argon\n"
                                     r"  Answer with every right letter, e\.g\. A,C\.")
                    await ann.type("a")
                    await ann.expect(r"Answer received: A\) Neon\.")
                    await host.type("reveal")
                    await ann.expect(r"The answer to Q4: A\) Neon and C\) Argon")
                    await ann.expect(rf"Partly right: \+2 points\. Your score: {score + 2}\.")
                    score += 2
                    await host.type("end")
                    await ann.expect(r"Standings:\n    1\. Ann +" + str(score) + " points")
                    await ann.expect(r"The quiz has ended \(ended by the quiz master\)\.")
                    await ann.expect(rf"You: rank 1 with {score} points\.")
                    assert await ann.exit_code() == 0
                await host.expect(r"The quiz has ended")
                assert await host.exit_code() == 0
            nursery.cancel_scope.cancel()
        for term in (host, ann):
            no_traceback(term)
            assert not re.search(r"\b[A-Z]\w+\(\w+=", term.output), term.output
        assert not (tmp_path / "ann-home" / f"player-{code}.json").exists()  # quiz over

        # The export agrees with what Ann's screen said.
        out = tmp_path / "results.json"
        async with terminal(["export", code, "--data-dir", str(tmp_path), "--format", "json",
                             "-o", str(out)], state_dir=tmp_path) as export:
            assert await export.exit_code() == 0, export.output
        results = json.loads(out.read_text())
        assert [(s["name"], s["score"], s["rank"]) for s in results["standings"]] == \
            [("Ann", score, 1)]
        # Per answer, what Ann was told: the mark on Q2, the partial credit on Q4.
        told = {a["question"]: (a["question_text"], a["result"], a["points"])
                for a in results["answers"] if a["counted"]}
        assert told[1] == ("Band of Abbey Road?", "right", 2)
        assert told[3] == ("Noble gases?", "partly right", 2)
        # `export -o` keeps an existing file unless --force.
        async with terminal(["export", code, "--data-dir", str(tmp_path), "-o", str(out)],
                            state_dir=tmp_path) as export:
            assert await export.exit_code() == 1
        assert "already exists: use --force" in export.output
        assert json.loads(out.read_text()) == results
        async with terminal(["export", code, "--data-dir", str(tmp_path), "-o", str(out),
                             "--force"], state_dir=tmp_path) as export:
            assert await export.exit_code() == 0
        assert out.read_text().startswith("standings\n")


async def test_a_late_team_joiner_and_the_csv_export_say_what_the_screens_said(
        tmp_path: Path) -> None:
    """Team mode: Bob joins Ann's team after round 1; both screens' totals and ranks are the
    CSV export's, with integer scores, texts as typed and every answer's outcome."""
    with trio.fail_after(90):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="team")
            code = session.code
            async with open_client(address.url) as host, open_client(address.url) as cy, \
                    terminal(["play", code, "--name", "Ann", "--team", "Owls", "--url",
                              address.url], state_dir=tmp_path / "ann") as ann:
                await ann.expect(f"Joined {code} as Ann \\(team Owls\\)")
                await host.host(code, host_token)
                await cy.join(code, "=Cy", "Larks")  # a formula-looking name
                await host.request(m.Start)
                await ann.expect(r"Capital of France\?")
                await ann.type("a")
                await ann.expect(r"Answer received: A\) Paris\.")
                q1 = await cy.next_event(m.Question)
                await cy.answer(q1.q, 1)
                await host.request(m.Reveal)
                await ann.expect(r"Right! \+2 points\. Your score: 2\.")
                await host.request(m.Next)
                await ann.expect(r"Band of Abbey Road\?")
                await ann.type("beatles")
                await ann.expect("Answer received: beatles.")
                await host.request(m.Reveal)
                await ann.expect(r"Right! \+1 point\. Your score: 3\.")
                await host.request(m.Next)
                await ann.expect(r"End of round 1 \(Round one\)\.")

                async with terminal(["play", code, "--name", "Bob", "--team", "Owls", "--url",
                                     address.url], state_dir=tmp_path / "bob") as bob:
                    await bob.expect(r"You are Bob \(team Owls\): 3 points, rank 1\.")
                    await host.request(m.Next)
                    await bob.expect(r"Crows: a murder\?")
                    await bob.type("no")
                    await bob.expect("Answer received: false.")
                    await host.request(m.Reveal)
                    await bob.expect(r"Not right this time: 0 points\. Your score: 3\.")
                    await ann.expect(r"Not right this time: 0 points\. Your score: 3\.")
                    await host.request(m.End)
                    said = {}
                    for name, term in (("Ann", ann), ("Bob", bob)):
                        found = await term.expect(r"You: rank (\d+) with (\d+) points\.")
                        said[name] = (int(found[1]), int(found[2]))
                        assert await term.exit_code() == 0
            await engine.persister.drain(timeout=20)
            # The host's download (/results) while the finished session lingers.
            status, _, live_csv = await http_get(
                address.port, f"/results?code={code}",
                headers={"Authorization": f"Bearer {host_token}"})
            assert status == 200
    assert said == {"Ann": (1, 3), "Bob": (1, 3)}
    for term in (ann, bob):
        no_traceback(term)

    out = tmp_path / "results.csv"
    async with terminal(["export", code, "--data-dir", str(tmp_path), "-o", str(out)],
                        state_dir=tmp_path) as export:
        assert await export.exit_code() == 0, export.output
    text = out.read_text(encoding="utf-8")
    standings, teams, answers = [list(csv.reader(io.StringIO(part)))
                                 for part in text.split("\n\n")]
    assert standings[0] == ["standings"] and teams[0] == ["teams"] and answers[0] == ["answers"]
    players = {row[2]: row for row in standings[2:]}
    assert {name: (int(players[name][0]), players[name][4]) for name in ("Ann", "Bob")} == {
        "Ann": (1, "3"), "Bob": (1, "3")}  # integers, as the screens said: not 3.0, not 0
    assert players["'=Cy"][4] == "0"  # a formula-looking name is neutralised
    header = answers[1]
    rows = [dict(zip(header, row, strict=True)) for row in answers[2:]]
    assert [(r["name"], r["question"], r["question_text"], r["value"], r["answer_text"],
             r["counted"], r["result"], r["points"]) for r in rows] == [
        ("Ann", "0", "Capital of France?", "0", "Paris", "true", "right", "2"),
        ("'=Cy", "0", "Capital of France?", "1", "Lyon", "true", "wrong", "0"),
        ("Ann", "1", "Band of Abbey Road?", "beatles", "beatles", "true", "right", "1"),
        ("Bob", "2", "Crows: a murder?", "false", "false", "true", "wrong", "0"),
    ]
    assert '"""' not in text and '"beatles"' not in text  # texts are not double-encoded
    assert teams[2][:4] == ["1", "1", "Owls", "3"] and teams[2][4] == "Ann; Bob"
    assert live_csv.decode() == text  # /results and `export` are one document


async def test_help_gives_every_option_a_text_its_default_and_the_exit_codes(
        tmp_path: Path) -> None:
    screens = {}
    with trio.fail_after(60):
        for command in (["demo"], ["play"], ["host"], ["export"], ["serve"],
                        ["quiz", "generate"]):
            async with terminal([*command, "--help"], state_dir=tmp_path) as term:
                assert await term.exit_code() == 0
            no_traceback(term)
            screens[" ".join(command)] = " ".join(term.output.split())  # unwrap the lines
    assert "--players PLAYERS simulated players (default: 24)" in screens["demo"]
    assert "--seed SEED random seed" in screens["demo"] and "(default: 7)" in screens["demo"]
    for role in ("play", "host"):
        assert ("--url URL the engine's WebSocket address, ws:// or wss:// (default: the one "
                "the saved place is on, else ws://127.0.0.1:8765/)") in screens[role]
        assert ("exit codes: 0 the quiz ended or you quit, 1 refused by the engine (unknown "
                "code, name taken, removed), 2 bad command line, 3 no engine at --url or the "
                "connection did not come back, 130 Ctrl-C") in screens[role]
        assert "(default: 120.0)" in screens[role]
    assert "one answer per team (default: team)" in screens["host"]
    assert "(in its --quiz-dir, or sample) (default: sample)" in screens["host"]
    assert "--new join anew" in screens["play"]
    assert "(default: csv)" in screens["export"] and "teams (team mode)" in screens["export"]
    assert "is kept unless --force (default: -)" in screens["export"]
    assert ("exit codes: 0 written, 1 no such session or database, or the output file "
            "exists (add --force), 2 bad command line or database URL") in screens["export"]
    # One name for the model: serve's --generator-model is also quiz generate's.
    assert "--generator-model GENERATOR_MODEL" in screens["serve"]
    assert "--model MODEL, --generator-model MODEL" in screens["quiz generate"]

    # Every option of these commands has a help text.
    from pubquiz_engine.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("demo", "play", "host", "export"):
        for action in commands[name]._actions:
            assert action.help, (name, action.option_strings or action.dest)
    generate = commands["quiz"]._subparsers._group_actions[0].choices["generate"]
    assert generate.parse_args(["--generator-model", "m", "--topic", "x"]).model == \
        generate.parse_args(["--model", "m", "--topic", "x"]).model == "m"


async def test_refusals_are_one_line_saying_what_to_do(tmp_path: Path) -> None:
    async def one_line(args: list[str], state_dir: Path, code: int) -> str:
        async with terminal(args, state_dir=state_dir) as term:
            assert await term.exit_code() == code, term.output
        no_traceback(term)
        lines = [line for line in term.output.splitlines() if line.strip()]
        assert len(lines) == 1, term.output
        return lines[0]

    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="team")
            code, url = session.code, address.url
            said = await one_line(["play", code, "--name", "Zed", "--url", url], tmp_path, 1)
            assert "team quiz" in said and "Add --team TEAM" in said
            said = await one_line(["play", "ZZZZZZ", "--name", "Zed", "--url", url], tmp_path,
                                  1)
            assert f"No quiz is running with the join code ZZZZZZ at {url}" in said
            said = await one_line(["host", "--code", code, "--token", "wrong", "--url", url],
                                  tmp_path, 1)
            assert f"does not accept this host token for {code}: check --token" in said

            # A state directory that cannot be written is said before joining: no place is
            # taken that could not be kept.
            not_a_dir = tmp_path / "file"
            not_a_dir.write_text("")
            said = await one_line(["play", code, "--name", "Zed", "--team", "Z", "--url", url],
                                  not_a_dir, 2)
            assert f"Cannot keep your place in {not_a_dir}" in said and "--state-dir" in said
            assert session.game.participants == {}

            # A saved place the engine no longer knows (the quiz went with an engine restart):
            # said, and forgotten.
            place = tmp_path / f"player-{code}.json"
            place.write_text(json.dumps({"role": "player", "url": url, "code": code,
                                         "token": "rt_gone", "name": "Ann", "team": "Owls"}))
            said = await one_line(["play", code], tmp_path, 1)
            assert f"The engine at {url} no longer runs quiz {code}" in said
            assert "the saved place is forgotten" in said and not place.exists()
            # ...and a --url that is not the saved place's engine is told so.
            place.write_text(json.dumps({"role": "player", "url": url, "code": code,
                                         "token": "rt_gone", "name": "Ann"}))
            said = await one_line(["play", code, "--url", "ws://127.0.0.1:1/"], tmp_path, 2)
            assert f"the place this computer keeps in {code} is on {url}" in said


async def test_the_sample_quiz_to_its_end_reads_as_sentences(tmp_path: Path) -> None:
    """The shipped quiz, every round, from a team player's terminal: the wager offer keeps its
    round's title as written, the team's joker is the team's, the natural end is no 'reason'."""
    from pubquiz_engine.game import load_quiz

    sample = Path(__file__).parents[2] / "pubquiz_engine" / "game" / "samples" / "pub_quiz.toml"
    with trio.fail_after(90):
        # The host's script clicks faster than a person: lift the per-connection rate limit.
        async with engine_at(tmp_path, message_rate=1000.0, message_burst=1000) as (
                engine, address):
            session, host_token = engine.create_session(load_quiz(str(sample)), mode="team")
            code, game = session.code, session.game
            async with open_client(address.url) as host, \
                    terminal(["play", code, "--name", "Ann", "--team", "Owls", "--url",
                              address.url], state_dir=tmp_path) as ann:
                await ann.expect(f"Joined {code} as Ann")
                await ann.type("/joker")
                await ann.expect(r"Joker played on round 1 \(General Knowledge\)")
                await host.host(code, host_token)
                await host.request(m.Start)
                # The welcome slide is round 1's first step: no round to default to now.
                await ann.expect("== Welcome to the Red Lion Quiz! ==")
                await ann.type("/wager 1")
                await ann.expect(r"Which round\? Usage: /wager POINTS \[ROUND\] \(rounds count "
                                 r"from 1; a round takes them until it starts\)\.")
                offered = False
                for _ in range(60):  # every slide, question and summary: ~30 steps
                    if game.phase == "finished":
                        break
                    if game.phase == "round_summary" and game.next_round == 3:
                        offered = True
                        await ann.expect(r"Round 4 \(Music: the Wager Round\) takes wagers: "
                                         r"/wager POINTS")
                        await ann.type("/wager 0")
                        await ann.expect(r"You wagered 0 points on round 4 \(Music: the Wager "
                                         r"Round\)\.")
                        # A team-mate who comes in now reads whose joker it is.
                        async with terminal(["play", code, "--name", "Bob", "--team", "Owls",
                                             "--url", address.url],
                                            state_dir=tmp_path / "bob") as bob:
                            await bob.expect(r"Your team's joker is on round 1 \(General "
                                             r"Knowledge\)\.")
                            await bob.type("/quit")
                            assert await bob.exit_code() == 0
                    await host.request(m.Reveal if game.phase == "question_open" else m.Next)
                assert offered
                await ann.expect(r"The quiz has ended\.\n")
                assert await ann.exit_code() == 0
    no_traceback(ann)
    assert not re.search(r"\b[A-Z]\w+\(\w+=", ann.output), ann.output
    assert "(completed)" not in ann.output


async def test_no_standard_input_is_the_end_of_input_not_a_traceback(tmp_path: Path) -> None:
    """``play ... <&-`` (a script, a service without stdin): as Ctrl-D, exit 0 with a line."""
    import os
    import shlex
    import sys

    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            command = shlex.join([sys.executable, "-m", "pubquiz_engine.cli", "play",
                                  session.code, "--name", "Ann", "--url", address.url])
            done = await trio.run_process(
                ["sh", "-c", f"exec {command} <&-"], capture_stdout=True, capture_stderr=True,
                check=False, env={**os.environ, "PUBQUIZ_STATE_DIR": str(tmp_path)})
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    assert "Traceback" not in output and output.strip().startswith("Bye."), output


async def test_export_failures_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    async def one_line(args: list[str], code: int) -> str:
        async with terminal(["export", *args], state_dir=tmp_path) as term:
            assert await term.exit_code() == code, term.output
        no_traceback(term)
        lines = [line for line in term.output.splitlines() if line.strip()]
        assert len(lines) == 1, term.output
        return lines[0]

    with trio.fail_after(60):
        missing = tmp_path / "typo"
        said = await one_line(["ABCD", "--data-dir", str(missing)], 1)
        assert said == (f"No engine database at {missing / 'pubquiz.sqlite3'}: give the "
                        "engine's --data-dir or --database-url.")
        assert not missing.exists()  # reading created nothing
        async with engine_at(tmp_path):
            pass  # an engine's database, with no session in it
        said = await one_line(["nope", "--data-dir", str(tmp_path)], 1)
        assert said.startswith("No session NOPE in sqlite:///") and "check the join code" in said
        said = await one_line(["ABCD", "--database-url", "mysql://x/y"], 2)
        assert "unsupported store URL scheme 'mysql'" in said


async def test_coming_back_to_a_quiz_that_ended_meanwhile(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            code = session.code
            async with terminal(["play", code, "--name", "Ann", "--url", address.url],
                                state_dir=tmp_path) as term:
                await term.expect("Waiting for the quiz master")
                await term.type("/quit")
                assert await term.exit_code() == 0
            async with open_client(address.url) as host:
                await host.host(code, host_token)
                await host.request(m.Start)
                await host.request(m.End)
            # Back (the finished session lingers for its results): the final screen, then the
            # terminal stops and forgets the place, as when it saw the end itself.
            async with terminal(["play", code], state_dir=tmp_path) as term:
                await term.expect(rf"Back in {code} as Ann\.\nTest night: finished, 1 "
                                  r"participant\.\nYou are Ann: 0 points, rank 1\.\n"
                                  r"Standings:\n    1\. Ann +0 points\nThe quiz has ended\.")
                assert await term.exit_code() == 0
            # The quiz master too.
            async with terminal(["host", "--code", code, "--token", host_token, "--url",
                                 address.url], state_dir=tmp_path) as host_term:
                await host_term.expect(r"Test night: finished, 1 participant\.\n(.*\n)*"
                                       r"The quiz has ended\.")
                assert await host_term.exit_code() == 0
            no_traceback(host_term)
    no_traceback(term)
    assert not (tmp_path / f"player-{code}.json").exists()


async def test_removed_by_the_quiz_master_is_one_line_exit_1_and_the_place_forgotten(
        tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            code = session.code
            async with terminal(["play", code, "--name", "Ann", "--url", address.url],
                                state_dir=tmp_path) as term:
                await term.expect("Waiting for the quiz master")
                async with terminal(["host", "--code", code, "--token", host_token, "--url",
                                     address.url], state_dir=tmp_path / "host") as host:
                    await host.expect(f"Hosting {code}")
                    await host.type("kick 1")
                    await host.expect(r"- Ann \(#1\) was removed")
                    assert await term.exit_code() == 1
                    await host.type("players")
                    await host.expect(r"  #1 Ann \[removed\]\n")
                    await host.type("quit")
                    assert await host.exit_code() == 0
                no_traceback(host)
            no_traceback(term)
            assert term.output.strip().endswith(
                "/joker\nThe quiz master removed you from this quiz."), term.output
            assert not (tmp_path / f"player-{code}.json").exists()
