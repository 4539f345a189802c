"""Hypothesis strategies shared by the test suite (import as ``import strategies``).

Protocol part: strategies are *derived* from the message schema (the ``Spec`` each field of a
``pubquiz_engine.protocol`` message declares), so a new message or field is covered without
touching this file. Other helpers may append strategies below; never remove what is here.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from pubquiz_engine.protocol import fields as pf
from pubquiz_engine.protocol import messages as m

# ---------------------------------------------------------------------------------------------
# Protocol: scalar and field strategies.

#: Strings stay short by default: long enough to hit multi-byte UTF-8, short enough to keep the
#: property tests fast. The length limits themselves are tested with explicit examples.
MAX_TEXT = 40


def texts(max_chars: int) -> st.SearchStrategy[str]:
    """Valid pubquiz.v1 strings (any Unicode but lone surrogates) of at most ``max_chars``."""
    # codec="utf-8" leaves out lone surrogates, which no UTF-8 frame can carry.
    return st.text(st.characters(codec="utf-8"), max_size=min(max_chars, MAX_TEXT))


def finite_numbers() -> st.SearchStrategy[int | float]:
    return st.integers(pf.SAFE_MIN, pf.SAFE_MAX) | st.floats(allow_nan=False, allow_infinity=False)


_SCALARS: st.SearchStrategy[Any] = st.none() | st.booleans() | finite_numbers() | texts(MAX_TEXT)


def plain_values(depth: int = 4) -> st.SearchStrategy[Any]:
    """Free-form plain data (what a ``MapSpec`` field holds), nested at most ``depth`` levels."""
    if depth <= 0:
        return _SCALARS
    inner = st.deferred(lambda: plain_values(depth - 1))
    return _SCALARS | st.lists(inner, max_size=4) | st.dictionaries(texts(12), inner, max_size=4)


def plain_maps(depth: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    """A str-keyed map of plain data (``quiz``, ``options``, ``state``)."""
    return st.dictionaries(texts(12), plain_values(depth - 1), max_size=5)


def _choice_lists() -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(0, pf.MAX_CHOICES - 1), max_size=8).map(tuple)


def spec_strategy(spec: pf.Spec) -> st.SearchStrategy[Any]:
    """Values that ``spec`` accepts (as they are stored after construction)."""
    if isinstance(spec, pf.Nullable):
        return st.none() | spec_strategy(spec.inner)
    if isinstance(spec, pf.IntSpec):
        return st.integers(spec.lo, spec.hi)
    if isinstance(spec, pf.BoolSpec):
        return st.booleans()
    if isinstance(spec, pf.TextSpec):
        return texts(spec.max_chars)
    if isinstance(spec, pf.EnumSpec):
        return st.sampled_from(spec.values)
    if isinstance(spec, pf.NumberSpec):
        return finite_numbers()
    if isinstance(spec, pf.IntListSpec):
        ints = st.integers(spec.lo, spec.hi)
        return st.lists(ints, max_size=min(spec.max_len, 8)).map(tuple)
    if isinstance(spec, pf.TextListSpec):
        strs = texts(spec.max_chars)
        return st.lists(strs, max_size=min(spec.max_len, 6)).map(tuple)
    if isinstance(spec, pf.AnswerSpec):
        answers: st.SearchStrategy[Any] = (
            st.booleans() | finite_numbers() | texts(pf.MAX_ANSWER_CHARS) | _choice_lists()
        )
        if spec.accepted_texts:
            answers |= st.lists(texts(pf.MAX_ANSWER_CHARS), min_size=1, max_size=4).map(tuple)
        return answers
    if isinstance(spec, pf.LeaderboardSpec):
        row = st.tuples(
            st.integers(1, pf.U31_MAX),
            st.integers(0, pf.U31_MAX),
            texts(pf.MAX_NAME_CHARS),
            st.integers(pf.SAFE_MIN, pf.SAFE_MAX),
        )
        return st.lists(row, max_size=6).map(tuple)
    if isinstance(spec, pf.ScoreListSpec):
        pair = st.tuples(st.integers(0, pf.U31_MAX), st.integers(pf.SAFE_MIN, pf.SAFE_MAX))
        return st.lists(pair, max_size=6).map(tuple)
    if isinstance(spec, pf.MapSpec):
        return plain_maps()
    raise TypeError(f"no strategy for {spec!r}")  # a new Spec class needs a branch here


# ---------------------------------------------------------------------------------------------
# Protocol: message strategies.


@st.composite
def _create_session(draw: st.DrawFn) -> m.CreateSession:
    # The one cross-field rule: exactly one of quiz_path and quiz.
    inline = draw(st.booleans())
    return m.CreateSession(
        rid=draw(st.integers(0, pf.U31_MAX)),
        key=draw(texts(pf.MAX_KEY_CHARS)),
        quiz_path=None if inline else draw(texts(pf.MAX_PATH_CHARS)),
        quiz=draw(plain_maps()) if inline else None,
        mode=draw(st.sampled_from(m.MODES)),
        options=draw(st.none() | plain_maps()),
    )


def message_strategy(cls: type[m.Message]) -> st.SearchStrategy[m.Message]:
    """Valid instances of one message class."""
    if cls is m.CreateSession:
        return _create_session()
    kwargs = {f.name: spec_strategy(pf.field_spec(f)) for f in attrs.fields(cls)}  # type: ignore[arg-type]
    return st.builds(cls, **kwargs)


def client_messages() -> st.SearchStrategy[m.Message]:
    """Any valid client -> server message."""
    return st.one_of([message_strategy(c) for c in m.CLIENT_MESSAGES.values()])


def server_messages() -> st.SearchStrategy[m.Message]:
    """Any valid server -> client message."""
    return st.one_of([message_strategy(c) for c in m.SERVER_MESSAGES.values()])


def messages(direction: m.Direction) -> st.SearchStrategy[m.Message]:
    """Any valid message of one direction."""
    if direction is m.Direction.CLIENT_TO_SERVER:
        return client_messages()
    return server_messages()


# ---------------------------------------------------------------------------------------------
# Game: names and answer values (pubquiz_engine.game). Appended by the game helper.

#: Characters a hostile or careless player might put in a name: look-alikes, invisibles,
#: bidi overrides, combining marks, control characters, wide and emoji characters.
NASTY_NAME_CHARS = (
    "aAeEoOiIlL1 0 -_'.\u0430\u0435\u043e\u0456\u03bf\u00e9\u00c9\u0301\u0308"
    "\u200b\u200d\u202e\u2066\ufeff\x00\x07\n\t\u3000\uff21\U0001f37a"
)


def game_names(max_size: int = 30) -> st.SearchStrategy[str]:
    """Player or team names, mostly plausible, often hostile."""
    return st.one_of(
        st.text(st.sampled_from(NASTY_NAME_CHARS), min_size=0, max_size=max_size),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=max_size),
        st.sampled_from(["Alice", "alice", "ALICE ", "\u0430lice", "Bob", "B\u043eb", "Quiz Team"]),
    )


def game_answer_values() -> st.SearchStrategy[Any]:
    """Answer values of every shape, right or wrong, valid or not, for any question kind."""
    ints = st.integers(min_value=-3, max_value=8)
    return st.one_of(
        ints,
        st.booleans(),
        st.lists(ints, max_size=6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.sampled_from(["Paris", " paris! ", "Pari", "", "   ", "The Beatles", "\x00", "x" * 300]),
        st.none(),
    )
