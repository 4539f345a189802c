"""``pubquiz-engine``: the command line.

Subcommands: ``serve`` (the engine), ``demo`` (a whole quiz night on this machine), ``quiz
validate`` (check quiz files), ``export`` (a session's results from the store), ``play`` and
``host`` (a person at a terminal, through the thin client).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from pubquiz_engine import __version__
from pubquiz_engine.errors import PubquizError, QuizFileError
from pubquiz_engine.generate.cli import add_generate_command
from pubquiz_engine.interchange.cli import add_import_command
from pubquiz_engine.logs import add_secret, setup_logging
from pubquiz_engine.server.config import ConfigError, add_arguments, load_config

# --- serve -------------------------------------------------------------------------------------

async def _serve(args: argparse.Namespace) -> int:
    from pubquiz_engine.server.engine import running_engine
    from pubquiz_engine.server.sdnotify import Notifier

    config = load_config(args, os.environ)
    setup_logging(config.log_level, node=config.node_id)
    add_secret(config.operator_key)
    log = logging.getLogger("pubquiz_engine")
    # Under systemd (Type=notify): READY, STATUS, WATCHDOG, STOPPING; otherwise a no-op.
    notifier = Notifier.from_environ()
    with notifier, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with running_engine(config, notifier=notifier) as (engine, address):
            log.info("listening on %s:%s (database %s, ack mode %s)", address.host,
                     address.port, config.resolved_database_url().split("@")[-1],
                     config.ack_mode)
            async for signum in signals:
                log.info("signal %s: draining", signal.Signals(signum).name)
                break
            with trio.move_on_after(config.drain_timeout + 5) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_second_signal, signals, nursery.cancel_scope)
                    await engine.shutdown()
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                log.error("drain did not finish in time")
    return 0


async def _second_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for signum in signals:
        logging.getLogger("pubquiz_engine").warning(
            "second signal %s: exiting at once", signal.Signals(signum).name)
        os._exit(1)


# --- demo --------------------------------------------------------------------------------------

async def _demo(args: argparse.Namespace) -> int:
    from pubquiz_engine.demo import DemoOptions, run_demo

    logging.basicConfig(level=logging.WARNING)
    await run_demo(DemoOptions(players=args.players, teams=args.teams, data_dir=args.data_dir,
                               seed=args.seed))
    return 0


# --- quiz validate -------------------------------------------------------------------------------

def _validate(args: argparse.Namespace) -> int:
    from pubquiz_engine.game import load_quiz

    failed = 0
    for name in args.files:
        try:
            quiz = load_quiz(name)
        except QuizFileError as exc:
            failed += 1
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        print(f"{name}: ok: {quiz.title!r}, {len(quiz.rounds)} rounds, "
              f"{len(quiz.questions)} questions")
    return 1 if failed else 0


# --- export --------------------------------------------------------------------------------------

async def _export(args: argparse.Namespace) -> int:
    from pubquiz_engine.store import open_store
    from pubquiz_engine.store.export import results_to_csv, results_to_json

    config = load_config(args, os.environ)
    store = await open_store(config.resolved_database_url())
    try:
        if await store.load_session(args.code.upper()) is None:
            print(f"no session {args.code} in {config.resolved_database_url()}", file=sys.stderr)
            return 1
        results = await store.session_results(args.code.upper())
    finally:
        await store.aclose()
    text = results_to_csv(results) if args.format == "csv" else results_to_json(results)
    if args.output and args.output != "-":
        await trio.Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# --- play and host (a person at a terminal) ---------------------------------------

async def _play(args: argparse.Namespace) -> int:
    from pubquiz_engine.terminal import play

    await play(args.url, args.code, args.name, args.team)
    return 0


async def _host(args: argparse.Namespace) -> int:
    from pubquiz_engine.terminal import host

    await host(args.url, key=args.key, quiz=args.quiz, mode=args.mode, code=args.code,
               token=args.token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pubquiz-engine",
                                     description="A realtime engine for live quizzes.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the engine",
                           description="Run the engine. Every setting can also come from a "
                           "PUBQUIZ_* environment variable or a TOML file (--config); flags win.")
    add_arguments(serve)
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="play the sample quiz with simulated players")
    demo.add_argument("--players", type=int, default=24)
    demo.add_argument("--teams", type=int, default=6)
    demo.add_argument("--data-dir", default="data")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)

    quiz = sub.add_parser("quiz", help="quiz files")
    quiz_sub = quiz.add_subparsers(dest="quiz_command", required=True)
    validate = quiz_sub.add_parser("validate", help="check quiz files, report every problem")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(run_sync=_validate)
    add_import_command(quiz_sub)
    add_generate_command(quiz_sub)

    export = sub.add_parser("export", help="a session's results (answers and standings)")
    export.add_argument("code", help="the session's join code")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--database-url", dest="database_url")
    export.add_argument("--data-dir", dest="data_dir")
    export.set_defaults(run=_export)

    play = sub.add_parser("play", help="join a quiz as a player from this terminal")
    play.add_argument("code")
    play.add_argument("--name", required=True)
    play.add_argument("--team")
    play.add_argument("--url", default="ws://127.0.0.1:8765/")
    play.set_defaults(run=_play)

    host = sub.add_parser("host", help="create and run a quiz from this terminal")
    host.add_argument("--url", default="ws://127.0.0.1:8765/")
    host.add_argument("--key", help="operator key (to create a session)")
    host.add_argument("--quiz", default="sample", help="quiz file name on the server")
    host.add_argument("--mode", choices=("solo", "team"), default="team")
    host.add_argument("--code", help="host an existing session (with --token)")
    host.add_argument("--token", help="the session's host token")
    host.set_defaults(run=_host)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "run_sync"):
            return int(args.run_sync(args))
        return int(trio.run(args.run, args))
    except ConfigError as exc:
        print(f"pubquiz-engine: configuration: {exc}", file=sys.stderr)
        return 2
    except PubquizError as exc:
        print(f"pubquiz-engine: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
