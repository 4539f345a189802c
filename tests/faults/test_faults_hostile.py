"""Hostile clients against a live engine (reliability rows 11 to 14), for what
``tests/server/test_limits.py`` and ``test_transport.py`` leave open.

- 10,000 join-code guesses from one address: throttled by the per-address join limiter; a
  refused guess says nothing about the code (a live and a dead code get byte-identical errors,
  an ended and a never-existing code too, a wrong secret and an unknown session too); another
  address joins meanwhile.
- A client sending 1,000 messages/s: throttled, then closed (1008); another client's ping
  round trip measured before and during the flood (the engine is its own process).
- Tampering: host commands from a player and a display, another session's host token, an empty
  one, another session's resume token, answers for a future, unknown or closed question, after
  the deadline, twice, out of range, naming another player: each refused with its code; only
  the legitimate answers are stored.
- Names over the wire: bidi overrides, zero-width, control, NUL, combining-mark floods, 10 KB,
  look-alikes of a taken name: refused, the connection stays usable.
- HTTP on the WebSocket port of a real engine: 431, 404 and 403 (Origin allow-list).
"""

from __future__ import annotations

import contextlib
import random
import statistics
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from engine_fixtures import SHORT_QUIZ, engine_at, short_quiz
from faultkit import HandshakeRefused, RawWs, serve_process
from httpkit import http_get

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server import credentials

KEY = "faults-operator-key"
GUESSES = 10_000


def _dead_codes(n: int, live: set[str]) -> list[str]:
    rng = random.Random(7)
    codes: list[str] = []
    while len(codes) < n:
        code = "".join(rng.choice(credentials.CODE_ALPHABET) for _ in range(6))
        if code not in live:
            codes.append(code)
    return codes


async def test_ten_thousand_join_guesses_are_throttled_and_learn_nothing(tmp_path: Path) -> None:
    join_rate, join_burst = 2.0, 30  # the defaults
    with trio.fail_after(60):
        # The per-connection message limit is lifted so that the join limiter alone is
        # measured (with it, the guesser's connection is also closed, 1008, after ~90 frames).
        async with engine_at(tmp_path, join_rate=join_rate, join_burst=join_burst,
                             message_rate=1e6, message_burst=1_000_000) as (engine, address), \
                contextlib.AsyncExitStack() as sockets:
            live, _ = engine.create_session(short_quiz(), mode="solo")
            ended, _ = engine.create_session(short_quiz(), mode="solo")
            ended.close("over")
            guesser = await RawWs.connect(address.port, source="127.0.0.1")
            sockets.push_async_callback(guesser.aclose)  # closed even when an assert fails
            started = trio.current_time()
            codes = _dead_codes(GUESSES, set(engine.sessions))
            for first in range(0, GUESSES, 1000):
                await guesser.send_many([
                    {"t": "join", "rid": first + i + 1, "code": code, "name": "Eve", "team": None}
                    for i, code in enumerate(codes[first:first + 1000])])
            counts: dict[str, int] = {}
            for _ in range(GUESSES):
                reply = await guesser.receive()
                key = reply["code"] if reply["t"] == "error" else reply["t"]
                counts[key] = counts.get(key, 0) + 1
            elapsed = trio.current_time() - started
            assert set(counts) == {"bad_code", "rate_limited"}, counts
            assert counts["bad_code"] <= join_burst + join_rate * elapsed + 1
            # Throttled now: a live code and a dead code get the very same bytes. (The bucket
            # refills at join_rate: a few dead guesses first take any token that came back, and
            # the pair goes in one write, microseconds apart.)
            same = {"t": "join", "rid": 77, "name": "Eve", "team": None}
            await guesser.send_many([
                *({**same, "rid": 70 + i, "code": codes[i]} for i in range(3)),
                {**same, "code": live.code}, {**same, "code": codes[0]}])
            for _ in range(3):
                await guesser.receive_raw()
            to_live = _reply(await guesser.receive_raw())
            to_dead = _reply(await guesser.receive_raw())
            assert to_live.code == "rate_limited"
            # Byte for byte but for when to retry: that is the address's bucket at the moment
            # of each refusal (microseconds apart, so it may round to one ms less), never the
            # code's. Comparing the raw bytes failed when the two straddled a millisecond.
            assert attrs.evolve(to_live, retry_after_ms=None) == attrs.evolve(
                to_dead, retry_after_ms=None)
            assert to_live.retry_after_ms is not None and to_dead.retry_after_ms is not None
            assert to_live.retry_after_ms - 1 <= to_dead.retry_after_ms <= to_live.retry_after_ms
            # Not throttled (another address): an ended code and one that never existed, and
            # a wrong secret for a live player and a token of no session, look the same.
            other = await RawWs.connect(address.port, source="127.0.0.2")
            sockets.push_async_callback(other.aclose)
            await other.send({**same, "code": ended.code})
            from_ended = await other.receive_raw()
            await other.send({**same, "code": codes[1]})
            from_never = await other.receive_raw()
            assert from_ended == from_never
            assert b"bad_code" in from_ended
            ann = await RawWs.connect(address.port, source="127.0.0.3")
            sockets.push_async_callback(ann.aclose)
            welcome = await ann.request({**same, "code": live.code, "name": "Ann"})
            assert welcome["t"] == "welcome"  # a real player from another address gets in
            resume = {"t": "resume", "rid": 78, "last_seq": 0}
            await other.send({**resume, "token": f"{live.code}.{welcome['participant']}.x"})
            wrong_secret = await other.receive_raw()
            await other.send({**resume, "token": f"{codes[2]}.1.x"})
            no_session = await other.receive_raw()
            assert wrong_secret == no_session and b"bad_token" in no_session
    print(f"\n{GUESSES} join guesses from one address in {elapsed:.2f}s: "
          f"{counts['bad_code']} answered bad_code, {counts['rate_limited']} rate_limited")


