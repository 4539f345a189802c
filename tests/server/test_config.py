"""Configuration: flags > PUBQUIZ_* env > TOML file > defaults; bad values are refused by name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pubquiz_engine.cli import build_parser
from pubquiz_engine.server.config import ConfigError, ServerConfig, add_arguments, load_config


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_need_nothing_installed() -> None:
    config = load_config(_args(), env={})
    assert config == ServerConfig()
    assert config.resolved_database_url().startswith("sqlite:///")
    assert config.ack_mode == "durable"


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    toml = tmp_path / "engine.toml"
    toml.write_text('port = 7000\nack_mode = "fast"\nmessage_rate = 5.5\n'
                    'allowed_origins = ["https://quiz.example"]\n')
    env = {"PUBQUIZ_CONFIG": str(toml), "PUBQUIZ_PORT": "7100", "PUBQUIZ_OPERATOR_KEY": "k" * 16}
    config = load_config(_args("--port", "7200"), env=env)
    assert config.port == 7200  # flag wins
    assert config.operator_key == "k" * 16  # env
    assert config.ack_mode == "fast"  # file
    assert config.message_rate == 5.5
    assert config.allowed_origins == ("https://quiz.example",)
    assert load_config(_args(), env=env).port == 7100  # env over file


def test_booleans_and_lists_from_env() -> None:
    config = load_config(_args(), env={"PUBQUIZ_TRUST_FORWARDED_FOR": "yes",
                                       "PUBQUIZ_ALLOWED_ORIGINS": "https://a, https://b"})
    assert config.trust_forwarded_for is True
    assert config.allowed_origins == ("https://a", "https://b")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PUBQUIZ_PORT": "seventy"}, "port"),
        ({"PUBQUIZ_PORT": "70000"}, "port"),
        ({"PUBQUIZ_ACK_MODE": "sometimes"}, "ack_mode"),
        ({"PUBQUIZ_MESSAGE_RATE": "-1"}, "message_rate"),
        # A short operator key is refused at start-up (issue 16: it had no minimum length).
        ({"PUBQUIZ_OPERATOR_KEY": "hunter2"}, "operator_key must be at least 16 characters"),
        ({"PUBQUIZ_OPERATOR_KEY": "x" * 15}, "operator_key"),
        ({"PUBQUIZ_FLOOD_STRIKE_DECAY": "0"}, "flood_strike_decay"),
        ({"PUBQUIZ_OPERATOR_ATTEMPT_BURST": "0"}, "operator_attempt_burst"),
        ({"PUBQUIZ_WRITE_LINGER": "-0.01"}, "write_linger must be >= 0"),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(_args(), env=env)


def test_unknown_file_settings_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "engine.toml"
    toml.write_text("prot = 7000\n")
    with pytest.raises(ConfigError, match="prot"):
        load_config(_args("--config", str(toml)), env={})


def test_serve_help_documents_every_setting() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = serve.format_help()
    for field in ServerConfig.__attrs_attrs__:
        assert "--" + field.name.replace("_", "-") in text
        assert "PUBQUIZ_" + field.name.upper() in text
