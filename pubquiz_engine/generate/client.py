"""An OpenAI-compatible chat-completions client on httpx. The only module that imports httpx.

Any server that speaks ``POST {base_url}/chat/completions`` works: llama.cpp's ``llama-server``,
Ollama (``http://127.0.0.1:11434/v1``), vLLM, or a hosted API. ``base_url`` is the part before
``/chat/completions``, as OpenAI's own clients take it (usually ending in ``/v1``).

Rules this module keeps:

1. The event loop never blocks: httpx's ``AsyncClient`` runs on trio (through anyio).
2. Every call is bounded twice: httpx's connect/read/write timeouts, and one trio deadline
   around the whole request (``timeout``), so a server that trickles a byte every few seconds
   is cut off as surely as one that says nothing. The body is read with a size cap.
3. httpx exceptions never escape. Unreachable, stalled, HTTP 5xx, 408 and 429 become
   ``GeneratorUnavailable``; any other refusal, or an answer that is not a chat completion,
   becomes ``GeneratorError``. Messages name the server and the status, quote what the server
   said (briefly), and never include the API key.
4. Structured output is asked for with ``response_format = {"type": "json_schema", ...}``,
   the form OpenAI, llama.cpp, Ollama and vLLM all read; what comes back is still checked
   (``core``), since not every server enforces the schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio

from pubquiz_engine import __version__
from pubquiz_engine.generate.records import Completion, GeneratorError, GeneratorUnavailable

MAX_BODY_BYTES = 4 * 1024 * 1024
_EXCERPT = 300
_RETRY_LATER = {408, 429}


def _url(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{attribute.name} must be an http:// or https:// URL, got {value!r}")


def _strip_slash(url: str) -> str:
    return url.rstrip("/") if isinstance(url, str) else url


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen
class ModelConfig:
    """Where the model is and how long to wait for it. ``api_key`` is never shown by repr."""

    base_url: str = attrs.field(converter=_strip_slash, validator=_url)
    model: str = attrs.field(validator=attrs.validators.min_len(1))
    api_key: str | None = attrs.field(default=None, repr=False)
    #: Seconds for the whole request: a local model on a CPU needs minutes for a round.
    timeout: float = attrs.field(default=180.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    temperature: float = 0.7

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"


class ChatClient:
    """``records.ChatModel`` over HTTP. Use as ``async with ChatClient(config) as model:``.

    Resource handling: the connection pool lives between ``__aenter__`` and ``__aexit__``.
    ``transport`` is for tests (an ``httpx.MockTransport``); the real one is the default.
    """

    def __init__(self, config: ModelConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        headers = {"User-Agent": f"pubquiz-engine/{__version__}", "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # loopback model servers must not go through a proxy by surprise
        )

    @property
    def name(self) -> str:
        return self.config.model

    async def __aenter__(self) -> ChatClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def complete(
        self, messages: Sequence[Mapping[str, str]], *, schema: Mapping[str, Any],
        max_tokens: int,
    ) -> Completion:
        body = {
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.config.temperature,
            "max_tokens": max_tokens,
            "stream": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "quiz_questions", "strict": True, "schema": schema},
            },
        }
        where = f"the model server at {self.config.base_url}"
        # Rule 2: one deadline for the whole exchange, on top of httpx's per-operation ones.
        status, raw = 0, b""
        with trio.move_on_after(self.config.timeout) as scope:
            status, raw = await self._post(body, where)
        if scope.cancelled_caught:
            raise GeneratorUnavailable(
                f"{where} did not answer within {self.config.timeout:g} s "
                "(--timeout / PUBQUIZ_GENERATOR_TIMEOUT)")
        if status != 200:
            message = f"{where} answered HTTP {status}: {_error_excerpt(raw)}"
            if status >= 500 or status in _RETRY_LATER:
                raise GeneratorUnavailable(message)
            raise GeneratorError(message)
        return _completion(raw, where)

    async def _post(self, body: Mapping[str, Any], where: str) -> tuple[int, bytes]:
        try:
            async with self._http.stream("POST", self.config.endpoint, json=body) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise GeneratorError(
                            f"{where} sent more than {MAX_BODY_BYTES // 1024 // 1024} MiB")
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise GeneratorUnavailable(
                f"{where} did not answer within {self.config.timeout:g} s "
                f"(--timeout / PUBQUIZ_GENERATOR_TIMEOUT): {type(exc).__name__}") from exc
        except httpx.ConnectError as exc:
            raise GeneratorUnavailable(
                f"cannot connect to {where}: {exc or type(exc).__name__} "
                "(is it running? check --generator-url / PUBQUIZ_GENERATOR_URL)") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise GeneratorError(f"{where}: bad URL: {exc}") from exc
        except httpx.HTTPError as exc:
            raise GeneratorUnavailable(
                f"the connection to {where} failed: {type(exc).__name__}: {exc}") from exc


def _error_excerpt(raw: bytes) -> str:
    """What a refusing server said: OpenAI's ``{"error": {"message": ...}}`` or the text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    text = " ".join(text.split())
    if not text:
        return "(no message)"
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."


def _completion(raw: bytes, where: str) -> Completion:
    """The first choice's message text; anything else is not a chat completion (rule 3)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise GeneratorError(
            f"{where} did not answer with JSON (is the URL an OpenAI-compatible /v1 "
            f"endpoint?): {exc}") from exc
    choices = data.get("choices") if isinstance(data, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise GeneratorError(
            f"{where} answered without choices[0].message: not an OpenAI chat completion "
            f"({_error_excerpt(raw)})")
    content = message.get("content")
    finish = first.get("finish_reason") if isinstance(first, dict) else None
    return Completion(
        content if isinstance(content, str) else "",
        finish if isinstance(finish, str) else None,
    )
