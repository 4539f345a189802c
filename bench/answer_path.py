"""Instructions the engine spends per answer, counted by callgrind: a figure the machine's load
does not move (issue 18: the 2-core VM's timings swing by a third between runs minutes apart).

Run: ``.venv/bin/python -m bench.answer_path [--players 40] [--rounds 10] [--ack-mode fast]``

The engine runs as its own process (``pubquiz-engine serve``, SQLite, no Redis) under
``valgrind --tool=callgrind`` with collection off; ``--players`` clients (trio-websocket, in this
process, not counted) join one session, the host starts a question, then collection is switched
on (``callgrind_control -i on``) for ``--rounds`` rounds in which every player sends one answer
(a new ``rid``: a change of answer, applied, stored and acked) and waits for its ack, and off
again. Every thread of the engine is counted (the SQLite writer's too). Prints instructions
per answer, and the same per round for comparing builds: run it from a checkout of each build
(``PYTHONPATH`` at that tree) and compare. Deterministic up to the batching of a run (how many
answers share a scheduler pass), which the counts per pass printed beside it show.

Only 127.0.0.1; every loop is bounded by ``--players`` and ``--rounds``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import trio

from bench.harness.engine import OPERATOR_KEY, engine_process
from bench.harness.quizzes import bench_quiz
from pubquiz_engine.client import Client, open_client
from pubquiz_engine.protocol import messages as m


class _Callgrind:
    """A core plan whose prefix runs the engine under callgrind, collection off."""

    engine: tuple[int, ...] = (0,)

    def __init__(self, out: Path) -> None:
        self.out = out

    def prefix(self, _cores: tuple[int, ...]) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out}", "--dump-instr=no"]


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _total_ir(path: Path) -> int:
    """The instructions of every dump callgrind wrote (``totals:`` of each file)."""
    total = 0
    for name in path.parent.glob(path.name + "*"):
        for line in name.read_text().splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


async def main(players: int, rounds: int, ack_mode: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pubquiz-answer-path-"))
    out = work / "callgrind.out"
    plan: Any = _Callgrind(out)
    async with engine_process(plan, work, ack_mode=ack_mode, ready_timeout=600) as engine:
        pid = str(engine.pid)
        url = engine.url
        async with open_client(url) as operator:
            created = await operator.create_session(
                OPERATOR_KEY, quiz=bench_quiz(1), mode="solo",
                options={"max_participants": players})
        async with open_client(url) as host, contextlib.AsyncExitStack() as stack:
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
            _control("-i", "on", pid)
            for r in range(rounds):
                async with trio.open_nursery() as nursery:
                    for i, client in enumerate(clients):
                        nursery.start_soon(_answer, client, q, (i + r) % 4)
            _control("-i", "off", pid)
            _control("-d", pid)
    answers = players * rounds
    ir = _total_ir(out)
    return {"players": players, "rounds": rounds, "ack_mode": ack_mode, "answers": answers,
            "instructions": ir, "instructions_per_answer": round(ir / answers)}


async def _answer(client: Client, q: int, value: int) -> None:
    ack = await client.answer(q, value)
    assert isinstance(ack, m.AnswerAck), ack


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ack-mode", default="fast", choices=("fast", "durable"))
    args = parser.parse_args()
    if not 1 <= args.players <= 500 or not 1 <= args.rounds <= 200:
        parser.error("--players 1..500, --rounds 1..200")
    result = trio.run(main, args.players, args.rounds, args.ack_mode)
    print(f"{result['answers']:,} answers ({result['players']} players x {result['rounds']} "
          f"rounds, {result['ack_mode']}): {result['instructions']:,} instructions, "
          f"{result['instructions_per_answer']:,} per answer")


if __name__ == "__main__":
    cli()
