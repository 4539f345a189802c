"""Hypothesis-generated frames against a live engine: valid client messages of every type,
their byte-level mutations and random bytes. The engine answers each frame (the connection
stays usable: a final ping is answered, unless a frame's documented answer closes it, such as
a wrong operator key) and the session in play is unaffected."""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio
from engine_fixtures import engine_at, short_quiz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import client_messages

from pubquiz_engine.client import ClientClosed, open_client
from pubquiz_engine.errors import CloseCode
from pubquiz_engine.protocol import codec
from pubquiz_engine.protocol import messages as m


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    data = bytearray(codec.encode(draw(client_messages())))
    if kind == "mutated" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


async def _play_against(tmp_path: Path, batch: list[bytes]) -> None:
    with trio.fail_after(60):
        async with engine_at(tmp_path, message_rate=100_000.0, message_burst=100_000,
                             operator_key="k" * 16) as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as host, open_client(address.url) as fuzz, \
                    open_client(address.url) as good:
                await host.host(session.code, host_token)
                await good.join(session.code, "Ann")
                await host.request(m.Start)
                question = await good.next_event(m.Question)
                for frame in batch:
                    if fuzz.closed is not None:
                        break
                    try:
                        await fuzz.send_raw(frame)
                    except ClientClosed:
                        break  # a frame that closes (a wrong operator key, ...) ended it
                try:
                    assert isinstance(await fuzz.request(m.Ping), m.Pong)
                except Exception:
                    # Unless a frame's documented answer ended it: a wrong operator key (1008),
                    # an oversized frame (1009).
                    closed = await fuzz.wait_closed()
                    assert closed.code in (CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG)
                # Whatever the fuzzer did, the session goes on for the others.
                assert (await good.answer(question.q, 0)).q == question.q
                assert isinstance(await host.request(m.Ping), m.Pong)
                assert session.end_reason is None


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(frames(), min_size=300, max_size=300))
def test_generated_frames_never_hurt_the_session(batch: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_play_against, Path(tmp), batch)
