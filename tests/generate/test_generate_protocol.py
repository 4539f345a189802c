"""The operator's `generate` request against a live engine and the tests' own model server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from modelkit import FakeModel

from pubquiz_engine.client import open_client
from pubquiz_engine.errors import CloseCode, ErrorCode, RemoteError
from pubquiz_engine.game import Quiz, load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine

KEY = "operator-key-for-tests"


def short_quiz() -> Quiz:
    return load_quiz_data({"format": 1, "title": "Lobby", "rounds": [
        {"title": "One", "items": [{"kind": "truefalse", "prompt": "Crows: a murder?",
                                    "answer": True}]},
        {"title": "Two", "items": [{"kind": "single", "prompt": "Capital of France?",
                                    "choices": ["Paris", "Lyon"], "answer": "Paris"}]},
    ]})


@contextlib.asynccontextmanager
async def engine_at(tmp_path: Path, **settings: Any
                    ) -> AsyncIterator[tuple[Engine, EngineAddress]]:
    async with running_engine(ServerConfig(port=0, data_dir=str(tmp_path), **settings)) as pair:
        yield pair


async def test_generate_adds_a_round_in_the_lobby(tmp_path: Path, fake_model: FakeModel) -> None:
    with trio.fail_after(30):
        async with engine_at(tmp_path, operator_key=KEY, generator_url=fake_model.base_url,
                             generator_model="test-model") as (engine, address):
            session, host_token = engine.create_session(short_quiz(), mode="solo")
            rounds_before = len(session.game.quiz.rounds)
            async with open_client(address.url) as operator, open_client(address.url) as host, \
                    open_client(address.url) as ann:
                await ann.join(session.code, "Ann")
                await ann.next_event(m.State)  # the state at joining
                reply = await operator.request(m.Generate, key=KEY, code=session.code,
                                               topic="90s music", count=3, kind="choice")
                assert isinstance(reply, m.Generated)
                assert reply.round == rounds_before and reply.added == 3
                # A player already in the lobby is told the new round list at once.
                told = await ann.next_event(m.State)
                assert [r["title"] for r in told.state["rounds"]][-1] == "90s music"
                assert len(told.state["rounds"]) == rounds_before + 1
                assert len(session.game.quiz.rounds) == rounds_before + 1
                assert session.game.quiz.rounds[-1].title == "90s music"
                # A host who attaches now sees the longer quiz.
                await host.host(session.code, host_token)
                state = await host.next_event(m.State)
                assert state.state["phase"] == "lobby"
                # The same request again is served from the cache, not the model.
                calls = len(fake_model.requests)
                again = await operator.request(m.Generate, key=KEY, code=session.code,
                                               topic="90s music", count=3, kind="choice",
                                               round_title="More 90s")
                assert isinstance(again, m.Generated) and again.added >= 0
                assert len(fake_model.requests) <= calls + 1
                # Once the quiz has started, nothing can be added.
                await host.request(m.Start)
                with pytest.raises(RemoteError) as started:
                    await operator.request(m.Generate, key=KEY, code=session.code,
                                           topic="rivers", count=2, kind="text")
                assert started.value.code is ErrorCode.WRONG_PHASE


async def test_generate_refusals(tmp_path: Path, fake_model: FakeModel) -> None:
    fake_model.default = "fail"
    with trio.fail_after(30):
        async with engine_at(tmp_path, operator_key=KEY, generator_url=fake_model.base_url,
                             generator_model="test-model") as (engine, address):
            session, _ = engine.create_session(short_quiz(), mode="solo")
            async with open_client(address.url) as guesser:
                with pytest.raises(RemoteError) as bad_key:
                    await guesser.request(m.Generate, key="nope", code=session.code,
                                          topic="x", count=1, kind="choice")
                assert bad_key.value.code is ErrorCode.BAD_KEY
                # A wrong operator key closes the connection (issue 16: guesses are limited).
                assert (await guesser.wait_closed()).code == CloseCode.POLICY_VIOLATION
            async with open_client(address.url) as operator:
                with pytest.raises(RemoteError) as down:
                    await operator.request(m.Generate, key=KEY, code=session.code,
                                           topic="rivers", count=2, kind="numeric")
                assert down.value.code is ErrorCode.GENERATOR_UNAVAILABLE
                assert down.value.retryable
                assert len(session.game.quiz.rounds) == 2  # nothing half-added
