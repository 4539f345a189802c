"""Answer validation and judging for every question kind, names, and the points formula."""

from __future__ import annotations

import math
from typing import Any

import pytest
import strategies
from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.errors import ErrorCode, Rejected
from pubquiz_engine.game.matching import (
    closest_winners,
    edit_distance,
    evaluate,
    normalise_text,
    validate_answer,
)
from pubquiz_engine.game.names import (
    RAW_LIMIT,
    _cleaned_unicode,
    _skeleton_unicode,
    clean_name,
    skeleton,
)
from pubquiz_engine.game.quiz import NumericMode, Question, QuestionKind
from pubquiz_engine.game.scoring import Entry, award, rank, speed_bonus

SINGLE = Question(QuestionKind.SINGLE, "Capital of Australia?", 2,
                  choices=("Sydney", "Melbourne", "Canberra", "Perth"))
MULTI = Question(QuestionKind.MULTIPLE, "Noble gases?", (0, 2, 4),
                 choices=("Neon", "Nitrogen", "Argon", "Chlorine", "Krypton"))
MULTI_PARTIAL = Question(QuestionKind.MULTIPLE, "Noble gases?", (0, 2, 4),
                         choices=MULTI.choices, partial=True)
TF = Question(QuestionKind.TRUEFALSE, "Crows: murder?", True)
TEXT = Question(QuestionKind.TEXT, "Abbey Road band?", ("The Beatles",),
                ignore_articles=("the", "a", "an"), typos=1)
TEXT_STRICT = Question(QuestionKind.TEXT, "Gold?", ("Au",))
NUM = Question(QuestionKind.NUMERIC, "Wall fell?", 1989)
NUM_TOL = Question(QuestionKind.NUMERIC, "Light km/s?", 299792, tolerance=1000.0)
NUM_CLOSEST = Question(QuestionKind.NUMERIC, "Eiffel m?", 330, numeric_mode=NumericMode.CLOSEST)
ORDER = Question(QuestionKind.ORDERING, "Planets", (3, 1, 0, 2),
                 choices=("Mars", "Venus", "Jupiter", "Mercury"))
ORDER_PARTIAL = Question(QuestionKind.ORDERING, "Planets", (3, 1, 0, 2),
                         choices=ORDER.choices, partial=True)


def invalid(question: Question, value: Any) -> str:
    with pytest.raises(Rejected) as info:
        validate_answer(question, value)
    assert info.value.code is ErrorCode.INVALID_ANSWER
    return info.value.message


# --- single choice ---------------------------------------------------------------------------
def test_single_choice_valid_and_judged() -> None:
    assert validate_answer(SINGLE, 2) == 2
    assert evaluate(SINGLE, 2) == 1.0
    assert evaluate(SINGLE, 0) == 0.0


@pytest.mark.parametrize("value", [-1, 4, 10**30, True, False, 2.0, "2", None, [2]])
def test_single_choice_refuses_out_of_range_and_wrong_types(value: Any) -> None:
    invalid(SINGLE, value)


# --- multiple choice -------------------------------------------------------------------------
def test_multiple_choice_is_canonicalised_sorted() -> None:
    assert validate_answer(MULTI, (4, 0, 2)) == [0, 2, 4]
    assert evaluate(MULTI, [0, 2, 4]) == 1.0
    assert evaluate(MULTI, [0, 2]) == 0.0  # all or nothing by default


@pytest.mark.parametrize("value", [[], [0, 0], [5], [-1], [True], [0, 1, 2, 3, 4, 4], 1, "0,2"])
def test_multiple_choice_refuses_empty_duplicate_and_out_of_range(value: Any) -> None:
    invalid(MULTI, value)


def test_multiple_choice_partial_credit_never_negative() -> None:
    assert evaluate(MULTI_PARTIAL, [0, 2]) == pytest.approx(2 / 3)
    assert evaluate(MULTI_PARTIAL, [0, 1]) == 0.0  # one right, one wrong: cancels
    assert evaluate(MULTI_PARTIAL, [1, 3]) == 0.0  # two wrong: floored at zero
    assert evaluate(MULTI_PARTIAL, [0, 1, 2, 3, 4]) == pytest.approx(1 / 3)


# --- true / false ----------------------------------------------------------------------------
def test_truefalse() -> None:
    assert validate_answer(TF, True) is True
    assert evaluate(TF, True) == 1.0
    assert evaluate(TF, False) == 0.0
    for value in (1, 0, "true", None):
        invalid(TF, value)


# --- free text -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given",
    ["The Beatles", "the beatles", "  BEATLES!  ", "Beatles", "The Beatles.", "Béatles",
     "the  beatles", "Beatels", "Beetles", "\uff34\uff48\uff45 Beatles"],
)
def test_text_matches_after_normalisation_articles_and_one_typo(given: str) -> None:
    assert evaluate(TEXT, validate_answer(TEXT, given)) == 1.0


@pytest.mark.parametrize("given", ["The Stones", "Beat", "Btls", "The", "The Bea tles x"])
def test_text_refuses_wrong_answers(given: str) -> None:
    assert evaluate(TEXT, validate_answer(TEXT, given)) == 0.0