async def _rtts(ws: RawWs, n: int, first_rid: int) -> list[float]:
    """Round-trip times of ``n`` pings, 50 ms apart: within the default message rate (20/s),
    so the victim itself is never throttled."""
    times = []
    for rid in range(first_rid, first_rid + n):
        started = trio.current_time()
        reply = await ws.request({"t": "ping", "rid": rid})
        times.append(trio.current_time() - started)
        assert reply["t"] == "pong", reply
        await trio.sleep(0.05)
    return times


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def test_a_flooder_is_throttled_then_closed_and_others_are_served(
    tmp_path: Path
) -> None:
    rate = 1000  # messages per second
    with trio.fail_after(60):
        async with serve_process("--data-dir", str(tmp_path), "--operator-key", KEY,
                                 "--flood-strikes", "4000") as engine:
            async with open_client(engine.url) as operator:
                created = await operator.create_session(KEY, quiz=SHORT_QUIZ, mode="solo")
            victim = await RawWs.connect(engine.port, source="127.0.0.2")
            flooder = await RawWs.connect(engine.port, source="127.0.0.3")
            for ws, name in ((victim, "Calm"), (flooder, "Flood")):
                joined = await ws.request({"t": "join", "rid": 1, "code": created.code,
                                           "name": name, "team": None})
                assert joined["t"] == "welcome"
            baseline = await _rtts(victim, 50, 100)
            replies: dict[str, int] = {}
            sent = 0
            during: list[float] = []

            async def flood() -> None:
                nonlocal sent
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    started = trio.current_time()
                    while flooder.close_code is None and not flooder.eof:
                        burst = [{"t": "ping", "rid": 10_000 + sent + i} for i in range(10)]
                        await flooder.send_many(burst)
                        sent += len(burst)
                        # Hold the rate: the next 10 leave when they are due.
                        await trio.sleep_until(started + sent / rate)

            flooder_closed = trio.Event()
            throttled = trio.Event()  # the flooder has been refused at least once

            async def read_flooder() -> None:
                try:
                    with contextlib.suppress(EOFError, trio.BrokenResourceError):
                        while True:
                            reply = await flooder.receive()
                            key = reply["code"] if reply["t"] == "error" else reply["t"]
                            replies[key] = replies.get(key, 0) + 1
                            if key == "rate_limited":
                                throttled.set()
                finally:
                    flooder_closed.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_flooder)
                nursery.start_soon(flood)
                await throttled.wait()  # the flood is on and being refused
                during = await _rtts(victim, 50, 1000)  # every ping answered with a pong
                with trio.fail_after(20):
                    await flooder_closed.wait()
                nursery.cancel_scope.cancel()
            # The victim is still served.
            assert (await victim.request({"t": "ping", "rid": 5}))["t"] == "pong"
            await victim.aclose()
            await flooder.aclose()
    assert flooder.close_code == CloseCode.POLICY_VIOLATION
    assert replies.get("rate_limited", 0) >= 3900 and replies.get("pong", 0) <= 200
    # The victim's latency is reported, not asserted: a timed assertion fails on a loaded
    # machine (it did, at load 11) and measures the machine rather than the engine. The
    # engine's share of it is what `bench/` measures; here each ping got its pong.
    base50, base99 = statistics.median(baseline), _p(baseline, 0.99)
    flood50, flood99 = statistics.median(during), _p(during, 0.99)
    print(f"\nflood at {rate}/s: {sent} sent, {replies} before close 1008; victim ping "
          f"p50 {base50 * 1e3:.2f} -> {flood50 * 1e3:.2f} ms, p99 {base99 * 1e3:.2f} -> "
          f"{flood99 * 1e3:.2f} ms")


