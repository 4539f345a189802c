"""``pubquiz-engine quiz generate --topic T --count N --kind K -o round.toml``: the shell.

``add_generate_command`` adds the subcommand to the ``quiz`` subparsers; ``cli.py`` wires it in
next to ``quiz import``. It sets ``run`` to an async function that ``main()`` runs under
``trio.run``.

Rules this module keeps:

1. Nothing is written unless the whole quiz is valid, and a file is replaced atomically (a
   temporary file in the same directory, then ``os.replace``): a model server that fails, stalls
   or answers garbage leaves every file as it was. Exit status: 0 written, 1 an error (one clear
   line on stderr, nothing written), 2 a usage or configuration error.
2. Like ``quiz import``: the TOML goes to standard output without ``-o``, an existing ``-o`` file
   is only replaced with ``--force``, and every dropped question and every note is its own
   stderr line (``dropped:`` / ``note:``), so stdout stays pure TOML.
3. ``--into QUIZ`` appends the round to an existing quiz (in place unless ``-o`` is given),
   skipping questions whose prompt is already in it. A TOML file keeps its text, comments
   included: the round is appended as text, and the result is validated before it is written.
4. Settings: flags, then ``PUBQUIZ_GENERATOR_*`` environment variables. The API key is read
   from ``PUBQUIZ_GENERATOR_API_KEY`` only (a flag would show it in the process list) and is
   never printed. The cache's database and Redis come from the engine's own settings
   (``--database-url``/``PUBQUIZ_DATABASE_URL``, ``--redis-url``/``PUBQUIZ_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game.loader import load_quiz, load_quiz_data
from pubquiz_engine.generate.cache import DEFAULT_TTL_SECONDS, open_cache
from pubquiz_engine.generate.core import new_round, quiz_prompts
from pubquiz_engine.generate.generator import DEFAULT_ATTEMPTS, MAX_ATTEMPTS, generate_questions
from pubquiz_engine.generate.records import (
    DIFFICULTIES,
    KINDS,
    CacheUnavailable,
    GenerationRequest,
    GenerationResult,
    GeneratorError,
    QuestionCache,
)
from pubquiz_engine.interchange.toml_writer import dumps, quiz_to_toml

__all__ = ["ENV_API_KEY", "ENV_MODEL", "ENV_TIMEOUT", "ENV_URL", "add_generate_command",
           "run_generate"]

ENV_URL = "PUBQUIZ_GENERATOR_URL"
ENV_MODEL = "PUBQUIZ_GENERATOR_MODEL"
ENV_API_KEY = "PUBQUIZ_GENERATOR_API_KEY"
ENV_TIMEOUT = "PUBQUIZ_GENERATOR_TIMEOUT"
DEFAULT_TIMEOUT = 180.0


def add_generate_command(
    quiz_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``quiz generate`` to the ``quiz`` command's subparsers."""
    parser = quiz_subparsers.add_parser(
        "generate", help="write a round of questions on a topic with a language model",
        description="Ask an OpenAI-compatible model server (llama.cpp, Ollama, vLLM or a "
        "hosted API) for a round of questions, validate every one, and write a TOML quiz "
        "(docs/quiz-format.md, 'Generating questions'). Results are cached.",
    )
    parser.add_argument("--topic", required=True, help='what the questions are about, e.g. '
                        '"90s music"')
    parser.add_argument("--count", type=int, default=10, help="how many questions (1..50; "
                        "default 10)")
    parser.add_argument("--kind", choices=KINDS, default="choice",
                        help="choice (single choice, 4 options), text (typed answer) or "
                        "numeric (default: choice)")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, help="default: not specified")
    parser.add_argument("--language", default="English", help="default: English")
    parser.add_argument("-o", "--output", metavar="QUIZ.toml",
                        help="where to write the quiz (default: standard output, or the "
                        "--into file)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--into", metavar="QUIZ", help="append the round to this existing "
                        ".toml or .json quiz, skipping questions it already has")
    parser.add_argument("--title", help="the new quiz's title (default: the topic)")
    parser.add_argument("--round-title", help="the round's title (default: the topic)")
    model = parser.add_argument_group("model server")
    model.add_argument("--generator-url", help=f"base URL of the OpenAI-compatible API, e.g. "
                       f"http://127.0.0.1:8080/v1 (env {ENV_URL}; key: env {ENV_API_KEY})")
    model.add_argument("--model", "--generator-model", dest="model",
                       help=f"the model's name (env {ENV_MODEL}; `serve` calls it "
                       "--generator-model, which is accepted here too)")
    model.add_argument("--timeout", type=float, help=f"seconds to wait for one answer (env "
                       f"{ENV_TIMEOUT}; default {DEFAULT_TIMEOUT:g})")
    model.add_argument("--attempts", type=int, default=DEFAULT_ATTEMPTS,
                       help=f"model calls at most, to make up for dropped questions "
                       f"(1..{MAX_ATTEMPTS}; default {DEFAULT_ATTEMPTS})")
    cache = parser.add_argument_group("cache")
    cache.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the cache: always ask the model")
    cache.add_argument("--cache-ttl", type=float, default=DEFAULT_TTL_SECONDS,
                       help=f"seconds a generated round stays cached (default "
                       f"{DEFAULT_TTL_SECONDS}, a week)")
    cache.add_argument("--redis-url", dest="redis_url", help="cache in Redis (env "
                       "PUBQUIZ_REDIS_URL); else in the database")
    cache.add_argument("--database-url", dest="database_url", help="env PUBQUIZ_DATABASE_URL; "
                       "default: the SQLite file in --data-dir")
    cache.add_argument("--data-dir", dest="data_dir", help="default: data")
    parser.set_defaults(run=run_generate)