def test_text_typo_tolerance_skips_short_answers_and_numbers() -> None:
    assert evaluate(TEXT_STRICT, "au") == 1.0
    assert evaluate(TEXT_STRICT, "Ag") == 0.0
    short = Question(QuestionKind.TEXT, "?", ("cat",), typos=1)
    assert evaluate(short, "car") == 0.0  # 3 letters: must be exact
    year = Question(QuestionKind.TEXT, "?", ("Apollo 11",), typos=1)
    assert evaluate(year, "apolo 11") == 1.0
    assert evaluate(year, "Apollo 12") == 0.0  # a different number is not a typo


def test_text_without_article_option_keeps_articles() -> None:
    q = Question(QuestionKind.TEXT, "?", ("The Who",))
    assert evaluate(q, "the who") == 1.0
    assert evaluate(q, "Who") == 0.0


@pytest.mark.parametrize("value", ["", "   ", "\t\n", "x" * 201, "a\x00b", 42, None, ["a"]])
def test_text_refuses_empty_huge_control_and_non_text(value: Any) -> None:
    invalid(TEXT, value)


def test_text_is_stripped_but_not_normalised_on_the_hot_path() -> None:
    assert validate_answer(TEXT, "  The Beatles! ") == "The Beatles!"


def test_normalise_text() -> None:
    assert normalise_text("  Ça   m'est ÉGAL!! ") == "ca mest egal"
    assert normalise_text("AC/DC") == "ac dc"
    assert normalise_text("Guns N' Roses") == "guns n roses"
    assert normalise_text("The The", ("the",)) == "the"  # only one leading article
    assert normalise_text("The", ("the",)) == "the"  # never the whole answer
    assert normalise_text("?!...") == ""
    assert normalise_text("Straße") == "strasse"


def test_punctuation_only_answer_matches_nothing() -> None:
    assert evaluate(TEXT, validate_answer(TEXT, "?!")) == 0.0


@given(st.text(max_size=12), st.text(max_size=12))
def test_edit_distance_is_symmetric_and_bounded(a: str, b: str) -> None:
    d = edit_distance(a, b, 3)
    assert d == edit_distance(b, a, 3)
    assert 0 <= d <= 4
    assert (d == 0) == (a == b)


def test_edit_distance_counts_a_swap_once() -> None:
    assert edit_distance("paris", "pairs", 2) == 1
    assert edit_distance("kitten", "sitting", 5) == 3
    assert edit_distance("a" * 50, "b" * 50, 2) == 3  # capped, and stops early


# --- numeric ---------------------------------------------------------------------------------
def test_numeric_exact_and_tolerance() -> None:
    assert evaluate(NUM, validate_answer(NUM, 1989)) == 1.0
    assert evaluate(NUM, validate_answer(NUM, 1989.0)) == 1.0
    assert evaluate(NUM, 1988) == 0.0
    assert evaluate(NUM_TOL, 300000) == 1.0
    assert evaluate(NUM_TOL, 298792) == 1.0  # exactly at the edge of the tolerance
    assert evaluate(NUM_TOL, 298791.9) == 0.0


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, 10**16, -(10**40), 1e300, True, "1989", None, [1]]
)
def test_numeric_refuses_nan_inf_huge_and_non_numbers(value: Any) -> None:
    invalid(NUM, value)


def test_numeric_accepts_large_but_sane_values() -> None:
    assert validate_answer(NUM, 10**15) == 10**15
    assert validate_answer(NUM, -1e15) == -1e15


def test_closest_wins_all_ties_win() -> None:
    assert closest_winners(NUM_CLOSEST, {1: 300, 2: 360, 3: 324, 4: 336}) == {3, 4}
    assert closest_winners(NUM_CLOSEST, {1: 10**15}) == {1}
    assert closest_winners(NUM_CLOSEST, {}) == set()


# --- ordering --------------------------------------------------------------------------------
def test_ordering() -> None:
    assert validate_answer(ORDER, (3, 1, 0, 2)) == [3, 1, 0, 2]
    assert evaluate(ORDER, [3, 1, 0, 2]) == 1.0
    assert evaluate(ORDER, [1, 3, 0, 2]) == 0.0
    assert evaluate(ORDER_PARTIAL, [1, 3, 0, 2]) == 0.5
    assert evaluate(ORDER_PARTIAL, [0, 1, 2, 3]) == 0.25
    assert evaluate(ORDER_PARTIAL, [2, 0, 3, 1]) == 0.0


@pytest.mark.parametrize(
    "value", [[0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 4], [], "0123", [0, 1, 2, 3, 0]]
)
def test_ordering_refuses_partial_duplicate_and_out_of_range(value: Any) -> None:
    invalid(ORDER, value)