TAMPER_QUIZ = {
    "format": 1, "title": "Tamper night",
    "rounds": [{"title": "R", "items": [
        {"kind": "single", "prompt": "One?", "choices": ["a", "b", "c"], "answer": "a",
         "time_limit": 60},
        {"kind": "single", "prompt": "Two?", "choices": ["a", "b"], "answer": "a",
         "time_limit": 1},
    ]}],
}


async def test_tampering_is_refused_and_only_legitimate_answers_are_stored(
    tmp_path: Path
) -> None:
    quiz = load_quiz_data(TAMPER_QUIZ, source="test")
    with trio.fail_after(30):
        async with engine_at(tmp_path) as (engine, address):
            a, host_a = engine.create_session(quiz, mode="solo")
            b, host_b = engine.create_session(quiz, mode="solo")
            port = address.port
            host = await RawWs.connect(port)
            ann = await RawWs.connect(port)
            bob = await RawWs.connect(port)
            carl = await RawWs.connect(port)
            screen = await RawWs.connect(port)
            intruder = await RawWs.connect(port)

            async def code_of(ws: RawWs, message: dict[str, Any]) -> str:
                return await ws.outcome(message)

            assert await code_of(host, {"t": "host", "rid": 1, "code": a.code,
                                        "token": host_a}) == "welcome"
            join = {"t": "join", "rid": 1, "team": None}
            welcome_ann = await ann.request({**join, "code": a.code, "name": "Ann"})
            welcome_bob = await bob.request({**join, "code": a.code, "name": "Bob"})
            welcome_carl = await carl.request({**join, "code": b.code, "name": "Carl"})
            assert await code_of(screen, {"t": "watch", "rid": 1, "code": a.code}) == "welcome"
            refused: dict[str, str] = {}
            # Host commands from a player and from a display.
            refused["start from a player"] = await code_of(ann, {"t": "start", "rid": 2})
            refused["start from a display"] = await code_of(screen, {"t": "start", "rid": 2})
            # Another session's host token, an empty one, a token of the right shape.
            for what, token in (("B's host token", host_b), ("empty host token", ""),
                                ("random host token", credentials.new_secret())):
                refused[what] = await code_of(intruder, {"t": "host", "rid": 3, "code": a.code,
                                                         "token": token})
            # Resume tokens: Carl's (session B) pointed at session A, and at Ann's id.
            carl_secret = welcome_carl["token"].rsplit(".", 1)[1]
            refused["B's resume token on A"] = await code_of(intruder, {
                "t": "resume", "rid": 4, "last_seq": 0,
                "token": f"{a.code}.{welcome_carl['participant']}.{carl_secret}"})
            refused["B's secret with Ann's id"] = await code_of(intruder, {
                "t": "resume", "rid": 5, "last_seq": 0,
                "token": f"{a.code}.{welcome_ann['participant']}.{carl_secret}"})
            assert await code_of(host, {"t": "start", "rid": 6}) == "ok"
            await ann.next_of("question")
            answer = {"t": "answer", "rid": 10, "value": 0}
            refused["future question"] = await code_of(ann, {**answer, "q": 1})
            refused["unknown question"] = await code_of(ann, {**answer, "q": 99})
            refused["out-of-range choice"] = await code_of(ann, {**answer, "q": 0, "value": 7})
            refused["naming another player"] = await code_of(ann, {
                **answer, "q": 0, "participant": welcome_bob["participant"]})
            # Legitimate, then twice with the same rid (one answer, acked twice).
            assert await code_of(ann, {**answer, "q": 0}) == "answer_ack"
            assert await code_of(ann, {**answer, "q": 0}) == "answer_ack"
            assert await code_of(bob, {**answer, "q": 0, "value": 1}) == "answer_ack"
            assert await code_of(host, {"t": "close", "rid": 7}) == "ok"
            refused["closed question"] = await code_of(ann, {**answer, "rid": 11, "q": 0})
            assert await code_of(host, {"t": "reveal", "rid": 8}) == "ok"
            assert await code_of(host, {"t": "next", "rid": 9}) == "ok"
            await ann.next_of("question")
            await ann.next_of("closed")  # the 1 s deadline, closed by the server's clock
            refused["after the deadline"] = await code_of(ann, {**answer, "rid": 12, "q": 1})
            for ws in (host, ann, bob, carl, screen, intruder):
                await ws.aclose()
            assert await engine.persister.drain(timeout=10)
            stored = await engine.store.session_results(a.code)
    assert refused == {
        "start from a player": "forbidden",
        "start from a display": "forbidden",
        "B's host token": "bad_token",
        "empty host token": refused["empty host token"],  # checked just below
        "random host token": "bad_token",
        "B's resume token on A": "bad_token",
        "B's secret with Ann's id": "bad_token",
        "future question": "not_current_question",
        "unknown question": "not_current_question",
        "out-of-range choice": "invalid_answer",
        "naming another player": "invalid_message",
        "closed question": "question_closed",
        "after the deadline": "question_closed",
    }
    assert refused["empty host token"] in ("bad_token", "invalid_message")
    assert sorted((x.participant_id, x.question, x.value) for x in stored.answers) == [
        (welcome_ann["participant"], 0, 0), (welcome_bob["participant"], 0, 1)]
    print("\ntampering refused: " + ", ".join(f"{k} -> {v}" for k, v in refused.items()))


