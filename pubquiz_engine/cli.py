"""``pubquiz-engine``: the command line.

Subcommands: ``serve`` (the engine), ``demo`` (a whole quiz night on this machine), ``quiz
validate`` (check quiz files), ``export`` (a session's results from the store), ``play`` and
``host`` (a person at a terminal, through the thin client), ``nginx-site`` (the nginx site for a
list of instances) and ``cluster`` (several engines behind nginx on this machine).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pubquiz_engine import __version__
from pubquiz_engine.errors import PubquizError, QuizFileError
from pubquiz_engine.generate.cli import add_generate_command
from pubquiz_engine.interchange.cli import add_import_command
from pubquiz_engine.logs import add_secret, setup_logging
from pubquiz_engine.server.config import ConfigError, add_arguments, load_config
from pubquiz_engine.terminal import DEFAULT_URL, EXIT_CODES_HELP, TerminalExit

if TYPE_CHECKING:
    from pubquiz_engine.server.engine import Engine

# --- serve -------------------------------------------------------------------------------------

#: Collections of generation 1 between two full ones (CPython's default: 10).
FULL_COLLECTION_EVERY = 100


def collect_less_often() -> None:
    """Space the cyclic GC's full collections out (the engine process's setting, not the
    library's: ``serve`` calls it).

    A full collection walks every tracked object, and an engine's heap is its connections
    (about 30 objects each). While 19,000 players joined, ten full collections stopped the
    loop for up to 320 ms each (1.66 s of 14 s); with this setting there was one (234 ms).
    A full collection now waits for ~700,000 net allocations instead of ~70,000, and still
    for a quarter of the heap to be new since the last one (CPython's own rule), so beyond
    ~2.8 M objects nothing changes. The engine makes almost no cyclic garbage that lives that
    long: in 18,000 connect-join-leave cycles its full collections found 916 objects with
    either setting, and RSS ended within 2 MiB (docs/benchmarks.md, "The join rate at
    19,000")."""
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_COLLECTION_EVERY)


async def _serve(args: argparse.Namespace) -> int:
    from pubquiz_engine.server.engine import running_engine
    from pubquiz_engine.server.sdnotify import Notifier

    collect_less_often()
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
            async with trio.open_nursery() as serving:
                serving.start_soon(_log_state_on_usr1, engine)
                async for signum in signals:
                    log.info("signal %s: draining", signal.Signals(signum).name)
                    break
                serving.cancel_scope.cancel()
            with trio.move_on_after(config.drain_timeout + 5) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_second_signal, signals, nursery.cancel_scope)
                    await engine.shutdown()
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                log.error("drain did not finish in time")
    return 0


async def _log_state_on_usr1(engine: Engine) -> None:
    """``kill -USR1 PID``: log every session and its members' connections (``log_state``)."""
    with trio.open_signal_receiver(signal.SIGUSR1) as requests:
        async for _ in requests:
            engine.log_state()


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

EXPORT_EXIT_CODES_HELP = (
    "exit codes: 0 written, 1 no such session or database, or the output file exists "
    "(add --force), 2 bad command line or database URL"
)

