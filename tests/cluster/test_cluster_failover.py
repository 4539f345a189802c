"""Three engine processes behind nginx, for real (issue 17): a quiz in two sessions that nginx
hashes to different nodes, played by thin clients through nginx only; kill -9 of an owner
mid-question and its restart; a rolling restart of all three during a quiz.

What is asserted is what the protocol promises (identity, score, acked answers, the deadline,
at most one redirect, refusals no longer than the lease), never a wall-clock bound; the
times are printed for docs/reliability.md (run with ``-s``). The large variant (300 players)
runs with ``PUBQUIZ_CLUSTER_PLAYERS=300``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
from clusterkit import (
    LEASE_TTL_MS,
    Host,
    Player,
    Reconnect,
    Signal,
    http_get,
    owner_of,
    results_through_nginx,
    right_choice,
    routed_node,
    running_cluster,
    session,
    sessions_on_two_nodes,
    state_on_failure,
    store_at,
    summary,
)

from pubquiz_engine.client import Client
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.failover import registration_ttl_ms

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

#: Players per session in ``make test``; PUBQUIZ_CLUSTER_PLAYERS sets the total (e.g. 300).
PLAYERS = int(os.environ.get("PUBQUIZ_CLUSTER_PLAYERS", "30"))


def test_the_lease_settings_bound_the_wait() -> None:
    """The protocol's bound on a kill -9: a dead owner's registration lapses before its lease
    (so nobody is redirected to it once its lease could be waited out), and a client told
    ``unavailable`` waits at most the lease TTL before the takeover can answer it."""
    for ttl in (300, 3000, 10_000):
        assert registration_ttl_ms(ttl) <= ttl // 2
        # At death the lease has >= 2/3 of its TTL left, the registration <= its own TTL.
        assert registration_ttl_ms(ttl) < 2 * ttl // 3


async def _players(cluster_entry: str, code: str, count: int, prefix: str, acks: Signal,
                   backs: Signal, rng: random.Random) -> list[Player]:
    return [Player(cluster_entry, code, f"{prefix}{i}", random.Random(rng.random()),
                   acks.bump, backs.bump) for i in range(count)]


async def _check_db(postgres_url: str, code: str, players: list[Player]) -> None:
    """Every acked answer is in the database, and every final score there equals a recount
    of the right answers the database holds (and what the player was acked)."""
    async with store_at(postgres_url) as store:
        results = await store.session_results(code)
    stored = {(a.participant_id, a.question, a.request_id): a.value for a in results.answers}
    last: dict[tuple[int, int], tuple[int, int]] = {}
    for a in results.answers:
        key = (a.participant_id, a.question)
        if key not in last or a.seq > last[key][0]:
            last[key] = (a.seq, a.value)
    recount: dict[int, int] = {}
    for (pid, q), (_seq, value) in last.items():
        recount[pid] = recount.get(pid, 0) + (value == right_choice(q))
    standings = {row.participant_id: row.score for row in results.standings}
    for p in players:
        assert p.participant is not None
        for q, (rid, value) in p.acked.items():
            assert stored.get((p.participant, q, rid)) == value, (p.name, q, rid)
        expected = sum(value == right_choice(q) for q, (_rid, value) in p.acked.items())
        assert standings[p.participant] == recount.get(p.participant, 0) == expected, p.name


async def _drive(host: Host, question: int) -> None:
    """Close and reveal the open question ``question``."""
    await host.command(m.Close, lambda s: s.get("phase") != "question")
    await host.command(m.Reveal, lambda s: s.get("phase") == "revealed")
    del question


async def _next(host: Host, question: int) -> None:
    """Open question ``question`` (start or next)."""
    def opened(state: dict[str, object]) -> bool:
        q = state.get("question")
        return isinstance(q, dict) and q.get("q") == question

    await host.command(m.Start if question == 0 else m.Next, opened)


async def test_kill9_of_an_owner_mid_question_then_its_restart(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    per_session = max(PLAYERS // 2, 2)
    rng = random.Random(17)
    watched: list[Player] = []  # reported if the test fails
    with trio.fail_after(240):
        async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix) as cluster, \
                trio.open_nursery() as players_nursery, contextlib.AsyncExitStack() as stack, \
                state_on_failure(cluster, watched):
            (code_a, token_a), (code_b, token_b) = await sessions_on_two_nodes(cluster, 3)
            assert await routed_node(cluster, code_a) != await routed_node(cluster, code_b)
            acks, backs = Signal(), Signal()
            team_a = await _players(cluster.entry_url, code_a, per_session, "a", acks, backs,
                                    rng)
            team_b = await _players(cluster.entry_url, code_b, per_session, "b", acks, backs,
                                    rng)
            watched.extend(team_a + team_b)
            hosts = [Host(cluster.entry_url, code_a, token_a),
                     Host(cluster.entry_url, code_b, token_b)]
            for host in hosts:
                await host.attach(stack)
            for p in team_a + team_b:
                players_nursery.start_soon(p.run)
            await backs.wait_for(2 * per_session, timeout=60)
            # Every join reached its session's owner through nginx in at most one redirect.
            assert all(p.joins.redirects <= 1 and p.joins.refusals == 0
                       for p in team_a + team_b)

            for host in hosts:
                await _next(host, 0)
            await acks.wait_for(2 * per_session, timeout=60)

            # kill -9 of session A's owner, mid-question (every player has an acked answer).
            owner = await owner_of(redis_url, redis_prefix, code_a)
            assert owner is not None
            victim = cluster.node(owner)
            await cluster.signal_node(victim, signal.SIGKILL)
            with trio.fail_after(60):
                while not all(p.reconnects and p.reconnects[-1].back_at for p in team_a):
                    await backs.event.wait()
            resumed: list[Reconnect] = [p.reconnects[-1] for p in team_a]
            for p, record in zip(team_a, resumed, strict=True):
                assert record.participant == p.participant and record.name == p.name
                assert record.score == 0  # nothing revealed yet
                assert record.question == 0
                assert record.answer == p.acked[0][1]  # the acked answer survived
                assert record.deadline_ms == p.deadlines[0]  # the question kept its deadline
                # Refused only while the dead owner's lease ran: never longer than its TTL.
                assert all(0 <= ms <= LEASE_TTL_MS for ms in record.retry_after_ms)
                assert record.refusals <= 2, record
            print(f"\nkill -9 of {owner} (lease TTL {LEASE_TTL_MS} ms): time disconnected "
                  f"{summary([r.seconds for r in resumed])}; redirects "
                  f"{sum(r.redirects for r in resumed)}, refusals "
                  f"{sum(r.refusals for r in resumed)}, failed connects "
                  f"{sum(r.connect_failures for r in resumed)} for {len(resumed)} players")

            # The killed node restarts: joins and resumes for session A reach the new owner
            # in at most one redirect and are never refused.
            await cluster.start_node(victim)
            new_owner = await owner_of(redis_url, redis_prefix, code_a)
            assert new_owner is not None and new_owner != owner
            newcomer = Reconnect(lost_at=trio.current_time())
            token: list[str] = []

            async def join(client: Client) -> m.Welcome:
                welcome = await client.join(code_a, "Newcomer")
                assert welcome.token is not None
                token.append(welcome.token)
                return welcome

            async with session(cluster.entry_url, code_a, join, newcomer):
                pass
            again = Reconnect(lost_at=trio.current_time())

            async def resume(client: Client) -> m.Welcome:
                return await client.resume(token[0], 0)

            async with session(cluster.entry_url, code_a, resume, again):
                pass
            watch = Reconnect(lost_at=trio.current_time())

            async def display(client: Client) -> m.Welcome:
                return await client.watch(code_a)

            async with session(cluster.entry_url, code_a, display, watch):
                pass
            for record in (newcomer, again, watch):
                assert record.redirects <= 1 and record.refusals == 0, record
            # The host's results download reaches the new owner too (one redirect at most).
            hops, results = await results_through_nginx(cluster, code_a, token_a)
            assert hops <= 1
            assert {a["participant_id"] for a in results["answers"]} == {
                p.participant for p in team_a}
            other = next(n for n in cluster.nodes if n.name != new_owner and n.alive)
            status, headers, _body = await http_get(
                cluster, f"/ws/node/{other.name}/results?code={code_a}&format=json",
                {"Authorization": f"Bearer {token_a}"})
            assert status == 307
            assert urlsplit(headers["location"]).path == f"/ws/node/{new_owner}/results"

            # The quiz goes on to its end on both sessions.
            for host in hosts:
                await _drive(host, 0)
            for q in (1, 2):
                target = acks.count + 2 * per_session
                for host in hosts:
                    await _next(host, q)
                await acks.wait_for(target, timeout=60)
                for host in hosts:
                    await _drive(host, q)
            for host in hosts:
                await host.command(m.End, lambda s: s.get("phase") == "finished")
            with trio.fail_after(60):
                for p in team_a + team_b:
                    await p.ended.wait()
            players_nursery.cancel_scope.cancel()
        await _check_db(postgres_url, code_a, team_a)
        await _check_db(postgres_url, code_b, team_b)


async def test_rolling_restart_of_all_three_during_a_quiz(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    per_session = max(PLAYERS // 2, 2)
    rng = random.Random(24)
    watched: list[Player] = []  # reported if the test fails
    with trio.fail_after(300):
        async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix) as cluster, \
                trio.open_nursery() as players_nursery, contextlib.AsyncExitStack() as stack, \
                state_on_failure(cluster, watched):
            (code_a, token_a), (code_b, token_b) = await sessions_on_two_nodes(cluster, 4)
            acks, backs = Signal(), Signal()
            team_a = await _players(cluster.entry_url, code_a, per_session, "a", acks, backs,
                                    rng)
            team_b = await _players(cluster.entry_url, code_b, per_session, "b", acks, backs,
                                    rng)
            everyone = team_a + team_b
            watched.extend(everyone)
            hosts = [Host(cluster.entry_url, code_a, token_a),
                     Host(cluster.entry_url, code_b, token_b)]
            for host in hosts:
                await host.attach(stack)
            for p in everyone:
                players_nursery.start_soon(p.run)
            await backs.wait_for(len(everyone), timeout=120)

            for q, node in enumerate(cluster.nodes):
                target = acks.count + len(everyone)
                for host in hosts:
                    await _next(host, q)
                await acks.wait_for(target, timeout=120)
                # Mid-question: SIGTERM, wait for the exit, start, wait until ready.
                owners = {code: await owner_of(redis_url, redis_prefix, code)
                          for code in (code_a, code_b)}
                moved = [p for p in everyone if owners[p.code] == node.name]
                counts = {p.name: len(p.reconnects) for p in moved}
                await cluster.restart_node(node)
                with trio.fail_after(120):
                    while not all(len(p.reconnects) > counts[p.name]
                                  and p.reconnects[-1].back_at for p in moved):
                        await backs.event.wait()
                for host in hosts:
                    await _drive(host, q)
            target = acks.count + len(everyone)
            for host in hosts:
                await _next(host, 3)
            await acks.wait_for(target, timeout=120)
            for host in hosts:
                await _drive(host, 3)
                await host.command(m.End, lambda s: s.get("phase") == "finished")
            with trio.fail_after(60):
                for p in everyone:
                    await p.ended.wait()
            players_nursery.cancel_scope.cancel()
        records = [r for p in everyone for r in p.reconnects]
        away: dict[str, float] = {p.name: sum(r.seconds for r in p.reconnects)
                                  for p in everyone}
        print(f"\nrolling restart of 3 engines, {len(everyone)} players in 2 sessions: "
              f"{len(records)} reconnects; time disconnected per reconnect "
              f"{summary([r.seconds for r in records])}; per player "
              f"{summary(list(away.values()))}; redirects "
              f"{sum(r.redirects for r in records)}, refusals "
              f"{sum(r.refusals for r in records)}, failed connects "
              f"{sum(r.connect_failures for r in records)}")
        # Nobody lost an acked answer, every final score is the database's recount.
        assert all(len(p.acked) == 4 for p in everyone)
        await _check_db(postgres_url, code_a, team_a)
        await _check_db(postgres_url, code_b, team_b)


async def test_a_changed_instance_list_converges_in_one_redirect(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    """nginx reloaded with another ring (the node a session's code hashed to drained, then
    the owner drained too): players already in stay, and new joins, resumes and displays
    reach the owner in at most one redirect, never refused."""
    rng = random.Random(5)
    with trio.fail_after(120):
        async with running_cluster(tmp_path, postgres_url, redis_url, redis_prefix) as cluster, \
                trio.open_nursery() as players_nursery:
            (code, _token), _other = await sessions_on_two_nodes(cluster, 2)
            acks, backs = Signal(), Signal()
            team = await _players(cluster.entry_url, code, 4, "p", acks, backs, rng)
            for p in team:
                players_nursery.start_soon(p.run)
            await backs.wait_for(len(team), timeout=60)
            owner = await owner_of(redis_url, redis_prefix, code)
            routed = await routed_node(cluster, code)
            names = [n.name for n in cluster.nodes]
            names_used = iter(range(1000))
            token: list[str] = []

            async def join(client: Client) -> m.Welcome:
                welcome = await client.join(code, f"Late{next(names_used)}")
                assert welcome.token is not None
                token.append(welcome.token)
                return welcome

            async def resume(client: Client) -> m.Welcome:
                return await client.resume(token[-1], 0)

            async def display(client: Client) -> m.Welcome:
                return await client.watch(code)

            for drained in ({routed}, {routed, owner}):
                await cluster.reload_nginx([n for n in names if n not in drained])
                assert await routed_node(cluster, code) not in drained
                for identify in (join, resume, display):
                    record = Reconnect(lost_at=trio.current_time())
                    async with session(cluster.entry_url, code, identify, record):
                        pass
                    assert record.redirects <= 1 and record.refusals == 0, record
                    assert record.connect_failures == 0, record
                assert await owner_of(redis_url, redis_prefix, code) == owner  # nothing moved
            # The players connected before the reloads never lost their connection.
            assert all(p.reconnects == [] for p in team)
            players_nursery.cancel_scope.cancel()
