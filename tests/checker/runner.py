"""One seeded run of the checker, from the seed to the verdict.

``await run(config, ...)``: draw the quiz, the fault schedule and every client's random stream
from ``config.seed``; start nodes ``a`` and ``b``; create a solo session; let the players and
the host play while the nemesis injects the scheduled faults; stop the engines gracefully;
read what PostgreSQL holds; check the properties ``config.props``. The ``RunReport`` holds the
figures (operations, faults) and the anomalies, and renders them with the seed and the
command that repeats the run.

Randomness: ``random.Random`` instances derived from the seed only. The interleaving of real
processes is not reproducible, so a seed names a workload and a schedule, not a trace: the
printed history is the trace.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import trio

from checker.cluster import OPERATOR_KEY, Cluster, Injected, schedule
from checker.history import Anomaly, History
from checker.properties import PROPERTIES, Facts, LogRow, StoredAnswer, answer_tries, check_all
from checker.workload import Client, Host, Link, Lost, Player


@attrs.frozen
class RunConfig:
    seed: int
    families: tuple[str, ...] = ()
    faults: int = 0
    players: int = 6
    questions: int = 3
    time_limit: float = 3.0
    ack_mode: str = "durable"
    #: Players restart their rid counter on a reload (as the clients of today's main do).
    rid_restart: bool = False
    lease_ttl_ms: int = 1500
    props: tuple[str, ...] = tuple(PROPERTIES)
    max_ops: int = 150
    #: Hard bound of the whole run, seconds.
    budget: float = 120.0

    def command(self) -> str:
        """The command that repeats this run."""
        parts = [f"python -m bench.checker --seed {self.seed}"]
        if self.families:
            parts.append(f"--families {','.join(self.families)} --faults {self.faults}")
        parts.append(f"--players {self.players} --questions {self.questions}"
                     f" --ack-mode {self.ack_mode}")
        if self.rid_restart:
            parts.append("--rid-restart")
        return " ".join(parts)


@attrs.define
class RunReport:
    config: RunConfig
    faults: list[Injected]
    histories: list[History]
    anomalies: list[Anomaly]
    seconds: float
    exits: dict[str, Any]
    stored: int

    def operations(self) -> int:
        """Requests the clients sent (joins, resumes, answers, host commands)."""
        return sum(1 for h in self.histories for e in h.entries if e.kind == "out")

    def takeovers(self) -> int:
        """Epoch changes the clients saw: each new epoch in a ``welcome`` is one takeover."""
        epochs = {e.frame.get("epoch") for h in self.histories for e in h.entries
                  if e.kind == "in" and e.frame.get("t") == "welcome"}
        epochs.discard(None)
        return max(0, len(epochs) - 1)

    def answers(self) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        for history in self.histories:
            for t in answer_tries(history):
                outcomes[t.outcome] += 1
        return outcomes

    def summary(self) -> str:
        c = self.config
        a = self.answers()
        faults = ", ".join(f"{f.at:.1f}s {f.family} {f.node}"
                           + (f" ({f.note})" if f.note != "owner" else "")
                           for f in self.faults) or "none"
        by_prop = Counter(x.prop for x in self.anomalies)
        return (f"seed {c.seed} [{','.join(c.families) or 'no faults'}; {c.ack_mode}; "
                f"{c.players} players; {c.questions} questions"
                f"{'; rid restart' if c.rid_restart else ''}]: {self.seconds:.1f} s, "
                f"{self.operations()} requests, answers {a['ack']} acked / {a['refused']} "
                f"refused / {a['unknown']} unanswered, {self.stored} stored; faults: {faults}; "
                f"takeovers: {self.takeovers()}; "
                f"anomalies: {dict(by_prop) or 0}")

    def render(self, per_prop: int = 2) -> str:
        lines = [self.summary()]
        if self.anomalies:
            lines.append(f"repeat with: {self.config.command()}")
        shown: Counter[str] = Counter()
        for anomaly in self.anomalies:
            shown[anomaly.prop] += 1
            if shown[anomaly.prop] <= per_prop:
                lines.append(anomaly.render())
        return "\n".join(lines)


def make_quiz(rng: random.Random, questions: int, time_limit: float
              ) -> tuple[dict[str, Any], dict[int, int], dict[int, int]]:
    """A one-round quiz of single-choice questions; the right choice and points of each."""
    items = []
    correct: dict[int, int] = {}
    points: dict[int, int] = {}
    for q in range(questions):
        choices = [f"choice {q}.{i}" for i in range(4)]
        right = rng.randrange(4)
        correct[q] = right
        points[q] = rng.randint(1, 5)
        items.append({"kind": "single", "prompt": f"Question {q}?", "choices": choices,
                      "answer": choices[right], "time_limit": time_limit, "points": points[q]})
    quiz = {"format": 1, "title": "Checker night", "rounds": [{"title": "R", "items": items}]}
    return quiz, correct, points


async def _create(cluster: Cluster, quiz: dict[str, Any], started: float) -> tuple[str, str]:
    """Create the session on a live node (bounded retries); its code and host token."""
    operator = Client("op", random.Random(0), cluster.urls, started)
    created: dict[str, Any] = {}

    async def body(link: Link) -> None:
        reply = await link.request({"t": "create_session", "rid": operator.rid(),
                                    "key": OPERATOR_KEY, "quiz_path": None, "quiz": quiz,
                                    "mode": "solo", "options": None}, timeout=10)
        if reply.get("t") == "session_created":
            created.update(reply)

    for attempt in range(20):
        await operator.over_connection(body)
        if created:
            return str(created["code"]), str(created["host_token"])
        await operator.backoff(attempt)
    raise AssertionError("the session could not be created:\n"
                         + operator.history.show(operator.history.entries))


def _read_facts(postgres_url: str, code: str) -> tuple[list[StoredAnswer], dict[int, LogRow],
                                                        dict[int, float], str]:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        answers = [StoredAnswer(int(p), int(r), int(q), v, int(s), int(e)) for p, r, q, v, s, e
                   in conn.execute(
                       "SELECT participant_id, request_id, question, value, seq, epoch"
                       " FROM answers WHERE session_code = %s", (code,)).fetchall()]
        events = {int(s): LogRow(str(t), dict(p), int(e)) for s, t, p, e in conn.execute(
            "SELECT seq, type, payload, epoch FROM events WHERE session_code = %s",
            (code,)).fetchall()}
        standings = {int(p): float(score) for p, score in conn.execute(
            "SELECT p.participant_id, COALESCE(s.score, 0) FROM participants p"
            " LEFT JOIN participant_scores s ON s.session_code = p.session_code"
            " AND s.participant_id = p.participant_id WHERE p.session_code = %s",
            (code,)).fetchall()}
        row = conn.execute("SELECT status, epoch, owner_node FROM quiz_sessions WHERE code = %s",
                           (code,)).fetchone()
    session = "no session row" if row is None else (
        f"session row: status {row[0]}, epoch {row[1]}, owner {row[2]}")
    return answers, events, standings, session


async def run(config: RunConfig, *, postgres_url: str, redis_url: str, prefix: str,
              tmp: Path) -> RunReport:
    """One run (see the module docstring). Raises only for a broken test set-up (an engine
    that cannot start, a session that cannot be created)."""
    rng = random.Random(config.seed)
    quiz, correct, points = make_quiz(rng, config.questions, config.time_limit)
    gap = config.lease_ttl_ms / 1000 * 2 + 1.0
    settle = config.lease_ttl_ms / 1000 + 1.0
    faults = schedule(random.Random(f"{config.seed}:nemesis"), config.families, config.faults,
                      start=0.5, gap=gap)
    started = trio.current_time()
    injected: list[Injected] = []
    players: list[Player] = []
    host: Host | None = None
    code = ""
    exits: dict[str, Any] = {}
    prefix = f"{prefix}{config.seed}:"
    async with trio.open_nursery() as nursery:
        cluster = Cluster(tmp=tmp / f"seed{config.seed}", postgres_url=postgres_url,
                          redis_url=redis_url, prefix=prefix, ack_mode=config.ack_mode,
                          lease_ttl_ms=config.lease_ttl_ms, nursery=nursery)
        try:
            with trio.move_on_after(config.budget) as budget:
                await cluster.add_nodes()
                code, host_token = await _create(cluster, quiz, started)
                done = trio.Event()
                may_finish = trio.Event()
                players = [Player(f"p{i}", random.Random(f"{config.seed}:p{i}"), cluster.urls,
                                  started, code=code, choices=4, rid_restart=config.rid_restart,
                                  done=done, max_ops=config.max_ops)
                           for i in range(config.players)]

                async def ready() -> None:
                    with trio.move_on_after(30):
                        for player in players:
                            await player.joined.wait()

                host = Host(random.Random(f"{config.seed}:host"), cluster.urls, started,
                            code=code, token=host_token, time_limit=config.time_limit,
                            last_q=config.questions - 1, ready=ready, may_finish=may_finish)

                async def nemesis() -> None:
                    assert host is not None
                    try:
                        await host.quiz_started.wait()
                        quiz_at = trio.current_time()
                        nemesis_rng = random.Random(f"{config.seed}:targets")
                        healed = quiz_at
                        for fault in faults:
                            # The schedule; and one fault at a time: the next one starts a
                            # lease and a second after the last was healed (so that, say, a
                            # database cut never lands on a takeover still under way: that
                            # combination is its own family of anomaly, not this one's).
                            await trio.sleep_until(max(quiz_at + fault.at, healed + settle))
                            at = trio.current_time() - started
                            injected.append(await cluster.inject(fault, code, nemesis_rng, at))
                            healed = trio.current_time()
                    finally:
                        may_finish.set()

                async def drive() -> None:
                    assert host is not None
                    try:
                        await host.run()
                    finally:
                        done.set()

                async with trio.open_nursery() as play:
                    for player in players:
                        play.start_soon(player.run)
                    play.start_soon(drive)
                    play.start_soon(nemesis)
        finally:
            with trio.CancelScope(shield=True):
                exits = await cluster.stop()
                await cluster.kill_all()
            nursery.cancel_scope.cancel()
    seconds = trio.current_time() - started
    histories = [p.history for p in players] + ([host.history] if host is not None else [])
    answers, events, standings, session = await trio.to_thread.run_sync(
        _read_facts, postgres_url, code)
    facts = Facts(tuple(answers), events, standings, correct, points)
    anomalies = check_all(histories, facts, config.props)
    if "completes" in config.props:
        if budget.cancelled_caught:
            anomalies.append(Anomaly("completes", f"the run hit its {config.budget:g} s bound"))
        if host is None or not host.finished:
            tail = host.history.entries[-8:] if host is not None else []
            anomalies.append(Anomaly("completes", "the host never saw the quiz finish", "host",
                                     tuple(tail)))
        warnings = "\n".join(f"{node.name}: {line[:300]}" for node in cluster.nodes
                             for line in [x for x in node.output
                                          if '"level": "warning"' in x
                                          or '"level": "error"' in x][-4:])
        session = session + ("\nlast engine warnings:\n" + warnings if warnings else "")
        for player in players:
            if not player.resumed_at_end:
                anomalies.append(Anomaly(
                    "completes", f"{player.history.client} did not resume at the end "
                    f"({player.gave_up or 'no reason'})", player.history.client,
                    tuple(player.history.entries[-6:]), detail=session))
        for name, exit_code in exits.items():
            if exit_code != 0:
                anomalies.append(Anomaly("completes", f"engine {name} ended with {exit_code} "
                                         "on the final SIGTERM"))
    return RunReport(config, injected, histories, anomalies, seconds, exits, len(answers))


__all__ = ["Lost", "RunConfig", "RunReport", "make_quiz", "run"]
