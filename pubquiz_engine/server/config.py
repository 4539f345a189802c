"""The engine's configuration: one frozen attrs class, loaded from flags, env and a TOML file.

Rules this module keeps:

1. Every setting is a field of ``ServerConfig`` with a default, a help text (``metadata["help"]``)
   and a validator. ``pubquiz-engine serve --help`` is generated from these fields, so the help
   can never miss a setting.
2. Precedence, highest first: command-line flags, ``PUBQUIZ_<NAME>`` environment variables, the
   TOML file named by ``--config`` / ``PUBQUIZ_CONFIG``, the defaults. A flag ``--ack-mode``,
   a variable ``PUBQUIZ_ACK_MODE`` and a TOML key ``ack_mode`` all name the field ``ack_mode``.
3. Bad values are refused at start-up with a message naming the setting and where it came from;
   the engine never starts half-configured.
"""

from __future__ import annotations

import argparse
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

ENV_PREFIX = "PUBQUIZ_"


class ConfigError(ValueError):
    """A setting has a value the engine cannot start with."""


def _setting(default: Any, help: str, **kwargs: Any) -> Any:
    return attrs.field(default=default, metadata={"help": help}, **kwargs)


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _port(_inst: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise ConfigError(f"{attribute.name} must be a port number 0..65535, got {value!r}")


#: The shortest operator key accepted: guesses are limited per address too, but a short key
#: falls to a guesser with many addresses. ``openssl rand -hex 16`` gives 32 characters.
MIN_OPERATOR_KEY_CHARS = 16


def _operator_key(_inst: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and len(value) < MIN_OPERATOR_KEY_CHARS:
        raise ConfigError(
            f"{attribute.name} must be at least {MIN_OPERATOR_KEY_CHARS} characters, got "
            f"{len(value)} (generate one with: openssl rand -hex 16)")


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Everything ``pubquiz-engine serve`` can be told. Defaults suit one machine, no services."""

    host: str = _setting("127.0.0.1", "address to listen on (WebSocket and HTTP share the port)")
    port: int = _setting(8765, "port for WebSocket clients and /health, /ready (0 = any)",
                         validator=_port)
    admin_host: str = _setting("127.0.0.1", "address of the optional admin HTTP port")
    admin_port: int | None = _setting(None, "separate port for /health, /ready and /metrics",
                                      validator=_port)
    public_url: str | None = _setting(
        None, "this node's WebSocket URL as clients reach it (for redirects between nodes)")
    node_id: str | None = _setting(None, "this node's name in logs and the node registry")
    data_dir: str = _setting("data", "directory for the embedded SQLite database")
    database_url: str | None = _setting(
        None, "sqlite:///PATH or postgresql://...; default: SQLite in the data directory")
    redis_url: str | None = _setting(None, "redis://... for snapshots and leases (optional)")
    redis_prefix: str = _setting("pubquiz:", "prefix of every Redis key this engine writes")
    lease_ttl_ms: int = _setting(
        10_000, "session lease lifetime in Redis; a dead node's sessions move after it",
        validator=_positive)
    snapshot_interval: float = _setting(
        0.5, "seconds between snapshots of a session during a question", validator=_positive)
    orphan_scan_interval: float = _setting(
        15.0, "seconds between scans for live sessions whose node died and that nobody has "
        "reconnected to (with Redis); 0 turns the scan off",
        validator=attrs.validators.ge(0.0))
    snapshot_concurrency: int = _setting(
        32, "sessions whose snapshots are written at once (with Redis); a session has at most "
        "one write in flight, so a slow one delays no other session's", validator=_positive)
    snapshot_wait: float = _setting(
        1.0, "seconds a change may wait for its commit and (with Redis) its snapshot before "
        "the session refuses new work with unavailable",
        validator=_positive)
    operator_key: str | None = _setting(
        None, f"key operators present to create sessions (at least {MIN_OPERATOR_KEY_CHARS} "
        "characters); unset = no remote session creation", validator=_operator_key)
    operator_attempt_rate: float = _setting(
        1 / 60, "wrong operator keys forgiven per second per client address (refill)",
        validator=_positive)
    operator_attempt_burst: int = _setting(
        5, "wrong operator keys one client address may send before it is refused (and closed) "
        "until the rate forgives one", validator=_positive)
    quiz_dir: str | None = _setting(
        None, "directory of quiz files operators may name in create_session")
    ack_mode: str = _setting(
        "durable", "durable: ack an answer after its commit; fast: ack on accept",
        validator=attrs.validators.in_(("durable", "fast")))
    max_frame_bytes: int = _setting(64 * 1024, "largest client message (close 1009 past it)",
                                    validator=_positive)
    max_operator_frame_bytes: int = _setting(
        1024 * 1024, "largest create_session message (an operator may send a whole quiz)",
        validator=_positive)
    max_backlog_bytes: int = _setting(
        1024 * 1024, "bytes queued for one slow client before it is disconnected (4101)",
        validator=_positive)
    socket_send_buffer: int | None = _setting(
        None, "kernel send buffer per connection in bytes (unset: kernel autotuning)",
        validator=attrs.validators.optional(_positive))
    transport_reader: str = _setting(
        "auto", "how client sockets are read: epoll (Linux: one task reads every ready socket "
        "per pass), portable (a task per connection), auto (epoll where the OS has it)",
        validator=attrs.validators.in_(("auto", "epoll", "portable")))
    handshake_timeout: float = _setting(10.0, "seconds to finish the HTTP/WebSocket handshake",
                                        validator=_positive)
    join_timeout: float = _setting(10.0, "seconds from connect to join/resume/host/watch",
                                   validator=_positive)
    ping_interval: float = _setting(20.0, "seconds between server pings", validator=_positive)
    ping_timeout: float = _setting(20.0, "seconds without a pong before a connection is dropped",
                                   validator=_positive)
    message_rate: float = _setting(20.0, "messages per second one connection may send (refill)",
                                   validator=_positive)
    message_burst: int = _setting(40, "messages one connection may send in a burst",
                                  validator=_positive)
    flood_strikes: int = _setting(
        50, "rate-limited messages after which a connection is closed (1008)",
        validator=_positive)
    flood_strike_decay: float = _setting(
        10.0, "seconds after which one rate-limited message (strike) is forgotten",
        validator=_positive)
    join_rate: float = _setting(2.0, "join/resume/host attempts per second per client address",
                                validator=_positive)
    join_burst: int = _setting(30, "join attempts in a burst per client address",
                               validator=_positive)
    max_connections_per_address: int = _setting(
        1000, "open connections from one client address (a pub shares one NAT address)",
        validator=_positive)
    max_members_per_session: int = _setting(5000, "players, hosts and displays per session",
                                            validator=_positive)
    replay_events: int = _setting(
        2048, "events kept per session for resume; an older gap gets a full state",
        validator=_positive)
    session_idle_timeout: float = _setting(
        4 * 3600.0, "seconds without any command after which a session ends",
        validator=_positive)
    session_finished_linger: float = _setting(
        600.0, "seconds a finished session stays in memory (late displays, results) before "
        "it is archived", validator=_positive)
    drain_timeout: float = _setting(
        20.0, "seconds a graceful stop may take to flush answers (keep < TimeoutStopSec)",
        validator=_positive)
    write_queue: int = _setting(50_000, "records the write-behind queue holds before busy",
                                validator=_positive)
    write_batch: int = _setting(2_000, "records one group commit takes at most",
                                validator=_positive)
    write_linger: float = _setting(
        0.01, "seconds a batch that nobody waits for (fast acks) may collect records before "
        "its commit; 0 commits at once", validator=_non_negative)
    allowed_origins: tuple[str, ...] = _setting(
        (), "comma-separated Origin allow-list for browsers (empty = any)", converter=tuple)
    trust_forwarded_for: bool = _setting(
        False, "take the client address from X-Forwarded-For (only behind your own proxy)")
    generator_url: str | None = _setting(
        None, "OpenAI-compatible model server for the generate request (e.g. "
        "http://127.0.0.1:8080/v1 for llama.cpp)")
    generator_model: str | None = _setting(None, "model name for the generate request")
    generator_api_key: str | None = _setting(
        None, "API key of the model server (prefer the environment variable to the flag)")
    generator_timeout: float = _setting(180.0, "seconds one model call may take",
                                        validator=_positive)
    log_level: str = _setting("info", "debug, info, warning or error",
                              validator=attrs.validators.in_(("debug", "info", "warning", "error")))

    def resolved_database_url(self) -> str:
        """The database URL to open: the configured one, or SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir) / 'pubquiz.sqlite3'}"


