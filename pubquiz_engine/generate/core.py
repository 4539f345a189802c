"""The pure half of generation: the prompt and JSON schema out, the model's answer in.

Rules this module keeps:

1. Nothing the model says is trusted. Its text is parsed as JSON (a Markdown code fence around
   it is tolerated), each question is mapped field by field to quiz item data (fields we did
   not ask for are ignored, never passed on), and every item goes through the one quiz
   validator, ``game.load_quiz_data``. An item that fails is dropped with the validator's own
   words as the reason; one bad question never costs the others.
2. A few checks the file format cannot make, because a human author would not need them:
   a text question's accepted answers must each mean something after normalisation (an answer
   of ``"!!!"`` can never match), and duplicates among them are removed.
3. Duplicates are found by the prompt's matching form (``game.matching.normalise_text``:
   case, accents, punctuation and spacing do not make a question new).
4. No I/O, no clock, no randomness: the same answer text always gives the same items.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pubquiz_engine.errors import QuizFileError
from pubquiz_engine.game.loader import load_quiz_data
from pubquiz_engine.game.matching import normalise_text
from pubquiz_engine.generate.records import Completion, Dropped, GenerationRequest

MAX_EXPLANATION = 500
MAX_AVOID = 60  # prompts listed in "do not repeat these": enough to steer, bounded in size
_SOURCE = "<generated>"
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*)\n\s*```\s*$", re.DOTALL)
_LOCATED = re.compile(r"^<generated>: round 1, question 1: ")

SYSTEM_PROMPT = (
    "You write questions for a pub quiz. Answer with JSON only, exactly in the shape the "
    "schema gives: an object whose \"questions\" list holds the questions. Every question is "
    "self-contained, unambiguous, factually correct and has one right answer. Keep prompts "
    "under 200 characters."
)

_KIND_RULES = {
    "choice": (
        "Each question is single choice: \"choices\" holds exactly 4 distinct, plausible "
        "options, and \"answer\" is the text of the one correct option, copied exactly."
    ),
    "text": (
        "Each question has a short free-text answer (a name, a word, a title). \"answers\" "
        "lists the accepted spellings: the main answer first, then common variants "
        "(with and without \"The\", short forms, alternative spellings)."
    ),
    "numeric": (
        "Each question's answer is a single number (a year, a count, a measurement). "
        "\"answer\" is that number, \"tolerance\" how far off still counts as right (0 for "
        "exact), \"unit\" its unit or an empty string."
    ),
}

_ITEM_KIND = {"choice": "single", "text": "text", "numeric": "numeric"}
_STRING = {"type": "string"}
_ITEM_PROPERTIES: dict[str, dict[str, Any]] = {
    "choice": {
        "prompt": _STRING,
        "choices": {"type": "array", "items": _STRING},
        "answer": _STRING,
        "explanation": _STRING,
    },
    "text": {
        "prompt": _STRING,
        "answers": {"type": "array", "items": _STRING},
        "explanation": _STRING,
    },
    "numeric": {
        "prompt": _STRING,
        "answer": {"type": "number"},
        "tolerance": {"type": "number"},
        "unit": _STRING,
        "explanation": _STRING,
    },
}


def answer_schema(kind: str) -> dict[str, Any]:
    """The JSON schema the model is asked to follow for ``kind``.

    Every property is required and no other is allowed: the form OpenAI's strict structured
    outputs accept, and one llama.cpp, Ollama and vLLM turn into a grammar.
    """
    properties = _ITEM_PROPERTIES[kind]
    item = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": item}},
        "required": ["questions"],
        "additionalProperties": False,
    }


def build_messages(
    request: GenerationRequest, n: int, avoid: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` questions; ``avoid``: prompts not to repeat."""
    lines = [
        f"Write {n} quiz question{'s' if n != 1 else ''} about: {request.topic}.",
        f"Write them in {request.language}.",
    ]
    if request.difficulty is not None:
        lines.append(f"Difficulty: {request.difficulty}.")
    lines.append(_KIND_RULES[request.kind])
    if avoid:
        # The most recent ones: they are the likeliest to come back.
        shown = list(avoid)[-MAX_AVOID:]
        lines.append("Do not repeat or rephrase any of these questions:")
        lines.extend(f"- {prompt}" for prompt in shown)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(lines)},
    ]


def max_tokens_for(n: int) -> int:
    """A generous cap on the answer's length: room for ``n`` questions, never unbounded."""
    return 400 + 250 * n


def prompt_key(prompt: str) -> str:
    """The form in which two prompts count as the same question (rule 3)."""
    return normalise_text(prompt)


