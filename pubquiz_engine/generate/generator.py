"""Generating a round: the cache first, then the model for the shortfall, a bounded number of
times.

``await generate_questions(request, model, cache=..., existing=...)`` returns a
``GenerationResult``: up to ``request.count`` questions, each validated on its own and none
repeating a prompt of ``existing`` or of each other, plus what was dropped and why.

Rules this module keeps:

1. Bounded: at most ``attempts`` model calls, each asking only for the questions still
   missing (and listing the prompts already taken, so the model does not repeat them).
2. The model server failing (``GeneratorUnavailable``/``GeneratorError`` from the client)
   ends the generation at once with that error: no partial result escapes, so the caller
   never writes half a round. Answers that parse into no usable question are not failures of
   the server: they are dropped and count against the attempts. If every attempt is spent and
   not one question is usable, that is a ``GeneratorError`` listing why.
3. The cache (``records.QuestionCache``) is only an optimisation: its failures become notes.
   An entry is the pool of every valid question seen for the request (cached ones and new
   ones, at most ``MAX_POOL``), re-validated when read; it is written only when the model was
   asked, so a cache hit does not extend an entry's life.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pubquiz_engine.generate.cache import DEFAULT_TTL_SECONDS
from pubquiz_engine.generate.core import (
    answer_schema,
    build_messages,
    decode_cached,
    encode_cached,
    max_tokens_for,
    parse_completion,
    prompt_key,
)
from pubquiz_engine.generate.records import (
    CacheUnavailable,
    ChatModel,
    Dropped,
    GenerationRequest,
    GenerationResult,
    GeneratorError,
    QuestionCache,
)

DEFAULT_ATTEMPTS = 3
MAX_ATTEMPTS = 10
MAX_POOL = 100


async def generate_questions(
    request: GenerationRequest,
    model: ChatModel,
    *,
    cache: QuestionCache | None = None,
    existing: Iterable[str] = (),
    attempts: int = DEFAULT_ATTEMPTS,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
) -> GenerationResult:
    """Generate ``request.count`` questions (see the module docstring for the rules)."""
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise ValueError(f"attempts must be 1..{MAX_ATTEMPTS}, got {attempts!r}")
    existing_prompts = list(existing)
    existing_keys = {prompt_key(p) for p in existing_prompts}
    key = request.cache_key(model.name)
    notes: list[str] = []
    dropped: list[Dropped] = []
    pool: list[dict[str, Any]] = []  # every valid, distinct question seen (rule 3)
    pool_keys: set[str] = set()
    chosen: list[dict[str, Any]] = []

    def offer(item: dict[str, Any], attempt: int) -> None:
        k = prompt_key(item["prompt"])
        if k in pool_keys:
            # From the cache, a repeat is a stale entry's business; from the model, news.
            if attempt:
                dropped.append(Dropped(attempt, "repeats a question already generated",
                                       item["prompt"]))
            return
        pool.append(item)
        pool_keys.add(k)
        if k in existing_keys:
            if attempt:
                dropped.append(Dropped(attempt, "already in the quiz", item["prompt"]))
        elif len(chosen) < request.count:
            chosen.append(item)

    if cache is not None:
        try:
            cached = await cache.get(key)
        except CacheUnavailable as exc:
            notes.append(f"{exc}; going on without the cache")
            cache = None
        else:
            if cached is not None:
                items, bad = decode_cached(cached)
                dropped.extend(bad)
                for item in items:
                    offer(item, 0)
    from_cache = len(chosen)

    calls = 0
    schema = answer_schema(request.kind)
    while len(chosen) < request.count and calls < attempts:
        calls += 1
        need = request.count - len(chosen)
        avoid = existing_prompts + [item["prompt"] for item in chosen]
        completion = await model.complete(build_messages(request, need, avoid), schema=schema,
                                          max_tokens=max_tokens_for(need))
        items, bad = parse_completion(completion, request.kind, calls)
        dropped.extend(bad)
        for item in items:
            offer(item, calls)

    if not chosen:
        reasons = "; ".join(d.describe() for d in dropped[-5:]) or "nothing came back"
        raise GeneratorError(
            f"the model gave no usable question in {calls} attempt"
            f"{'s' if calls != 1 else ''} ({reasons})")

    if cache is not None and calls:
        try:
            await cache.put(key, encode_cached(pool[:MAX_POOL]), ttl_seconds)
        except CacheUnavailable as exc:
            notes.append(f"{exc}; the questions were not cached")

    return GenerationResult(
        request=request,
        questions=tuple(chosen),
        dropped=tuple(dropped),
        from_cache=from_cache,
        model_calls=calls,
        notes=tuple(notes),
    )
