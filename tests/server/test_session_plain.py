"""``session._plain``: what an event's payload is stored as (JSON-able plain data)."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pubquiz_engine.server.session import _plain


class Colour(enum.StrEnum):
    RED = "red"


def _reference(value: Any) -> Any:
    """The rule, spelled out: str keys, tuples to lists, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _reference(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
           | st.just(Colour.RED))
_data = st.recursive(_leaves, lambda inner: (
    st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=3) | st.integers() | st.just(Colour.RED), inner,
                      max_size=4)), max_leaves=20)


@given(_data)
def test_plain_is_the_rule(value: Any) -> None:
    plain = _plain(value)
    # NaN != NaN: compare the JSON forms (every NaN is gone by then).
    assert json.dumps(plain, allow_nan=False, sort_keys=True) == json.dumps(
        _reference(value), allow_nan=False, sort_keys=True)
    assert type(plain) is type(_reference(value))