def _seconds(raw: str | float, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None


def _fail(message: str, status: int = 1) -> int:
    print(f"quiz generate: {message}", file=sys.stderr)
    return status


async def run_generate(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run ``quiz generate`` (rules 1 to 4). ``env`` defaults to ``os.environ``."""
    from pubquiz_engine.generate.client import ChatClient, ModelConfig

    env = os.environ if env is None else env
    url = args.generator_url or env.get(ENV_URL)
    model_name = args.model or env.get(ENV_MODEL)
    if not url or not model_name:
        return _fail(f"no model server configured: give --generator-url and --model (or set "
                     f"{ENV_URL} and {ENV_MODEL})", 2)
    try:
        timeout = args.timeout if args.timeout is not None else _seconds(
            env.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT, ENV_TIMEOUT)
        config = ModelConfig(base_url=url, model=model_name,
                             api_key=env.get(ENV_API_KEY) or None, timeout=timeout)
        request = GenerationRequest(topic=args.topic, count=args.count, kind=args.kind,
                                    difficulty=args.difficulty, language=args.language)
        if not 1 <= args.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"--attempts must be 1..{MAX_ATTEMPTS}")
        if not args.cache_ttl > 0:
            raise ValueError("--cache-ttl must be > 0")
    except ValueError as exc:
        return _fail(str(exc), 2)

    into = Path(args.into) if args.into else None
    output = Path(args.output) if args.output and args.output != "-" else into
    if output is not None and output != into and output.exists() and not args.force:
        return _fail(f"{output}: already exists: use --force to overwrite it")
    existing: _Existing | None = None
    if into is not None:
        try:
            existing = await trio.to_thread.run_sync(_read_quiz, into)
        except QuizFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1

    notes: list[str] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            cache = await _open_cache(args, env, notes, stack)
            model = await stack.enter_async_context(ChatClient(config))
            result = await generate_questions(
                request, model, cache=cache,
                existing=quiz_prompts(existing.data) if existing else (),
                attempts=args.attempts, ttl_seconds=args.cache_ttl)
    except GeneratorError as exc:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return _fail(str(exc))
    _report(result, notes)

    round_title = args.round_title or request.topic
    provenance = (f"Generated by pubquiz-engine quiz generate: topic {request.topic!r}, "
                  f"model {config.model!r}.\nCheck every answer before the quiz night: "
                  "models make mistakes.")
    rnd = new_round(round_title, result.questions)
    try:
        if existing is None:
            text = quiz_to_toml({"title": args.title or request.topic, "rounds": [rnd]},
                                header=provenance)
        else:
            text = _append_round(existing, rnd, provenance)
    except QuizFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail("the quiz with the new round is not valid; nothing was written")

    summary = (f"round {round_title!r}: {len(result.questions)} questions "
               f"({result.from_cache} from the cache, {result.model_calls} model calls, "
               f"{len(result.dropped)} dropped)")
    if output is None:
        sys.stdout.write(text)
        print(f"quiz generate: {summary}", file=sys.stderr)
        return 0
    try:
        await trio.to_thread.run_sync(_write_atomically, output, text)
    except OSError as exc:
        return _fail(f"{output}: cannot write the file: {exc.strerror or exc}")
    print(f"{output}: wrote {summary}", file=sys.stderr)
    return 0


async def _open_cache(args: argparse.Namespace, env: Mapping[str, str], notes: list[str],
                      stack: contextlib.AsyncExitStack) -> QuestionCache | None:
    """The configured cache (closed with ``stack``), or None with ``--no-cache`` or when it
    cannot be opened (a note says why)."""
    if args.no_cache:
        return None
    # The engine's own settings resolution: flags, PUBQUIZ_* variables, the --config file.
    from pubquiz_engine.server.config import ConfigError, load_config

    try:
        config = load_config(args, env)
        return await stack.enter_async_context(open_cache(
            redis_url=config.redis_url, database_url=config.resolved_database_url(),
            redis_prefix=config.redis_prefix))
    except (ConfigError, CacheUnavailable) as exc:
        notes.append(f"{exc}; going on without the cache")
        return None


def _report(result: GenerationResult, notes: list[str]) -> None:
    for dropped in result.dropped:
        print(f"dropped: {dropped.describe()}", file=sys.stderr)
    for note in [*notes, *result.notes]:
        print(f"note: {note}", file=sys.stderr)
    if result.shortfall:
        print(f"note: only {len(result.questions)} of {result.request.count} questions: the "
              f"model's answers ran out after {result.model_calls} attempts (raise --attempts, "
              "or run again: the good ones are cached)", file=sys.stderr)


@attrs.frozen
class _Existing:
    """The ``--into`` quiz as read: its path, its text and its plain data."""

    path: Path
    text: str
    data: dict[str, Any]


def _read_quiz(path: Path) -> _Existing:
    """The ``--into`` quiz, validated first (every problem at once, located)."""
    load_quiz(path)
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    return _Existing(path, text, data)


def _append_round(existing: _Existing, rnd: Mapping[str, Any], provenance: str) -> str:
    """The existing quiz with ``rnd`` appended (rule 3); raises ``QuizFileError`` if invalid."""
    path = existing.path
    data = dict(existing.data)
    data["rounds"] = [*data["rounds"], rnd]
    load_quiz_data(data, source=str(path))  # the whole quiz: round counts, one tie-break...
    if path.suffix.lower() == ".json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    text = existing.text
    chunk = dumps({"rounds": [dict(rnd)]}, header=provenance).replace("\n\n\n", "\n\n")
    appended = text.rstrip("\n") + "\n\n" + chunk
    try:
        # Appending [[rounds]] is only wrong if the file wrote its rounds inline (rounds = [...]).
        if tomllib.loads(appended) == data:
            return appended
    except tomllib.TOMLDecodeError:
        pass
    return quiz_to_toml(data, header=provenance)


def _write_atomically(path: Path, text: str) -> None:
    """Rule 1: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600): keep the old file's mode, else rw-r--r--.
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