async def _export(args: argparse.Namespace) -> int:
    from pubquiz_engine.store import open_store
    from pubquiz_engine.store.export import results_to_csv, results_to_json

    config = load_config(args, os.environ)
    output = trio.Path(args.output) if args.output and args.output != "-" else None
    if output is not None and await output.exists() and not args.force:
        print(f"{output}: already exists: use --force to overwrite it", file=sys.stderr)
        return 1
    url = config.resolved_database_url()
    where = "give the engine's --data-dir or --database-url"
    if url.startswith("sqlite:"):
        from pubquiz_engine.store.sqlite import parse_sqlite_url

        try:
            path = parse_sqlite_url(url)[0]
        except ValueError as exc:
            print(f"pubquiz-engine export: {exc}", file=sys.stderr)
            return 2
        # Reading must not create: a mistyped --data-dir would leave an empty database behind.
        if not await trio.Path(path).is_file():
            print(f"No engine database at {path}: {where}.", file=sys.stderr)
            return 1
    try:
        store = await open_store(url)
    except ValueError as exc:
        print(f"pubquiz-engine export: {exc}", file=sys.stderr)
        return 2
    try:
        if await store.load_session(args.code.upper()) is None:
            print(f"No session {args.code.upper()} in {url.split('@')[-1]}: check the join "
                  f"code, or {where}.", file=sys.stderr)
            return 1
        results = await store.session_results(args.code.upper())
    finally:
        await store.aclose()
    text = results_to_csv(results) if args.format == "csv" else results_to_json(results)
    if output is not None:
        # "x" refuses a file that appeared meanwhile: --force is the only way to overwrite.
        try:
            async with await trio.open_file(output, "w" if args.force else "x",
                                            encoding="utf-8", newline="") as out:
                await out.write(text)
        except FileExistsError:
            print(f"{output}: already exists: use --force to overwrite it", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


# --- play and host (a person at a terminal) ---------------------------------------

def _terminal_options(args: argparse.Namespace) -> Any:
    from pubquiz_engine.terminal import Options, state_dir

    return Options(url=args.url, code=args.code, name=getattr(args, "name", None),
                   team=getattr(args, "team", None), new=getattr(args, "new", False),
                   key=getattr(args, "key", None) or os.environ.get("PUBQUIZ_OPERATOR_KEY"),
                   quiz=getattr(args, "quiz", "sample"),
                   mode=getattr(args, "mode", "team"), token=getattr(args, "token", None),
                   reconnect_for=args.reconnect_for,
                   state_dir=Path(args.state_dir) if args.state_dir else state_dir(),
                   command=_command_name())


def _command_name() -> str:
    """How the person started us, for the hints we print (``.venv/bin/pubquiz-engine``)."""
    from pubquiz_engine.demo import command_hint

    return command_hint()


async def _play(args: argparse.Namespace) -> int:
    from pubquiz_engine.terminal import play

    return int(await play(_terminal_options(args)))


async def _host(args: argparse.Namespace) -> int:
    from pubquiz_engine.terminal import host

    return int(await host(_terminal_options(args)))


def _ws_url(text: str) -> str:
    """``--url``: the engine's WebSocket address; anything else is a usage error (exit 2)."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("ws", "wss"):
        hint = ""
        if scheme in ("http", "https"):
            hint = f" (for {text} use {'ws' if scheme == 'http' else 'wss'}" \
                   f"://{text.split('://', 1)[1]})"
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a WebSocket address: it must start with ws:// or wss://{hint}")
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("give 0 to 86400 seconds")
    return value


def _terminal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=_ws_url, default=None,
                        help="the engine's WebSocket address, ws:// or wss:// (default: the "
                        f"one the saved place is on, else {DEFAULT_URL})")
    parser.add_argument("--reconnect-for", type=_positive_seconds, default=120.0,
                        metavar="SECONDS", help="after a dropped connection, keep trying to "
                        "come back for this long")
    parser.add_argument("--state-dir", help="where places in quizzes are kept (resume "
                        "tokens; default: $PUBQUIZ_STATE_DIR, else "
                        "$XDG_STATE_HOME/pubquiz-engine, else ~/.local/state/pubquiz-engine)")


# --- nginx-site and cluster --------------------------------------------------------------------

def _nginx_site(args: argparse.Namespace) -> int:
    from pubquiz_engine.nginx_site import Instance, Site, render

    try:
        instances = [Instance.parse(spec) for spec in args.instances]
        site = Site(server_name=args.server_name, tls=args.listen is None,
                    listen=args.listen or "127.0.0.1:8080", certificate=args.certificate,
                    certificate_key=args.certificate_key)
        text = render(instances, site, drained=args.drain)
    except ValueError as exc:
        print(f"pubquiz-engine nginx-site: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


async def _cluster(args: argparse.Namespace) -> int:
    import tempfile

    from pubquiz_engine.cluster import ClusterError, LocalCluster, cluster_summary

    workdir = Path(args.workdir) if args.workdir else Path(
        tempfile.mkdtemp(prefix="pubquiz-cluster-"))
    key = args.operator_key or os.environ.get("PUBQUIZ_OPERATOR_KEY") or \
        "local-cluster-operator-key"
    cluster = LocalCluster(workdir, database_url=args.database_url, redis_url=args.redis_url,
                           redis_prefix=args.redis_prefix, size=args.engines,
                           nginx_port=args.port, lease_ttl_ms=args.lease_ttl_ms,
                           operator_key=key, log_files=True)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await cluster.start(nursery)
            except ClusterError as exc:
                print(f"pubquiz-engine cluster: {exc}", file=sys.stderr)
                await cluster.aclose()
                nursery.cancel_scope.cancel()
                return 1
            print(cluster_summary(cluster), flush=True)
            print(f"  operator key   {key}\n  engine logs    {workdir}/n*.log", flush=True)
            async for _signum in signals:
                break
            print("stopping (SIGTERM to every engine, then nginx)...", flush=True)
            await cluster.aclose()
            nursery.cancel_scope.cancel()
    return 0


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text \
                or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


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

    demo = sub.add_parser("demo", help="play the sample quiz with simulated players",
                          formatter_class=DefaultsFormatter,
                          description="Run an engine on this machine and play the sample quiz "
                          "with simulated players, a host and a big screen, over real sockets.")
    demo.add_argument("--players", type=int, default=24, help="simulated players")
    demo.add_argument("--teams", type=int, default=6, help="teams they form")
    demo.add_argument("--data-dir", default="data", help="where the SQLite database goes")
    demo.add_argument("--seed", type=int, default=7,
                      help="random seed (who knows which answer, and when they answer)")
    demo.set_defaults(run=_demo)

    quiz = sub.add_parser("quiz", help="quiz files")
    quiz_sub = quiz.add_subparsers(dest="quiz_command", required=True)
    validate = quiz_sub.add_parser("validate", help="check quiz files, report every problem")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(run_sync=_validate)
    add_import_command(quiz_sub)
    add_generate_command(quiz_sub)

    export = sub.add_parser("export", help="a session's results (answers and standings)",
                            formatter_class=DefaultsFormatter, epilog=EXPORT_EXIT_CODES_HELP,
                            description="Write a session's standings and answers, read from "
                            "the engine's database, as CSV or JSON.")
    export.add_argument("code", help="the session's join code")
    export.add_argument("--format", choices=("csv", "json"), default="csv",
                        help="csv: standings, teams (team mode), then answers, as titled "
                        "sections; json: one document")
    export.add_argument("-o", "--output", default="-",
                        help="file to write (- for standard output); an existing file is kept "
                        "unless --force")
    export.add_argument("--force", action="store_true", help="overwrite an existing --output")
    export.add_argument("--database-url", dest="database_url",
                        help="the engine's database (env PUBQUIZ_DATABASE_URL; default: the "
                        "SQLite file in --data-dir)")
    export.add_argument("--data-dir", dest="data_dir",
                        help="the engine's data directory (env PUBQUIZ_DATA_DIR; default: data)")
    export.set_defaults(run=_export)

    play = sub.add_parser(
        "play", help="join a quiz as a player from this terminal",
        formatter_class=DefaultsFormatter, epilog=EXIT_CODES_HELP,
        description="Join quiz CODE (or come back to it: your place is kept on this computer) "
        "and answer from this terminal. Type an answer and Enter while a question is open; "
        "/joker, /wager POINTS, /leave, /quit and /help are commands.")
    play.add_argument("code", help="the join code on the big screen")
    play.add_argument("--name", help="your name (needed the first time; later the saved place "
                      "is used)")
    play.add_argument("--team", help="the team to join or create (team mode)")
    play.add_argument("--new", action="store_true",
                      help="join anew (as --name) instead of coming back to the saved place")
    _terminal_arguments(play)
    play.set_defaults(run=_play)

    site = sub.add_parser(
        "nginx-site", help="print the nginx site for a list of engine instances",
        formatter_class=DefaultsFormatter,
        description="The nginx site in front of several engines: /ws?code= hashed over them, "
        "/ws/node/NAME for each (its PUBQUIZ_PUBLIC_URL), the pages, /results and /health. "
        "systemd/nginx-pubquiz.conf is `nginx-site 8801 8802 8803`.")
    site.add_argument("instances", nargs="+", metavar="INSTANCE",
                      help="PORT (the template unit pubquiz-engine@PORT on 127.0.0.1) or "
                      "NAME=HOST:PORT")
    site.add_argument("--server-name", default="quiz.example.org", help="the public host name")
    site.add_argument("--listen", help="plain HTTP on this address (HOST:PORT) instead of "
                      "TLS on 443 with a redirect from 80")
    site.add_argument("--certificate", help="TLS certificate (default: Let's Encrypt's path "
                      "for --server-name)")
    site.add_argument("--certificate-key", help="its key")
    site.add_argument("--drain", action="append", default=[], metavar="NAME",
                      help="keep NAME out of the /ws ring (no new sessions reach it) but "
                      "reachable at /ws/node/NAME (its sessions stay reachable by redirect); "
                      "to retire an instance: drain it, reload nginx, then stop it")
    site.add_argument("-o", "--output", default="-", help="file to write (- for standard "
                      "output)")
    site.set_defaults(run_sync=_nginx_site)

    cluster = sub.add_parser(
        "cluster", help="three engines behind nginx on this machine, to try a deployment",
        formatter_class=DefaultsFormatter,
        description="Start ENGINES engine processes sharing PostgreSQL and Redis, and nginx "
        "in front of them (its config generated into a temporary directory; no root needed), "
        "all on loopback; print their addresses; stop everything on Ctrl-C.")
    cluster.add_argument("--engines", type=int, default=3, help="engine processes")
    cluster.add_argument("--port", type=int, default=8080, help="nginx's port (0: any)")
    cluster.add_argument("--database-url", default=os.environ.get(
        "PUBQUIZ_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pubquiz"),
        help="the shared PostgreSQL database (env PUBQUIZ_DATABASE_URL)")
    cluster.add_argument("--redis-url", default=os.environ.get(
        "PUBQUIZ_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the shared Redis (env PUBQUIZ_REDIS_URL)")
    cluster.add_argument("--redis-prefix", default="pubquiz-cluster:",
                         help="prefix of the cluster's Redis keys")
    cluster.add_argument("--lease-ttl-ms", type=int, default=10_000,
                         help="session lease lifetime: how long a killed engine's sessions wait")
    cluster.add_argument("--operator-key", help="operator key (env PUBQUIZ_OPERATOR_KEY; "
                         "default: a fixed local key, printed)")
    cluster.add_argument("--workdir", help="where the nginx config and logs go (default: a "
                         "new temporary directory)")
    cluster.set_defaults(run=_cluster)

    host = sub.add_parser(
        "host", help="create and run a quiz from this terminal",
        formatter_class=DefaultsFormatter, epilog=EXIT_CODES_HELP,
        description="Create a session (with the operator key) or come back to one (--code), "
        "then run it with commands: start, next, reveal, board, ... (type help).")
    host.add_argument("--key", help="operator key, to create a session (env "
                      "PUBQUIZ_OPERATOR_KEY)")
    host.add_argument("--quiz", default="sample", help="quiz file name on the engine (in its "
                      "--quiz-dir, or sample)")
    host.add_argument("--mode", choices=("solo", "team"), default="team",
                      help="solo: everyone scores alone; team: one answer per team")
    host.add_argument("--code", help="host an existing session (its token is taken from the "
                      "saved place, or --token)")
    host.add_argument("--token", help="the session's host token")
    _terminal_arguments(host)
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
    except TerminalExit as exc:
        if exc.message:
            print(exc.message, file=sys.stderr)
        return int(exc.code)
    except PubquizError as exc:
        print(f"pubquiz-engine: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C before ``play``/``host`` listen for it themselves (while connecting).
        print("Interrupted.", file=sys.stderr)
        return 130
    except BaseExceptionGroup as group:
        # Ctrl-C inside a nursery arrives wrapped: still an interrupt, not a crash.
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            print("Interrupted.", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    raise SystemExit(main())
