"""Instructions the engine spends per answer, counted by callgrind: a figure the machine's load
does not move (issue 18: the 2-core VM's timings swing by a third between runs minutes apart).

Run: ``.venv/bin/python -m bench.answer_path [--players 40] [--rounds 10] [--ack-mode fast]``

The engine runs as its own process (``pubquiz-engine serve``, SQLite, no Redis) under
``valgrind --tool=callgrind`` with instrumentation off; ``--players`` clients (trio-websocket, in
this process, not counted) join one session, the host starts a question, then collection is
switched on (``callgrind_control -i on``) for ``--rounds`` rounds in which every player sends
one answer (a new ``rid``: a change of answer, applied, stored and acked) and waits for its
ack, and off again. ``--plain`` runs the same load without callgrind (to attach a profiler:
the engine's pid is printed). ``--refused`` closes the question first: every answer is then refused
(``question_closed``), the path of the answers that arrive late. Every thread of the engine is
counted (the SQLite writer's too); the kernel's work (system calls) is not. Prints instructions
per answer. To compare builds, run it from inside a checkout of each (``cd`` there: ``-m`` puts
the working directory first on ``sys.path`` and the engine inherits it, so a ``PYTHONPATH`` to
another tree alone still runs this tree's engine).
Repeatable within a few per cent: what varies is how many answers share a scheduler pass.

Only 127.0.0.1; every loop is bounded by ``--players`` and ``--rounds``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from bench.harness.engine import OPERATOR_KEY, engine_process
from bench.harness.quizzes import bench_quiz
from pubquiz_engine.client import Client, open_client
from pubquiz_engine.errors import RemoteError
from pubquiz_engine.protocol import messages as m


class _Callgrind:
    """A core plan whose prefix runs the engine under callgrind, collection off."""

    engine: tuple[int, ...] = (0,)

    def __init__(self, out: Path | None) -> None:
        self.out = out

    def prefix(self, _cores: tuple[int, ...]) -> list[str]:
        if self.out is None:
            return []
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out}", "--dump-instr=no"]


def _control(*args: str) -> None:
    if args[-1] == "-":
        return  # --plain: no callgrind to control
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _total_ir(path: Path) -> int:
    """The instructions of every dump callgrind wrote (``totals:`` of each file)."""
    total = 0
    for name in path.parent.glob(path.name + "*"):
        for line in name.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


@contextlib.asynccontextmanager
async def engine_under_callgrind(name: str, players: int, ack_mode: str, plain: bool
                                 ) -> AsyncIterator[tuple[str, str, Any, Path]]:
    """An engine process under callgrind, collection off (``plain``: no callgrind), with one
    solo session for ``players``: (its URL, its pid for ``_control`` ("-" when ``plain``), the
    ``session_created`` reply, the callgrind output path)."""
    work = Path(tempfile.mkdtemp(prefix=f"pubquiz-{name}-"))
    out = work / "callgrind.out"
    plan: Any = _Callgrind(None if plain else out)
    async with engine_process(plan, work, ack_mode=ack_mode, ready_timeout=600) as engine:
        print(f"engine pid {engine.pid}", flush=True)
        async with open_client(engine.url) as operator:
            created = await operator.create_session(
                OPERATOR_KEY, quiz=bench_quiz(1), mode="solo",
                options={"max_participants": players})
        yield engine.url, "-" if plain else str(engine.pid), created, out


async def main(players: int, rounds: int, ack_mode: str, refused: bool, plain: bool
               ) -> dict[str, Any]:
    async with engine_under_callgrind("answer-path", players, ack_mode, plain) as (
            url, pid, created, out), \
            open_client(url) as host, contextlib.AsyncExitStack() as stack:
        await host.host(created.code, created.host_token)
        clients: list[Client] = []
        for i in range(players):
            client = await stack.enter_async_context(open_client(url))
            clients.append(client)
            await client.join(created.code, f"p{i}")
        await host.request(m.Start)
        q = (await host.next_event(m.Question, timeout=300)).q
        for client in clients:
            await client.next_event(m.Question, timeout=300)
        if refused:
            await host.request(m.Close)  # every answer from now on: question_closed
        _control("-i", "on", pid)
        started = trio.current_time()
        for r in range(rounds):
            async with trio.open_nursery() as nursery:
                for i, client in enumerate(clients):
                    nursery.start_soon(_answer, client, q, (i + r) % 4, refused)
        seconds = trio.current_time() - started
        _control("-i", "off", pid)
        _control("-d", pid)
    answers = players * rounds
    ir = 0 if plain else _total_ir(out)
    return {"players": players, "rounds": rounds, "ack_mode": ack_mode, "refused": refused,
            "answers": answers,
            "instructions": ir, "instructions_per_answer": round(ir / answers),
            "seconds": seconds}


async def _answer(client: Client, q: int, value: int, refused: bool) -> None:
    if refused:
        try:
            await client.answer(q, value)
        except RemoteError as exc:
            assert exc.code == "question_closed", exc
            return
        raise AssertionError("an answer to a closed question was acked")
    ack = await client.answer(q, value)
    assert isinstance(ack, m.AnswerAck), ack


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ack-mode", default="fast", choices=("fast", "durable"))
    parser.add_argument("--plain", action="store_true",
                        help="no callgrind: the same load at full speed (to attach a profiler)")
    parser.add_argument("--refused", action="store_true",
                        help="close the question first: every answer is refused (late)")
    args = parser.parse_args()
    if not 1 <= args.players <= 500 or not 1 <= args.rounds <= 200:
        parser.error("--players 1..500, --rounds 1..200")
    result = trio.run(main, args.players, args.rounds, args.ack_mode, args.refused, args.plain)
    what = "refused (late)" if result["refused"] else result["ack_mode"]
    print(f"{result['answers']:,} answers ({result['players']} players x {result['rounds']} "
          f"rounds, {what}): {result['instructions']:,} instructions, "
          f"{result['instructions_per_answer']:,} per answer; {result['seconds']:.2f} s")


if __name__ == "__main__":
    cli()