BAD_NAMES = {
    "bidi override": "evil\u202egnp",
    "bidi isolate": "\u2066iso",
    "zero-width": "A\u200bnn",
    "control": "bell\x07",
    "NUL": "nul\x00",
    "BOM": "\ufeffbom",
    "combining marks": "z" + "\u0301" * 100,
    "combining flood": "z" + "\u0301" * 3000,
    "300 characters": "x" * 300,
    "10 KB": "x" * 10_000,
    "empty": "   ",
}


async def test_hostile_names_are_refused_and_look_alikes_collide(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path) as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            first = await RawWs.connect(address.port)
            welcome = await first.request({"t": "join", "rid": 1, "code": session.code,
                                           "name": " Ann\u00a0 Lee ", "team": None})
            assert welcome["name"] == "Ann Lee"  # normalised
            ws = await RawWs.connect(address.port)
            outcomes: dict[str, str] = {}
            names = {**BAD_NAMES, "Cyrillic look-alike": "\u0410nn Lee",
                     "case and spacing": "ANN  LEE", "full-width": "\uff21nn Lee",
                     "accented": "\u00c1nn L\u00e9e"}
            for rid, (what, name) in enumerate(names.items(), start=2):
                # The next message is the reply (nothing else reaches a connection that has
                # not joined). Every reply carries its rid, even when a string over the
                # codec's 4 KiB limit fails the whole decode (the rid is read around it).
                await ws.send({"t": "join", "rid": rid, "code": session.code, "name": name,
                               "team": None})
                reply = await ws.receive()
                assert reply.get("rid") == rid, reply
                outcomes[what] = reply["code"] if reply["t"] == "error" else reply["t"]
            # The connection is still usable: a clean name gets in.
            ok = await ws.request({"t": "join", "rid": 99, "code": session.code,
                                   "name": "Bob", "team": None})
            assert ok["t"] == "welcome"
            await first.aclose()
            await ws.aclose()
    for what in BAD_NAMES:
        # Past the schema's field cap (64 characters), or the codec's 4 KiB string limit, the
        # codec refuses the frame (limit_exceeded) before the game sees the name.
        assert outcomes[what] in ("invalid_name", "invalid_message", "limit_exceeded"), (
            what, outcomes[what])
    for what in ("Cyrillic look-alike", "case and spacing", "full-width", "accented"):
        assert outcomes[what] == "name_taken", (what, outcomes[what])
    print("\nnames: " + ", ".join(f"{k} -> {v}" for k, v in outcomes.items()))


async def test_http_on_the_websocket_port_gets_clean_4xx(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with engine_at(tmp_path, allowed_origins=("https://quiz.example",)) as (
                _engine, address):
            port = address.port
            many = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
            assert (await http_get(port, "/", extra=many))[0] == 431
            assert (await http_get(port, "/", extra=b"X-Big: " + b"a" * 20_000 + b"\r\n"))[0] \
                == 431
            assert (await http_get(port, "/no/such/path"))[0] == 404
            with pytest.raises(HandshakeRefused) as refused:
                await RawWs.connect(port, origin="https://evil.example")
            assert refused.value.status == 403
            good = await RawWs.connect(port, origin="https://quiz.example")
            assert (await good.request({"t": "ping", "rid": 1}))["t"] == "pong"
            await good.aclose()


def _reply(data: bytes) -> m.ErrorReply:
    reply = codec.decode(data, direction=m.Direction.SERVER_TO_CLIENT)
    assert isinstance(reply, m.ErrorReply), reply
    return reply
