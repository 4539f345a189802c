"""The operator's ``generate`` request: a round of model-written questions for a session's quiz.

Rules this module keeps:

1. Only before the start: a quiz that players have begun cannot change under them. The round is
   appended (jokers and wagers already placed keep their rounds).
2. The model call is awaited on the requesting connection's task; the session is only touched
   at the end, synchronously (``LiveSession.add_round``), so a slow model holds up nobody else
   and the session's one-writer rule holds.
3. Every question went through the quiz validator (``generate``); the whole quiz is validated
   again with the new round; anything refused is reported, nothing half-added.
4. It needs the engine's configuration (the model server) and its store (the cache of
   generated questions), nothing else of the engine. The ``generate`` package is imported on
   the first request (not to dodge a cycle: it is the only user of the HTTP client, which an
   engine that never generates need not load).
"""

from __future__ import annotations

from pubquiz_engine.errors import ErrorCode, Rejected
from pubquiz_engine.game import quiz_to_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.session import LiveSession
from pubquiz_engine.store import Store


async def generate_round(cfg: ServerConfig, store: Store, session: LiveSession,
                         msg: m.Generate) -> m.Generated:
    from pubquiz_engine.generate import GenerationRequest, GeneratorError, generate_questions
    from pubquiz_engine.generate.cache import StoreCache
    from pubquiz_engine.generate.client import ChatClient, ModelConfig
    from pubquiz_engine.generate.core import new_round, quiz_prompts

    if session.game.phase != "lobby":
        raise Rejected(ErrorCode.WRONG_PHASE, "rounds can only be added before the start")
    if not cfg.generator_url or not cfg.generator_model:
        raise Rejected(ErrorCode.GENERATOR_UNAVAILABLE,
                       "no model server is configured on this engine")
    try:
        request = GenerationRequest(topic=msg.topic, count=msg.count, kind=msg.kind,
                                    difficulty=msg.difficulty,
                                    language=msg.language or "English")
        model_config = ModelConfig(base_url=cfg.generator_url, model=cfg.generator_model,
                                   api_key=cfg.generator_api_key,
                                   timeout=cfg.generator_timeout)
    except ValueError as exc:
        raise Rejected(ErrorCode.INVALID_COMMAND, str(exc)) from None
    try:
        async with ChatClient(model_config) as model:
            result = await generate_questions(
                request, model, cache=StoreCache(store),
                existing=quiz_prompts(quiz_to_data(session.game.quiz)))
    except GeneratorError as exc:
        raise Rejected(ErrorCode.GENERATOR_UNAVAILABLE, str(exc)) from None
    if not result.questions:
        raise Rejected(ErrorCode.GENERATOR_UNAVAILABLE,
                       "the model gave no usable question; nothing was added")
    # A round the quiz refuses is ``invalid_command`` from the game itself (commands.AddRound).
    index = session.add_round(new_round(msg.round_title or msg.topic, result.questions),
                              source="generate")
    notes = [*result.notes]
    if result.dropped:
        notes.append(f"{len(result.dropped)} question(s) dropped: "
                     + "; ".join(d.reason for d in result.dropped[:10]))
    return m.Generated(rid=msg.rid, round=index, added=len(result.questions),
                       dropped=len(result.dropped), notes=tuple(n[:1000] for n in notes[:64]))
