"""``generate_questions``: the bounded loop, deduplication and the cache, with in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio

from pubquiz_engine.generate import (
    CacheUnavailable,
    Completion,
    GenerationRequest,
    GeneratorError,
    GeneratorUnavailable,
    generate_questions,
)
from pubquiz_engine.generate.core import encode_cached


def q(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt, "choices": ["A", "B", "C", "D"], "answer": "B", "explanation": ""}


class ScriptedModel:
    """Answers each call with the next scripted list of questions (or raises it)."""

    name = "scripted"

    def __init__(self, answers: Sequence[Any]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def complete(self, messages: Sequence[Mapping[str, str]], *,
                       schema: Mapping[str, Any], max_tokens: int) -> Completion:
        await trio.lowlevel.checkpoint()
        self.calls.append(messages[-1]["content"])
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, str):
            return Completion(answer)
        return Completion(json.dumps({"questions": answer}))


class MemoryCache:
    def __init__(self, *, broken: bool = False) -> None:
        self.data: dict[str, str] = {}
        self.ttls: dict[str, float] = {}
        self.broken = broken

    async def get(self, key: str) -> str | None:
        await trio.lowlevel.checkpoint()
        if self.broken:
            raise CacheUnavailable("cache (redis) get: ConnectionError: refused")
        return self.data.get(key)

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        await trio.lowlevel.checkpoint()
        if self.broken:
            raise CacheUnavailable("cache (redis) set: ConnectionError: refused")
        self.data[key], self.ttls[key] = value, ttl_seconds


REQUEST = GenerationRequest(topic="90s music", count=3, kind="choice")


async def test_shortfall_is_asked_for_and_repeats_are_dropped() -> None:
    model = ScriptedModel([
        [q("One?"), {"prompt": "Bad?", "choices": ["A", "A"], "answer": "A"}, q("one")],
        [q("Two?"), q("Three?"), q("Four?")],
    ])
    result = await generate_questions(REQUEST, model)
    assert [i["prompt"] for i in result.questions] == ["One?", "Two?", "Three?"]
    assert result.model_calls == 2 and result.shortfall == 0
    assert [(d.attempt, d.prompt) for d in result.dropped] == [(1, "Bad?"), (1, "one")]
    assert "repeats a question" in result.dropped[1].reason
    # The second call asks for the two still missing and names the one already taken.
    assert "Write 2 quiz questions" in model.calls[1] and "- One?" in model.calls[1]


async def test_existing_prompts_are_skipped_and_named_to_the_model() -> None:
    model = ScriptedModel([[q("Who sang Wonderwall?"), q("Two?"), q("Three?")], [q("Four?")]])
    result = await generate_questions(REQUEST, model, existing=["who sang 'WONDERWALL'"])
    assert [i["prompt"] for i in result.questions] == ["Two?", "Three?", "Four?"]
    assert result.dropped[0].reason == "already in the quiz"
    assert "- who sang 'WONDERWALL'" in model.calls[0]


async def test_attempts_are_bounded_and_a_partial_round_is_returned() -> None:
    model = ScriptedModel([[q("One?")], "not json", [], ["x"]])
    result = await generate_questions(REQUEST, model, attempts=3)
    assert len(model.calls) == 3 and result.model_calls == 3
    assert [i["prompt"] for i in result.questions] == ["One?"]
    assert result.shortfall == 2


async def test_no_usable_question_at_all_is_an_error_with_reasons() -> None:
    model = ScriptedModel(["nope", "nope"])
    with pytest.raises(GeneratorError, match=r"no usable question in 2 attempts.*not JSON"):
        await generate_questions(REQUEST, model, attempts=2)


async def test_a_failing_server_ends_generation_at_once() -> None:
    model = ScriptedModel([[q("One?")], GeneratorUnavailable("down"), [q("never")]])
    cache = MemoryCache()
    with pytest.raises(GeneratorUnavailable):
        await generate_questions(REQUEST, model, cache=cache)
    assert len(model.calls) == 2
    assert cache.data == {}  # nothing half-done is kept


async def test_cache_serves_a_smaller_request_and_keeps_the_pool() -> None:
    cache = MemoryCache()
    model = ScriptedModel([[q("One?"), q("Two?"), q("Three?"), q("Four?")]])
    first = await generate_questions(REQUEST, model, cache=cache, ttl_seconds=60)
    key = REQUEST.cache_key("scripted")
    # Every valid question is pooled, the extra fourth one too.
    assert [i["prompt"] for i in json.loads(cache.data[key])] == [
        "One?", "Two?", "Three?", "Four?"]
    assert cache.ttls[key] == 60
    assert first.from_cache == 0
    smaller = GenerationRequest(topic="90S  Music", count=2, kind="choice")
    second = await generate_questions(smaller, model, cache=cache)
    assert second.from_cache == 2 and second.model_calls == 0
    assert [i["prompt"] for i in second.questions] == ["One?", "Two?"]


async def test_cached_questions_already_in_the_quiz_make_the_model_fill_in() -> None:
    cache = MemoryCache()
    key = REQUEST.cache_key("scripted")
    cache.data[key] = encode_cached([
        {"kind": "single", "prompt": p, "choices": ["A", "B"], "answer": "A"}
        for p in ("One?", "Two?", "Three?")
    ] + ["garbage"])
    model = ScriptedModel([[q("Four?")]])
    result = await generate_questions(REQUEST, model, cache=cache, existing=["Two?"])
    assert [i["prompt"] for i in result.questions] == ["One?", "Three?", "Four?"]
    assert result.from_cache == 2 and result.model_calls == 1
    assert [d.attempt for d in result.dropped] == [0]  # the garbage entry
    assert len(json.loads(cache.data[key])) == 4


async def test_a_broken_cache_is_a_note_not_a_failure() -> None:
    model = ScriptedModel([[q("One?"), q("Two?"), q("Three?")]])
    result = await generate_questions(REQUEST, model, cache=MemoryCache(broken=True))
    assert len(result.questions) == 3
    assert len(result.notes) == 1 and "going on without the cache" in result.notes[0]


async def test_attempts_must_be_sane() -> None:
    with pytest.raises(ValueError):
        await generate_questions(REQUEST, ScriptedModel([]), attempts=0)
