"""/metrics: scraped during a real quiz, the counters agree with what the test did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from httpkit import http_get
from opskit import QUIZ, engine_at
from prometheus_client.parser import text_string_to_metric_families

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import ErrorCode, RemoteError
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.metrics import CONTENT_TYPE, EngineSample, Metrics
from pubquiz_engine.store.writebehind import WriteBehindStats

PLAYERS = 6
LATE = 3  # players who answer again after the question closed


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, headers, body = await http_get(port, "/metrics")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    return _samples(body.decode())


def _get(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
         **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_follow_a_quiz(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path, admin_port=0) as (engine, address):
            assert address.admin_port is not None
            before = await _scrape(address.admin_port)
            assert _get(before, "pubquiz_answers_accepted_total") == 0
            assert _get(before, "pubquiz_sessions") == 0
            assert _get(before, "pubquiz_ready") == 1

            session, host_token = engine.create_session(load_quiz_data(QUIZ, source="test"),
                                                        mode="solo")
            url = address.url
            done = trio.Event()
            async with open_client(url) as host, trio.open_nursery() as nursery:
                await host.host(session.code, host_token)
                players = [await nursery.start(_player, url, session.code, f"P{i}", done)
                           for i in range(PLAYERS)]
                during = await _scrape(address.admin_port)
                assert _get(during, "pubquiz_sessions") == 1
                assert _get(during, "pubquiz_members") == PLAYERS + 1
                assert _get(during, "pubquiz_connections") == PLAYERS + 1
                assert _get(during, "pubquiz_sessions_created_total") == 1

                await host.request(m.Start)
                question = await players[0].next_event(m.Question)
                for i, player in enumerate(players):
                    await player.answer(question.q, i % 3)
                await host.request(m.Close)
                for player in players[:LATE]:
                    with pytest.raises(RemoteError) as late:
                        await player.answer(question.q, 0)
                    assert late.value.code is ErrorCode.QUESTION_CLOSED
                await engine.persister.drain(timeout=10)

                after = await _scrape(address.admin_port)
                done.set()

    # prometheus-client's per-series creation times are left out (issue 20): every name seen
    # is one of ours, none a `*_created` gauge.
    assert not [name for name, _ in after if name.endswith("_created")]
    assert all(name.startswith("pubquiz_") for name, _ in after)
    sent = PLAYERS + LATE
    accepted = _get(after, "pubquiz_answers_accepted_total")
    rejected = sum(v for (name, _), v in after.items()
                   if name == "pubquiz_answers_rejected_total")
    assert accepted + rejected == sent
    assert accepted == PLAYERS
    assert _get(after, "pubquiz_answers_rejected_total", reason="question_closed") == LATE
    assert _get(after, "pubquiz_frame_errors_total", code="question_closed") == LATE
    # Every accepted answer was acked (durable: after its commit), and only those.
    assert _get(after, "pubquiz_ack_latency_seconds_count") == PLAYERS
    assert _get(after, "pubquiz_ack_latency_seconds_bucket", le="+Inf") == PLAYERS
    assert _get(after, "pubquiz_write_behind_records_total") >= PLAYERS
    assert _get(after, "pubquiz_write_behind_depth") == 0
    assert _get(after, "pubquiz_write_behind_batches_total") >= 1
    # In: host + join per player, start, close, the answers; out: at least one reply each.
    assert _get(after, "pubquiz_messages_in_total") >= 1 + PLAYERS + 2 + sent
    assert _get(after, "pubquiz_messages_out_total") >= _get(after, "pubquiz_messages_in_total")
    assert _get(after, "pubquiz_connections_accepted_total") == PLAYERS + 1
    assert _get(after, "pubquiz_lease_events_total", event="fenced") == 0
    assert ("pubquiz_event_loop_lag_seconds_count", frozenset()) in after
    assert _get(after, "pubquiz_process_open_fds") > PLAYERS
    # The GC's collections per generation (in-process engine: whatever this process ran).
    assert _get(after, "pubquiz_gc_collections_total", generation="0") > 0
    assert ("pubquiz_gc_collections_total", frozenset({("generation", "2")})) in after


async def _player(url: str, code: str, name: str, done: trio.Event,
                  *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
    """A player connected until ``done``; the test drives it through the client it gets."""
    async with open_client(url) as client:
        await client.join(code, name)
        task_status.started(client)
        await done.wait()


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.answer_accepted()
    one.answer_rejected("question_closed")
    one.answer_rejected("question_closed")
    one.frame_error("bad_frame")
    one.message_in()
    one.ack_latency(0.003)
    assert one.value("pubquiz_answers_accepted_total") == 1
    assert one.value("pubquiz_answers_rejected_total", reason="question_closed") == 2
    assert one.value("pubquiz_frame_errors_total", code="bad_frame") == 1
    assert one.value("pubquiz_ack_latency_seconds_bucket", le="0.005") == 1
    assert one.value("pubquiz_ack_latency_seconds_bucket", le="0.0025") == 0
    assert two.value("pubquiz_answers_accepted_total") == 0
    assert two.value("pubquiz_messages_in_total") == 0
    text = one.render().decode()
    assert 'pubquiz_answers_rejected_total{reason="question_closed"} 2.0' in text
    # Fixed-label series exist at zero before their first event (alerts see them).
    assert 'pubquiz_snapshot_events_total{event="load_failed"} 0.0' in text
    assert 'pubquiz_lease_events_total{event="taken_over"} 0.0' in text


def test_snapshot_and_lease_stats_are_exposed_when_given() -> None:
    @attrs.frozen
    class Snap:
        pending: int = 2
        in_flight: int = 5
        writes: int = 40
        failures: int = 1
        stale: int = 0
        bytes_written: int = 4096
        redis_up: bool = True

    @attrs.frozen
    class Leases:
        held: int = 3
        overdue: int = 1
        renewals: int = 17
        lost: int = 1
        failures: int = 2
        redis_up: bool = False

    stats = WriteBehindStats(depth=5, in_flight=2, lag_seconds=0.25, last_flush_at=100.0,
                             last_flush_seconds=0.004, batches=9, records=50, failures=0,
                             refused=0, max_queue=1000)

    def sample(**extra: Any) -> EngineSample:
        return EngineSample(sessions=3, members=7, ready=True, stopping=False, transport=None,
                            write_behind=stats, now=103.5, **extra)

    bare = Metrics()
    bare.watch(sample)
    assert bare.value("pubquiz_write_behind_last_flush_age_seconds") == 3.5
    assert bare.value("pubquiz_members") == 7
    assert bare.registry.get_sample_value("pubquiz_leases_held") is None  # without Redis

    metrics = Metrics()
    metrics.watch(lambda: sample(snapshots=Snap(), leases=Leases()))
    assert metrics.value("pubquiz_snapshot_writes_total") == 40
    assert metrics.value("pubquiz_snapshot_pending") == 2
    assert metrics.value("pubquiz_snapshot_in_flight") == 5
    assert metrics.value("pubquiz_snapshot_redis_up") == 1
    assert metrics.value("pubquiz_leases_held") == 3
    assert metrics.value("pubquiz_leases_lost_total") == 1
    assert metrics.value("pubquiz_lease_redis_up") == 0


async def test_metrics_stay_on_the_public_port_without_an_admin_port(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (_engine, address):
            assert address.admin_port is None
            samples = await _scrape(address.port)
            assert _get(samples, "pubquiz_connections") == 0
            assert _get(samples, "pubquiz_http_requests_total") >= 1


def test_no_created_series_for_counters_and_histograms() -> None:
    metrics = Metrics()
    metrics.session_created()
    metrics.ack_latency(0.002)
    text = metrics.render().decode()
    names = {name for name, _ in _samples(text)}
    assert "pubquiz_sessions_created_total" in names  # a counter whose own name says created
    assert "pubquiz_ack_latency_seconds_count" in names
    assert not [n for n in names if n.endswith("_created")], names
    assert "_created " not in text and "_created{" not in text
    # The registry itself still has them (other readers of it are not changed).
    assert metrics.registry.get_sample_value("pubquiz_sessions_created_created") is not None