def parse_completion(
    completion: Completion, kind: str, attempt: int
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """The valid quiz items in one answer, and what was dropped from it (rule 1)."""
    text = completion.content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    cut = completion.finish_reason == "length"
    if not text:
        return [], [Dropped(attempt, "the answer was empty")]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        why = ("the answer was cut off (max_tokens) before the JSON ended" if cut
               else f"the answer is not JSON ({exc})")
        return [], [Dropped(attempt, why)]
    raw = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(raw, list):
        return [], [Dropped(attempt, "the answer has no \"questions\" list")]
    if not raw:
        return [], [Dropped(attempt, "the answer held no questions")]
    items: list[dict[str, Any]] = []
    dropped: list[Dropped] = []
    for n, obj in enumerate(raw, start=1):
        item, problem = check_question(obj, kind)
        if item is None:
            prompt = obj.get("prompt") if isinstance(obj, dict) else None
            dropped.append(Dropped(attempt, problem or f"question {n} is invalid",
                                   prompt if isinstance(prompt, str) else None))
        else:
            items.append(item)
    return items, dropped


def check_question(obj: Any, kind: str) -> tuple[dict[str, Any] | None, str | None]:
    """One model question as quiz item data, validated; or ``(None, reason)``."""
    if not isinstance(obj, dict):
        return None, "a question must be a JSON object"
    item = _to_item(obj, kind)
    if kind == "text" and isinstance(item.get("answer"), list):
        accepted = _distinct_answers(item["answer"])
        if isinstance(accepted, str):
            return None, accepted
        item["answer"] = accepted
    problems = validate_item(item)
    if problems:
        return None, "; ".join(problems)
    return item, None


def _to_item(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Map the fields we asked for onto quiz item fields; ignore the rest (rule 1)."""
    # Field order as in the sample quiz file: kind, prompt, choices, answer, the rest.
    item: dict[str, Any] = {"kind": _ITEM_KIND[kind], "prompt": obj.get("prompt")}
    if kind == "choice":
        item["choices"] = obj.get("choices")
        item["answer"] = obj.get("answer")
    elif kind == "text":
        answers = obj.get("answers", obj.get("answer"))
        item["answer"] = [answers] if isinstance(answers, str) else answers
        # Models write "The Beatles" as readily as "Beatles": let either match.
        item["ignore_articles"] = True
    else:
        item["answer"] = obj.get("answer")
        tolerance = obj.get("tolerance")
        if tolerance not in (None, 0):
            item["tolerance"] = tolerance
        unit = obj.get("unit")
        if isinstance(unit, str) and unit.strip():
            item["unit"] = unit.strip()
    explanation = obj.get("explanation")
    # An explanation is a nicety: a missing or overlong one is left out, the question kept.
    if isinstance(explanation, str) and 0 < len(explanation.strip()) <= MAX_EXPLANATION:
        item["explanation"] = explanation.strip()
    # None means "the model left it out": the validator then says the field is required.
    return {k: v for k, v in item.items() if v is not None}


def _distinct_answers(answers: list[Any]) -> list[Any] | str:
    """Rule 2: every accepted text answer must normalise to something; drop repeats."""
    out: list[Any] = []
    seen: set[str] = set()
    for answer in answers:
        if not isinstance(answer, str):
            out.append(answer)  # the validator names the wrong type
            continue
        key = normalise_text(answer, ("the", "a", "an"))
        if not key:
            return f"accepted answer {answer!r} has no letters or digits: it can never match"
        if key not in seen:
            seen.add(key)
            out.append(answer.strip())
    return out


def validate_item(item: Mapping[str, Any]) -> list[str]:
    """The quiz validator's problems with one item, without the location prefix."""
    data = {"title": "generated", "rounds": [{"title": "generated", "items": [dict(item)]}]}
    try:
        load_quiz_data(data, source=_SOURCE)
    except QuizFileError as exc:
        return [_LOCATED.sub("", problem) for problem in exc.problems]
    return []


def decode_cached(value: str) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """Cached items, re-validated: an entry from an older engine or a corrupted one is
    dropped item by item, never trusted."""
    try:
        raw = json.loads(value)
    except ValueError:
        return [], [Dropped(0, "the cache entry is not JSON; ignored")]
    if not isinstance(raw, list):
        return [], [Dropped(0, "the cache entry is not a list; ignored")]
    items: list[dict[str, Any]] = []
    dropped: list[Dropped] = []
    for obj in raw:
        if not isinstance(obj, dict):
            dropped.append(Dropped(0, "a cached question is not an object"))
            continue
        problems = validate_item(obj)
        if problems:
            prompt = obj.get("prompt")
            dropped.append(Dropped(0, "; ".join(problems),
                                   prompt if isinstance(prompt, str) else None))
        else:
            items.append(obj)
    return items, dropped


def encode_cached(items: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(items), ensure_ascii=False, separators=(",", ":"))


def quiz_prompts(data: Mapping[str, Any]) -> list[str]:
    """Every question prompt in plain quiz data (for deduplication against it)."""
    prompts: list[str] = []
    for rnd in data.get("rounds", ()):
        for item in rnd.get("items", ()):
            if item.get("kind") != "slide" and isinstance(item.get("prompt"), str):
                prompts.append(item["prompt"])
    return prompts


def new_round(title: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"title": title, "items": [dict(item) for item in items]}
