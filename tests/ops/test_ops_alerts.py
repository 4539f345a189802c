"""Every alert in docs/operations.md section 8 can fire: each series its rule reads exists in a
real run and moves when its cause happens (issue 17 point 3).

One engine on PostgreSQL and Redis, each reached through a ``FaultProxy`` so that the test can
cut one path, scraped over HTTP on its admin port as Prometheus would. The rules are read from
the document itself, so that a renamed series or label fails here. ``PubquizSlowConsumers``'
counter is moved by ``tests/server/test_slow_member.py`` (the same transport statistic);
here it must exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis
import trio
from httpkit import http_get
from opskit import QUIZ, engine_at
from prometheus_client.parser import text_string_to_metric_families
from proxykit import FaultProxy

from pubquiz_engine.client import ClientClosed, open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def alert_rules() -> dict[str, str]:
    """alert name -> expr, from the YAML block of docs/operations.md section 8."""
    text = DOC.read_text()
    return dict(re.findall(r"- alert: (\w+)\n\s+expr: (.+)", text))


def _series(expr: str) -> set[str]:
    """The pubquiz_* (and process) series an expression reads."""
    return set(re.findall(r"\b(pubquiz_\w+)", expr))


def _samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def _scrape(port: int) -> Samples:
    status, _headers, body = await http_get(port, "/metrics")
    assert status == 200
    return _samples(body.decode())


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


async def _scrape_until(port: int, check: object, *, timeout: float = 20) -> Samples:
    """Scrape until ``check(samples)`` holds. Polling on purpose: a scrape is how Prometheus
    sees the engine, and these series have no event to wait on; the deadline bounds it."""
    assert callable(check)
    with trio.fail_after(timeout):
        while True:
            samples = await _scrape(port)
            if check(samples):
                return samples
            await trio.sleep(0.1)


def test_the_documented_rules_read_series_the_engine_names() -> None:
    rules = alert_rules()
    assert set(rules) == {
        "PubquizDown", "PubquizAckLatencyHigh", "PubquizWriteBehindLagging",
        "PubquizWriteBehindNearlyFull", "PubquizDatabaseFailing", "PubquizEventLoopLag",
        "PubquizSlowConsumers", "PubquizFileDescriptorsNearLimit", "PubquizFenced",
        "PubquizRedisDown", "PubquizFrameErrorsHigh"}


async def test_every_alert_series_exists_and_moves(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    rules = alert_rules()
    needed = set().union(*(_series(expr) for expr in rules.values()))
    pg, rd = FaultProxy.for_url(postgres_url), FaultProxy.for_url(redis_url)
    with trio.fail_after(90):
        async with trio.open_nursery() as proxies:
            await proxies.start(pg.run)
            await proxies.start(rd.run)
            async with engine_at(tmp_path, admin_port=0, database_url=pg.url_for(postgres_url),
                                 redis_url=rd.url_for(redis_url), redis_prefix=redis_prefix,
                                 lease_ttl_ms=1500, snapshot_interval=0.1,
                                 snapshot_wait=0.5) as (engine, address):
                admin = address.admin_port
                assert admin is not None
                session, token = await engine.open_session(load_quiz_data(QUIZ), mode="solo")
                # PubquizEventLoopLag: the loop-lag histogram samples every 100 ms.
                start = await _scrape_until(
                    admin, lambda s: _get(s, "pubquiz_event_loop_lag_seconds_count") >= 2)
                # Every series every rule reads exists (histograms as their _bucket / _count).
                names = _names(start)
                for name in needed:
                    assert name in names or f"{name}_bucket" in names, name
                assert _get(start, "pubquiz_lease_redis_up") == 1
                assert _get(start, "pubquiz_snapshot_redis_up") == 1
                assert _get(start, "pubquiz_leases_held") == 1
                assert ("pubquiz_closed_slow_consumer_total", frozenset()) in start
                async with open_client(address.url) as host, open_client(address.url) as ann:
                    await host.host(session.code, token)
                    await ann.join(session.code, "Ann")
                    await host.request(m.Start)
                    question = await ann.next_event(m.Question)
                    await ann.answer(question.q, 0)
                    # PubquizAckLatencyHigh: the ack latency histogram counts the ack.
                    # PubquizFileDescriptorsNearLimit: open descriptors follow connections.
                    now = await _scrape(admin)
                    assert _get(now, "pubquiz_ack_latency_seconds_count") == 1
                    assert _get(now, "pubquiz_process_open_fds") > _get(
                        start, "pubquiz_process_open_fds")
                    assert _get(now, "pubquiz_process_max_fds") > 0
                    # PubquizFrameErrorsHigh: undecodable frames are counted by code.
                    await ann.send_raw(b"\xc1")
                    await _scrape_until(admin, lambda s: _get(
                        s, "pubquiz_frame_errors_total", code="malformed_frame") == 1)

                    # PubquizWriteBehindLagging / NearlyFull / DatabaseFailing: the database
                    # path is cut while an answer waits for its commit.
                    pg.cut()
                    async with trio.open_nursery() as answering:
                        answering.start_soon(ann.answer, question.q, 1)
                        cut = await _scrape_until(admin, lambda s: (
                            _get(s, "pubquiz_write_behind_failures_total") >= 1
                            and _get(s, "pubquiz_write_behind_depth") >= 1
                            and _get(s, "pubquiz_write_behind_lag_seconds") > 0))
                        assert _get(cut, "pubquiz_write_behind_max_queue") > 0
                        pg.restore()  # the answer commits and is acked
                    healed = await _scrape_until(
                        admin, lambda s: _get(s, "pubquiz_write_behind_depth") == 0)
                    assert _get(healed, "pubquiz_write_behind_lag_seconds") == 0

                    # PubquizRedisDown: renewals and snapshot writes fail while Redis is cut.
                    rd.cut()
                    # A phase change: an urgent snapshot. Its `ok` is held (output commit)
                    # until a snapshot covers it, so it is answered once Redis is back.
                    async with trio.open_nursery() as closing:
                        closing.start_soon(host.request, m.Close)
                        down = await _scrape_until(admin, lambda s: (
                            _get(s, "pubquiz_lease_redis_up") == 0
                            and _get(s, "pubquiz_snapshot_redis_up") == 0))
                        assert _get(down, "pubquiz_lease_failures_total") >= 1
                        # /health says the same (DESIGN section 8): leases held, renewals failed.
                        status, _headers, body = await http_get(admin, "/health")
                        health = json.loads(body)
                        assert status == 200
                        assert health["leases"]["held"] == 1
                        assert health["leases"]["renewals_failed"] >= 1
                        assert health["leases"]["redis_up"] is False
                        assert health["snapshots"]["redis_up"] is False
                        assert health["snapshots"]["lag_events"] >= 1  # the close is not stored
                        assert health["node"]["id"] == engine.coord.node  # type: ignore[union-attr]
                        rd.restore()
                    await _scrape_until(admin, lambda s: (
                        _get(s, "pubquiz_lease_redis_up") == 1
                        and _get(s, "pubquiz_snapshot_redis_up") == 1))

                    # PubquizFenced: another node took the session (its epoch went up): the
                    # next snapshot write is refused for a stale epoch.
                    client = redis.Redis.from_url(redis_url)
                    try:
                        client.incr(f"{redis_prefix}epoch:{{{session.code}}}")
                    finally:
                        client.close()
                    # Output commit: the reveal waits for a snapshot that is refused, so no
                    # `ok` comes; the fenced session closes its clients with 4104.
                    with pytest.raises(ClientClosed):
                        await host.request(m.Reveal)
                    await _scrape_until(admin, lambda s: _get(
                        s, "pubquiz_lease_events_total", event="fenced") >= 1)
            # PubquizDown: a stopped engine answers no scrape (``up`` is Prometheus's).
            with pytest.raises(OSError):
                await http_get(admin, "/metrics")
            proxies.cancel_scope.cancel()