@given(strategies.game_answer_values())
def test_any_value_is_either_refused_or_judged_in_range(value: Any) -> None:
    for question in (SINGLE, MULTI, MULTI_PARTIAL, TF, TEXT, NUM, NUM_TOL, ORDER, ORDER_PARTIAL):
        try:
            canonical = validate_answer(question, value)
        except Rejected as exc:
            assert exc.code is ErrorCode.INVALID_ANSWER
            continue
        assert 0.0 <= evaluate(question, canonical) <= 1.0


# --- names -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [("Alice", "alice"), ("Alice", "  ALICE  "), ("Alice", "\u0430lice"),  # Cyrillic a
     ("Bob", "B\u043eb"), ("Quiz Team", "quizteam"), ("Zoë", "Zoe"), ("Quiz", "\uff31uiz"),
     ("Pop Pickers", "P\u03bfp Pickers")],  # Greek omicron
)
def test_look_alike_names_collide(a: str, b: str) -> None:
    assert skeleton(clean_name(a)) == skeleton(clean_name(b))


def test_different_names_do_not_collide() -> None:
    assert skeleton("Alice") != skeleton("Alicia")
    assert skeleton("\U0001f37a") != skeleton("\U0001f355")


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a\u200bb", "evil\u202egnp", "nul\x00", "bell\x07", "\ufeffbom", "x" * 10_000,
     "z" + "\u0301" * 3000, "a\u0301\u0301\u0301\u0301", "x" * 25, "\u2066iso", 42, None],
)
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(Rejected) as info:
        clean_name(name)
    assert info.value.code is ErrorCode.INVALID_NAME


def test_names_are_normalised_and_whitespace_collapsed() -> None:
    assert clean_name("  Ann\u3000 \u00a0 Lee ") == "Ann Lee"
    assert clean_name("e\u0301") == "\u00e9"  # NFC/NFKC composes
    assert clean_name("\uff21nn") == "Ann"
    assert clean_name("x" * 32, limit=32) == "x" * 32


@given(strategies.game_names())
def test_any_name_is_refused_or_clean(raw: str) -> None:
    try:
        name = clean_name(raw)
    except Rejected as exc:
        assert exc.code is ErrorCode.INVALID_NAME
        return
    assert 1 <= len(name) <= 24
    assert name == name.strip()
    assert skeleton(name)
    assert not any(c in name for c in "\x00\u200b\u202e\ufeff\n\t")


_ASCII = st.text(st.characters(max_codepoint=127), max_size=40)


@given(_ASCII)
def test_the_ascii_fast_paths_agree_with_the_unicode_rules(raw: str) -> None:
    """``clean_name`` and ``skeleton`` take a shortcut for ASCII (most names): the result is
    what the full Unicode rules give."""
    assert skeleton(raw) == _skeleton_unicode(raw)
    if raw.isprintable():
        text = _cleaned_unicode(raw, "name")
        if text:
            assert clean_name(raw, limit=RAW_LIMIT) == text
        else:
            with pytest.raises(Rejected):
                clean_name(raw, limit=RAW_LIMIT)
    else:  # a control character: refused either way
        with pytest.raises(Rejected):
            _cleaned_unicode(raw, "name")
        with pytest.raises(Rejected):
            clean_name(raw, limit=RAW_LIMIT)


# --- points and ranking ----------------------------------------------------------------------
def test_speed_bonus_formula() -> None:
    assert speed_bonus(10, 0, 30) == 10
    assert speed_bonus(10, 15, 30) == 5
    assert speed_bonus(10, 45, 30) == 0  # after an extension: no negative bonus
    assert speed_bonus(10, -2, 30) == 10
    assert speed_bonus(0, 0, 30) == 0


def test_award_formula() -> None:
    base: dict[str, Any] = {"points": 2, "max_bonus": 4, "elapsed": 7.5, "time_limit": 30.0}
    assert award(fraction=1.0, multiplier=1.0, joker=False, **base) == 5  # 2 + 3
    assert award(fraction=1.0, multiplier=2.0, joker=True, **base) == 20
    assert award(fraction=0.5, multiplier=1.0, joker=False, **base) == 1  # no bonus when partial
    assert award(fraction=0.0, multiplier=3.0, joker=True, **base) == 0
    assert award(points=1, fraction=1.0, max_bonus=0, elapsed=0, time_limit=30, multiplier=1.5,
                 joker=False) == 2  # 1.5 rounds half up


def test_rank_shares_equal_scores_1_2_2_4() -> None:
    lines = rank([Entry(1, "dora", 5), Entry(2, "Carl", 7), Entry(3, "bea", 5), Entry(4, "al", 9),
                  Entry(5, "eve", 1)])
    assert [(s.rank, s.name, s.score) for s in lines] == [
        (1, "al", 9), (2, "Carl", 7), (3, "bea", 5), (3, "dora", 5), (5, "eve", 1)]


def test_rank_uses_the_tiebreak_distance_before_sharing() -> None:
    lines = rank([Entry(1, "a", 5, 10.0), Entry(2, "b", 5, 2.0), Entry(3, "c", 5, 2.0),
                  Entry(4, "d", 5)])
    assert [(s.rank, s.id) for s in lines] == [(1, 2), (1, 3), (3, 1), (4, 4)]
