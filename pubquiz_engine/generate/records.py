"""What question generation takes and gives back, its errors, and the two ports it drives.

Rules this module keeps:

1. A ``GenerationRequest`` is validated on construction and normalised once (whitespace
   collapsed), so everything downstream - the prompt, the cache key - sees one spelling.
2. The cache key is the normalised request (topic and language casefolded) plus the model's
   name, hashed: ``ai-questions:<hex>`` like the seed's ``ai-questions:{topic}`` key, but a
   change of kind, difficulty, language or model never serves another request's questions.
   The count is deliberately NOT part of the key: a cache entry is a pool of questions, and a
   request for fewer questions than it holds is served from it.
3. The model server is "a resource we depend on", so its failures are ``LocalError``s:
   ``GeneratorUnavailable`` when waiting or trying later may help (down, stalled, HTTP 5xx or
   429), ``GeneratorError`` when it will not (a refused request, an answer that is not a chat
   completion, no usable question after every attempt). Their messages are for the quiz
   master and never carry the API key.

This module is pure: no trio, no httpx, no redis.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from pubquiz_engine.errors import LocalError

#: ``--kind`` values: ``choice`` makes single-choice questions.
KINDS = ("choice", "text", "numeric")
DIFFICULTIES = ("easy", "medium", "hard")
MAX_COUNT = 50
MAX_TOPIC = 200
MAX_LANGUAGE = 40
#: Bumped whenever the cached value's layout or the prompt changes meaningfully.
CACHE_FORMAT = 1
CACHE_PREFIX = "ai-questions:"


class GeneratorError(LocalError):
    """The model server could not give us questions, and asking again at once will not help."""


class GeneratorUnavailable(GeneratorError):
    """The model server is down, stalled or overloaded: try again later."""


class CacheUnavailable(LocalError):
    """The cache (Redis or the store) failed; generation goes on without it."""


def _clean(text: object) -> object:
    # Collapse whitespace; anything that is not text is left for the validator to refuse.
    return " ".join(text.split()) if isinstance(text, str) else text


def _text(limit: int, *, optional: bool = False) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValueError(f"{attribute.name} must be 1..{limit} characters, got {value!r}")

    return check


def _count(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"{attribute.name} must be a whole number 1..{MAX_COUNT}, got {value!r}")


@attrs.frozen
class GenerationRequest:
    """What the quiz master asked for (rule 1)."""

    topic: str = attrs.field(converter=_clean, validator=_text(MAX_TOPIC))
    count: int = attrs.field(validator=_count)
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    difficulty: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(DIFFICULTIES))
    )
    language: str = attrs.field(default="English", converter=_clean,
                                validator=_text(MAX_LANGUAGE))

    def cache_key(self, model: str) -> str:
        """The cache key for this request on ``model`` (rule 2)."""
        canonical = json.dumps(
            {
                "format": CACHE_FORMAT,
                "topic": self.topic.casefold(),
                "kind": self.kind,
                "difficulty": self.difficulty,
                "language": self.language.casefold(),
                "model": model,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return CACHE_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


@attrs.frozen
class Completion:
    """One chat-completion answer: the message text and why the model stopped."""

    content: str
    finish_reason: str | None = None


@attrs.frozen
class Dropped:
    """A question (or a whole answer) that was not used, and why.

    ``attempt`` is the model call it came from, counted from 1; 0 means the cache.
    ``prompt`` is the question's prompt when there was one to show.
    """

    attempt: int
    reason: str
    prompt: str | None = None

    def describe(self) -> str:
        where = "cache" if self.attempt == 0 else f"answer {self.attempt}"
        if self.prompt is None:
            return f"{where}: {self.reason}"
        shown = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "..."
        return f"{where}: {shown!r}: {self.reason}"


@attrs.frozen
class GenerationResult:
    """The questions (plain quiz item data, each valid on its own) and what was left out.

    ``questions`` never repeat a prompt (normalised) of each other or of the existing quiz.
    ``from_cache`` of them came from the cache; ``model_calls`` requests went to the model.
    """

    request: GenerationRequest
    questions: tuple[dict[str, Any], ...]
    dropped: tuple[Dropped, ...] = ()
    from_cache: int = 0
    model_calls: int = 0
    notes: tuple[str, ...] = ()

    @property
    def shortfall(self) -> int:
        return self.request.count - len(self.questions)


class ChatModel(Protocol):
    """An OpenAI-compatible chat-completions endpoint (``client.ChatClient``, or a test's)."""

    @property
    def name(self) -> str:
        """The model's name: part of the cache key."""
        ...

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, schema: Mapping[str, Any],
        max_tokens: int,
    ) -> Completion:
        """Ask for one answer shaped by the JSON ``schema``.

        Raises ``GeneratorUnavailable`` (down, timeout, 5xx, 429) or ``GeneratorError``.
        """
        ...


class QuestionCache(Protocol):
    """Where generated questions are kept for a while (``cache.RedisCache``/``StoreCache``).

    Both methods raise only ``CacheUnavailable`` (besides ``ValueError`` for a bad TTL).
    """

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl_seconds: float) -> None: ...
