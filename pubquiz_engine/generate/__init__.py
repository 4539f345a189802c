"""Question generation by topic, through any OpenAI-compatible model server, cached.

``pubquiz-engine quiz generate --topic "90s music" --count 10 --kind choice -o round.toml``
(``generate.cli``) asks a model server (llama.cpp, Ollama, vLLM or a hosted API; configured by
``PUBQUIZ_GENERATOR_URL``, ``PUBQUIZ_GENERATOR_MODEL`` and ``PUBQUIZ_GENERATOR_API_KEY``) for a
round, validates every question with the quiz validator, drops and reports the invalid ones,
asks again for the shortfall a bounded number of times, skips questions the quiz already has,
and caches the result (Redis when configured, else the store). Documented in
``docs/quiz-format.md``, "Generating questions".

The parts, one concept each:

- ``records``: the request, the result, the errors, and the ``ChatModel`` and
  ``QuestionCache`` ports. Pure.
- ``core``: the prompt and JSON schema out, the model's answer in, parsed and validated. Pure.
- ``client``: ``ChatClient``, the ``ChatModel`` over HTTP. The only module importing httpx.
- ``cache``: ``RedisCache``, ``StoreCache`` and ``open_cache``.
- ``generator``: ``generate_questions``, the bounded loop that ties them together.
- ``cli``: ``add_generate_command`` for ``cli.py``.

Rules this package keeps: it never imports ``server`` but for the settings resolution
(``server.config``) in its command line; nothing waits on the network on the trio thread; a
failing, stalled or babbling model server is a clear ``GeneratorError``, never a traceback and
never a half-written quiz; httpx and redis are imported only when a client or a Redis cache is
made, so importing this package needs neither.
"""

from __future__ import annotations

from pubquiz_engine.generate.generator import DEFAULT_ATTEMPTS, generate_questions
from pubquiz_engine.generate.records import (
    DIFFICULTIES,
    KINDS,
    CacheUnavailable,
    ChatModel,
    Completion,
    Dropped,
    GenerationRequest,
    GenerationResult,
    GeneratorError,
    GeneratorUnavailable,
    QuestionCache,
)

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DIFFICULTIES",
    "KINDS",
    "CacheUnavailable",
    "ChatModel",
    "Completion",
    "Dropped",
    "GenerationRequest",
    "GenerationResult",
    "GeneratorError",
    "GeneratorUnavailable",
    "QuestionCache",
    "generate_questions",
]
