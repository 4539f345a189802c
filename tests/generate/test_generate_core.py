"""The pure half: requests and cache keys, the prompt and schema, parsing what the model says."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import strategies
from hypothesis import given, settings
from hypothesis import strategies as st

from pubquiz_engine.generate.core import (
    MAX_AVOID,
    answer_schema,
    build_messages,
    decode_cached,
    encode_cached,
    parse_completion,
    prompt_key,
    validate_item,
)
from pubquiz_engine.generate.records import KINDS, Completion, Dropped, GenerationRequest


def answer(questions: Any, finish: str = "stop") -> Completion:
    return Completion(json.dumps({"questions": questions}), finish)


CHOICE = {"prompt": "Which band sang Wonderwall?", "choices": ["Blur", "Oasis", "Pulp", "Suede"],
          "answer": "Oasis", "explanation": "1995."}


def test_request_is_validated_and_normalised() -> None:
    request = GenerationRequest(topic="  90s \n music ", count=10, kind="choice")
    assert request.topic == "90s music"
    assert request.language == "English"
    for bad in ({"count": 0}, {"count": 51}, {"count": True}, {"kind": "single"},
                {"topic": ""}, {"topic": "x" * 201}, {"difficulty": "brutal"},
                {"language": ""}):
        fields: dict[str, Any] = {"topic": "t", "count": 1, "kind": "text", **bad}
        with pytest.raises(ValueError):
            GenerationRequest(**fields)


def test_cache_key_is_the_normalised_request_and_the_model_but_not_the_count() -> None:
    def key(model: str = "m", **kw: Any) -> str:
        fields = {"topic": "90s music", "count": 10, "kind": "choice", **kw}
        return GenerationRequest(**fields).cache_key(model)

    assert key().startswith("ai-questions:")
    assert key(topic="90s  MUSIC ") == key()
    assert key(language=" english") == key()
    assert key(count=3) == key()  # a cache entry is a pool; fewer questions come from it
    others = [key(model="other"), key(kind="text"), key(difficulty="hard"),
              key(language="French"), key(topic="80s music")]
    assert len({key(), *others}) == 1 + len(others)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_requires_every_property_and_allows_no_other(kind: str) -> None:
    schema = answer_schema(kind)
    item = schema["properties"]["questions"]["items"]
    assert schema["required"] == ["questions"] and schema["additionalProperties"] is False
    assert set(item["required"]) == set(item["properties"])
    assert item["additionalProperties"] is False


def test_messages_carry_the_request_and_a_bounded_avoid_list() -> None:
    request = GenerationRequest(topic="Tour de France", count=5, kind="numeric",
                                difficulty="hard", language="French")
    avoid = [f"Old question {i}?" for i in range(MAX_AVOID + 20)]
    system, user = build_messages(request, 3, avoid)
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "Write 3 quiz questions about: Tour de France." in text
    assert "French" in text and "hard" in text and "number" in text
    assert "Old question 19?" not in text  # the oldest ones are left out
    assert f"Old question {MAX_AVOID + 19}?" in text
    assert text.count("\n- ") == MAX_AVOID


def test_valid_choice_questions_become_single_items() -> None:
    items, dropped = parse_completion(answer([CHOICE, {**CHOICE, "extra": "ignored"}]),
                                      "choice", 1)
    assert dropped == []
    assert items[0] == {"prompt": CHOICE["prompt"], "kind": "single",
                        "choices": CHOICE["choices"], "answer": "Oasis",
                        "explanation": "1995."}
    assert "extra" not in items[1]


@pytest.mark.parametrize(("kind", "question", "reason"), [
    ("choice", {**CHOICE, "choices": ["Blur", "BLUR", "Pulp"]}, "duplicate choice"),
    ("choice", {**CHOICE, "answer": "Radiohead"}, "must name one of the 4"),
    ("choice", {**CHOICE, "choices": ["Oasis"]}, "2 to 12 choices"),
    ("choice", {**CHOICE, "prompt": "   "}, "field 'prompt'"),
    ("choice", {k: v for k, v in CHOICE.items() if k != "answer"}, "field 'answer': is required"),
    ("numeric", {"prompt": "Year?", "answer": math.nan}, "finite"),
    ("numeric", {"prompt": "Year?", "answer": math.inf}, "finite"),
    ("numeric", {"prompt": "Year?", "answer": "1989"}, "must be a number"),
    ("numeric", {"prompt": "Year?", "answer": 1989, "tolerance": -1}, "tolerance"),
    ("text", {"prompt": "Band?", "answers": []}, "non-empty list"),
    ("text", {"prompt": "Band?", "answers": ["Blur", "?!"]}, "can never match"),
    ("text", {"prompt": "Band?", "answers": [3]}, "must be text"),
    ("text", ["not", "an", "object"], "JSON object"),
])
def test_invalid_questions_are_dropped_with_the_validators_reason(
    kind: str, question: Any, reason: str
) -> None:
    good = {"choice": CHOICE, "text": {"prompt": "Who?", "answers": ["Blur"]},
            "numeric": {"prompt": "When?", "answer": 1995}}[kind]
    items, dropped = parse_completion(answer([question, good]), kind, 2)
    assert len(items) == 1 and items[0]["prompt"] == good["prompt"]
    assert len(dropped) == 1 and dropped[0].attempt == 2
    assert reason in dropped[0].reason


def test_text_answers_lose_repeats_and_ignore_articles() -> None:
    items, _ = parse_completion(answer([{"prompt": "Band?", "answers":
                                         ["The Verve", "Verve", " verve ", "Richard Ashcroft"]}]),
                                "text", 1)
    assert items == [{"prompt": "Band?", "kind": "text",
                      "answer": ["The Verve", "Richard Ashcroft"], "ignore_articles": True}]


def test_numeric_keeps_tolerance_and_unit() -> None:
    items, _ = parse_completion(answer([{"prompt": "How tall?", "answer": 8849, "tolerance": 10,
                                         "unit": "m", "explanation": ""}]), "numeric", 1)
    assert items == [{"prompt": "How tall?", "kind": "numeric", "answer": 8849,
                      "tolerance": 10, "unit": "m"}]


@pytest.mark.parametrize(("completion", "reason"), [
    (Completion('{"questions": [{"prompt": "Who'), "not JSON"),
    (Completion('{"questions": [{"prompt": "Who', "length"), "cut off"),
    (Completion("   "), "empty"),
    (Completion('{"items": []}'), "no \"questions\" list"),
    (Completion('"questions"'), "no \"questions\" list"),
    (Completion('{"questions": []}'), "held no questions"),
])
def test_unusable_answers_are_one_drop(completion: Completion, reason: str) -> None:
    items, dropped = parse_completion(completion, "choice", 3)
    assert items == [] and len(dropped) == 1
    assert dropped[0].attempt == 3 and dropped[0].prompt is None
    assert reason in dropped[0].reason


def test_a_code_fence_and_a_bare_list_are_tolerated() -> None:
    fenced = Completion("```json\n" + json.dumps({"questions": [CHOICE]}) + "\n```")
    bare = Completion(json.dumps([CHOICE]))
    for completion in (fenced, bare):
        items, dropped = parse_completion(completion, "choice", 1)
        assert len(items) == 1 and dropped == []


def test_prompt_key_ignores_case_accents_punctuation_and_spacing() -> None:
    assert prompt_key("Who sang 'Wonderwall'?") == prompt_key("who  sang wonderwall")
    assert prompt_key("Café?") == prompt_key("cafe")
    assert prompt_key("Who sang Wonderwall?") != prompt_key("Who wrote Wonderwall?")


def test_cached_items_are_revalidated() -> None:
    items, dropped = decode_cached(encode_cached([
        {"kind": "single", "prompt": "Q?", "choices": ["A", "B"], "answer": "A"},
        {"kind": "single", "prompt": "Broken?", "choices": ["A", "A"], "answer": "A"},
        "junk",
    ]))
    assert [i["prompt"] for i in items] == ["Q?"]
    assert [d.prompt for d in dropped] == ["Broken?", None]
    assert all(d.attempt == 0 for d in dropped)
    assert decode_cached("{not json")[0] == []
    assert decode_cached('{"a": 1}')[0] == []


def test_dropped_describes_itself_briefly() -> None:
    long = Dropped(2, "field 'answer': bad", "x" * 100).describe()
    assert long.startswith("answer 2: 'xxx") and long.endswith("': field 'answer': bad")
    assert len(long) < 100
    assert Dropped(0, "not JSON").describe() == "cache: not JSON"


_question_like = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=30) | strategies.plain_values(2),
        "choices": st.lists(st.text(max_size=8), max_size=5) | strategies.plain_values(2),
        "answer": (st.text(max_size=8) | st.floats() | st.integers()
                   | strategies.plain_values(2)),
        "answers": st.lists(st.text(max_size=8), max_size=4) | strategies.plain_values(2),
        "tolerance": st.floats() | st.integers(-5, 5),
        "unit": st.text(max_size=25),
        "explanation": st.text(max_size=10),
    },
)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(KINDS),
       questions=st.lists(_question_like | strategies.plain_values(2), max_size=4))
def test_whatever_the_model_says_every_kept_item_is_valid(kind: str, questions: Any) -> None:
    # json.dumps writes NaN/Infinity, as a sloppy model might; the parser must cope.
    completion = Completion(json.dumps({"questions": questions}))
    items, dropped = parse_completion(completion, kind, 1)
    assert len(items) + len(dropped) == max(len(questions), 1)
    for item in items:
        assert validate_item(item) == []


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60))
def test_arbitrary_text_never_raises(text: str) -> None:
    items, dropped = parse_completion(Completion(text), "choice", 1)
    assert all(validate_item(i) == [] for i in items)
    assert items or dropped
