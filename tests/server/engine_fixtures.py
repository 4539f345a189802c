"""Helpers for end-to-end tests: an engine on 127.0.0.1 port 0 with a private SQLite file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pubquiz_engine.game import Quiz, load_quiz_data
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import Engine, EngineAddress, running_engine

SHORT_QUIZ: dict[str, Any] = {
    "format": 1,
    "title": "Test night",
    "rounds": [
        {
            "title": "Round one",
            "items": [
                {"kind": "single", "prompt": "Capital of France?",
                 "choices": ["Paris", "Lyon", "Nice"], "answer": "Paris", "time_limit": 30,
                 "points": 2},
                {"kind": "text", "prompt": "Band of Abbey Road?",
                 "answer": ["The Beatles", "Beatles"], "time_limit": 30},
            ],
        },
        {
            "title": "Round two",
            "items": [
                {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True,
                 "time_limit": 30},
            ],
        },
    ],
}


def short_quiz(**question_overrides: Any) -> Quiz:
    data = {**SHORT_QUIZ}
    if question_overrides:
        rounds = [dict(r, items=[dict(i, **question_overrides) for i in r["items"]])
                  for r in SHORT_QUIZ["rounds"]]
        data["rounds"] = rounds
    return load_quiz_data(data, source="test")


@contextlib.asynccontextmanager
async def engine_at(tmp_path: Path, **settings: Any
                    ) -> AsyncIterator[tuple[Engine, EngineAddress]]:
    settings.setdefault("port", 0)
    settings.setdefault("data_dir", str(tmp_path))
    settings.setdefault("join_rate", 1000.0)
    settings.setdefault("join_burst", 1000)
    async with running_engine(ServerConfig(**settings)) as pair:
        yield pair