# Field types are strings under ``from __future__ import annotations``; the loader needs them real.
attrs.resolve_types(ServerConfig)


def _base_type(tp: Any) -> tuple[type, bool]:
    """(the scalar type of a field, whether it is optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])[0], True
    if origin is tuple:
        return tuple, False
    return tp, False


def _coerce(name: str, tp: Any, raw: Any, where: str) -> Any:
    """Turn a flag, env or TOML value into the field's type, or raise ConfigError."""
    base, optional = _base_type(tp)
    if optional and (raw is None or (isinstance(raw, str) and raw.strip() == "")):
        return None
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if base is tuple:
            if isinstance(raw, list | tuple):
                return tuple(str(x) for x in raw)
            return tuple(p.strip() for p in str(raw).split(",") if p.strip())
        if base is int:
            if isinstance(raw, bool):
                raise ValueError("not an integer")
            return int(raw)
        if base is float:
            return float(raw)
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} (from {where}): {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting (defaults stay None so that 'not given' is visible)."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML file with settings (env {ENV_PREFIX}CONFIG)")
    for f in attrs.fields(ServerConfig):
        flag = "--" + f.name.replace("_", "-")
        base, _ = _base_type(f.type)
        env_name = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata['help']} (env {env_name}; default {f.default!r})"
        if base is bool:
            parser.add_argument(flag, dest=f.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                help=help_text)


def load_config(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the configuration: flags (``args``) > env > TOML file > defaults.

    ``overrides`` (for tests and the demo) sits above everything.
    """
    env = env if env is not None else {}
    flags = vars(args) if args is not None else {}
    values: dict[str, Any] = {}
    config_file = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    file_values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                file_values = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        known = {f.name for f in attrs.fields(ServerConfig)}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise ConfigError(f"config file {config_file}: unknown settings {', '.join(unknown)}")
    for f in attrs.fields(ServerConfig):
        sources: Sequence[tuple[str, Any]] = (
            ("override", (overrides or {}).get(f.name)),
            (f"--{f.name.replace('_', '-')}", flags.get(f.name)),
            (ENV_PREFIX + f.name.upper(), env.get(ENV_PREFIX + f.name.upper())),
            (f"{config_file}", file_values.get(f.name)),
        )
        for where, raw in sources:
            if raw is not None:
                values[f.name] = _coerce(f.name, f.type, raw, where)
                break
    try:
        return ServerConfig(**values)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
