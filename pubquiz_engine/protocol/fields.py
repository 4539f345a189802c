"""The validation framework of pubquiz.v1 messages: field specs, their limits, ``FieldError``.

Rules this module keeps:

1. A ``Spec`` checks (and normalises) one field's value and is introspectable: ``check(value,
   name)`` returns the value to store or raises ``FieldError`` (a ``ValueError`` carrying the
   stable ``ErrorCode`` the codec answers with). ``wire(spec)`` makes it an attrs field
   converter, and keeps the spec in the field's metadata (``SPEC_KEY``) where the hypothesis
   strategies and the SPEC.md cross-check read it (``field_spec``).
2. Sequences become tuples and free-form maps are deep-copied (``MapSpec``), so decoded messages
   and locally built ones compare equal (msgpack cannot tell a list from a tuple).
3. The numeric ranges and per-field limits are the ones protocol/SPEC.md documents ("Scalar
   types"); the message table (``messages.py``) uses them and re-exports them.
4. Pure: imports attrs and the engine's ``errors`` only.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from pubquiz_engine.errors import ErrorCode

# ---------------------------------------------------------------------------------------------
# Numeric ranges (documented in protocol/SPEC.md, section "Scalar types").

#: Request ids, indices, counts, ids: fit a signed 32-bit integer in every language.
U31_MAX = 2**31 - 1
#: Sequence numbers, epochs, scores, wall-clock milliseconds: exactly representable as an IEEE
#: double, so JavaScript clients read them without loss.
SAFE_MAX = 2**53 - 1
SAFE_MIN = -SAFE_MAX

# Per-field limits, in Unicode code points (the codec separately caps every string's UTF-8 bytes).
MAX_CODE_CHARS = 16
MAX_TOKEN_CHARS = 128
MAX_KEY_CHARS = 256
MAX_NAME_CHARS = 64
MAX_REASON_CHARS = 256
MAX_TITLE_CHARS = 256
MAX_TEXT_CHARS = 4096
MAX_ANSWER_CHARS = 1024
MAX_CHOICE_CHARS = 1024
MAX_CHOICES = 64
MAX_URL_CHARS = 2048
MAX_PATH_CHARS = 1024
MAX_ERROR_CODE_CHARS = 64
MAX_MESSAGE_CHARS = 1024
MAX_LEADERBOARD = 1000
#: Rows of a host's ``scores`` event: every participant whose score changed (all who answered,
#: at a reveal), so bounded like a client's array limit rather than like a leaderboard.
MAX_SCORE_ROWS = 100_000
#: Hard recursion bound for free-form maps built locally (decoded ones are first held to
#: ``Limits.max_depth`` by the codec). Keeps a cyclic structure from recursing forever.
MAX_PLAIN_DEPTH = 64

#: Where each field's ``Spec`` lives in the attrs field metadata.
SPEC_KEY = "pubquiz.spec"


class FieldError(ValueError):
    """A message field holds a value pubquiz.v1 does not allow.

    A ``ValueError`` (a local bug when we build a message ourselves); the codec turns it into a
    ``ProtocolError`` with the same ``code`` when the value came off the wire.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _wrong_type(name: str, value: object, expected: str) -> FieldError:
    # bin (bytes) can only come from a msgpack bin value: pubquiz.v1 has none, so say so precisely.
    if isinstance(value, bytes | bytearray | memoryview):
        return FieldError(ErrorCode.UNSUPPORTED_TYPE, f"{name}: binary values are not allowed")
    return FieldError(
        ErrorCode.INVALID_MESSAGE, f"{name}: expected {expected}, got {type(value).__name__}"
    )


def _check_str(name: str, value: object, max_chars: int) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise _wrong_type(name, value, "str")
        # A str subclass (e.g. a StrEnum member): store the plain string it stands for.
        value = str.__str__(value)
    if len(value) > max_chars:
        raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: longer than {max_chars} characters")
    # Lone surrogates (from a JSON "\ud800" escape, say) cannot be UTF-8 encoded: refuse them
    # here so that encode() of a constructed message never fails. isascii() is the fast path.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FieldError(ErrorCode.INVALID_MESSAGE, f"{name}: not valid Unicode") from None
    return value


# ---------------------------------------------------------------------------------------------
# Specs: each knows how to check (and normalise) one field's value and is introspectable.


@attrs.frozen
class Spec:
    """Base of all field specs. ``check(value, name)`` returns the value to store or raises."""

    def check(self, value: Any, name: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@attrs.frozen
class IntSpec(Spec):
    """An integer in ``lo..hi`` (booleans are not integers on the wire)."""

    lo: int
    hi: int

    def check(self, value: Any, name: str) -> int:
        if type(value) is not int:
            raise _wrong_type(name, value, "int")
        if not self.lo <= value <= self.hi:
            raise FieldError(ErrorCode.INVALID_MESSAGE, f"{name}: not in {self.lo}..{self.hi}")
        return value


@attrs.frozen
class BoolSpec(Spec):
    """``true`` or ``false``."""

    def check(self, value: Any, name: str) -> bool:
        if type(value) is not bool:
            raise _wrong_type(name, value, "bool")
        return value


@attrs.frozen
class TextSpec(Spec):
    """A UTF-8 string of at most ``max_chars`` code points."""

    max_chars: int

    def check(self, value: Any, name: str) -> str:
        return _check_str(name, value, self.max_chars)


@attrs.frozen
class EnumSpec(Spec):
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def check(self, value: Any, name: str) -> str:
        if type(value) is not str:
            if not isinstance(value, str):
                raise _wrong_type(name, value, "str")
            value = str.__str__(value)
        if value not in self.values:
            raise FieldError(
                ErrorCode.INVALID_MESSAGE, f"{name}: must be one of {', '.join(self.values)}"
            )
        text: str = value
        return text


def _check_number(name: str, value: Any) -> int | float:
    kind = type(value)
    if kind is int:
        if not SAFE_MIN <= value <= SAFE_MAX:
            raise FieldError(ErrorCode.INVALID_MESSAGE, f"{name}: integer out of the safe range")
        return int(value)
    if kind is float:
        if not math.isfinite(value):
            raise FieldError(ErrorCode.INVALID_MESSAGE, f"{name}: must be a finite number")
        return float(value)
    raise _wrong_type(name, value, "number")


@attrs.frozen
class NumberSpec(Spec):
    """A finite number: an int in the safe range or a finite float (never NaN or infinity)."""

    def check(self, value: Any, name: str) -> int | float:
        return _check_number(name, value)


@attrs.frozen
class IntListSpec(Spec):
    """An array of at most ``max_len`` integers, each in ``lo..hi``; stored as a tuple."""

    max_len: int
    lo: int
    hi: int

    def check(self, value: Any, name: str) -> tuple[int, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong_type(name, value, "array")
        if len(value) > self.max_len:
            raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: more than {self.max_len} items")
        lo, hi = self.lo, self.hi
        for item in value:
            if type(item) is not int:
                raise _wrong_type(f"{name}[]", item, "int")
            if not lo <= item <= hi:
                raise FieldError(ErrorCode.INVALID_MESSAGE, f"{name}[]: not in {lo}..{hi}")
        return tuple(value)


@attrs.frozen
class TextListSpec(Spec):
    """An array of at most ``max_len`` strings of at most ``max_chars``; stored as a tuple."""

    max_len: int
    max_chars: int

    def check(self, value: Any, name: str) -> tuple[str, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong_type(name, value, "array")
        if len(value) > self.max_len:
            raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: more than {self.max_len} items")
        return tuple(_check_str(f"{name}[]", item, self.max_chars) for item in value)


_CHOICE_LIST = IntListSpec(MAX_CHOICES, 0, MAX_CHOICES - 1)
_ACCEPTED_TEXTS = TextListSpec(MAX_CHOICES, MAX_ANSWER_CHARS)


@attrs.frozen
class AnswerSpec(Spec):
    """An answer value: bool, int or finite float (numeric, or a choice index), str (free
    text), or an array of choice indices (multiple choice, ordering).

    With ``accepted_texts`` (the ``reveal`` event's ``correct``) an array of strings - the
    accepted texts of a free-text question - is allowed as well.
    """

    accepted_texts: bool = False

    def check(self, value: Any, name: str) -> Any:
        kind = type(value)
        if kind is bool:
            return value
        if kind is int or kind is float:
            return _check_number(name, value)
        if kind is str or isinstance(value, str):
            return _check_str(name, value, MAX_ANSWER_CHARS)
        if kind is list or kind is tuple:
            # The first item decides which array shape is meant; an empty array is a valid
            # (empty) choice list.
            if self.accepted_texts and value and isinstance(value[0], str):
                return _ACCEPTED_TEXTS.check(value, name)
            return _CHOICE_LIST.check(value, name)
        raise _wrong_type(name, value, "answer value")


@attrs.frozen
class LeaderboardSpec(Spec):
    """An array of ``[rank, id, name, score]`` rows; stored as a tuple of 4-tuples."""

    def check(self, value: Any, name: str) -> tuple[tuple[int, int, str, int], ...]:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong_type(name, value, "array")
        if len(value) > MAX_LEADERBOARD:
            raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: more than {MAX_LEADERBOARD} rows")
        rows = []
        for row in value:
            if (type(row) is not list and type(row) is not tuple) or len(row) != 4:
                raise FieldError(
                    ErrorCode.INVALID_MESSAGE, f"{name}[]: expected [rank, id, name, score]"
                )
            rank, ident, label, score = row
            rows.append(
                (
                    _RANK.check(rank, f"{name}[].rank"),
                    _U31.check(ident, f"{name}[].id"),
                    _check_str(f"{name}[].name", label, MAX_NAME_CHARS),
                    _SCORE.check(score, f"{name}[].score"),
                )
            )
        return tuple(rows)


@attrs.frozen
class ScoreListSpec(Spec):
    """An array of ``[participant, score]`` pairs; stored as a tuple of 2-tuples."""

    def check(self, value: Any, name: str) -> tuple[tuple[int, int], ...]:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong_type(name, value, "array")
        if len(value) > MAX_SCORE_ROWS:
            raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: more than {MAX_SCORE_ROWS} rows")
        rows = []
        for row in value:
            if (type(row) is not list and type(row) is not tuple) or len(row) != 2:
                raise FieldError(ErrorCode.INVALID_MESSAGE,
                                 f"{name}[]: expected [participant, score]")
            rows.append((_U31.check(row[0], f"{name}[].participant"),
                         _SCORE.check(row[1], f"{name}[].score")))
        return tuple(rows)


def _plain(value: Any, name: str, depth: int) -> Any:
    """Validate and deep-copy free-form data: str-keyed maps, arrays, nil, bool, safe ints,
    finite floats and strings. Arrays come back as lists (the decoder's shape), maps as dicts."""
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int or kind is float:
        return _check_number(name, value)
    if depth <= 0:
        raise FieldError(ErrorCode.LIMIT_EXCEEDED, f"{name}: nested too deeply")
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _wrong_type(f"{name} key", key, "str")
            out[key] = _plain(item, f"{name}.{key}", depth - 1)
        return out
    if kind is list or kind is tuple:
        return [_plain(item, f"{name}[]", depth - 1) for item in value]
    if isinstance(value, str):
        return str.__str__(value)
    raise _wrong_type(name, value, "plain data")


@attrs.frozen
class MapSpec(Spec):
    """A free-form map (str keys; nil, bool, numbers, str, arrays and maps inside). Its shape is
    documented in SPEC.md and checked by its consumer (the quiz loader, the session options, the
    client rendering ``state``); the protocol only guarantees it is plain, finite data."""

    def check(self, value: Any, name: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise _wrong_type(name, value, "map")
        result: dict[str, Any] = _plain(value, name, MAX_PLAIN_DEPTH)
        return result


@attrs.frozen
class Nullable(Spec):
    """``nil`` or a value of ``inner``. Nullable fields may be left out of a frame (= nil)."""

    inner: Spec

    def check(self, value: Any, name: str) -> Any:
        return None if value is None else self.inner.check(value, name)



# Shared by the specs above (the message table has its own shorthands).
_U31 = IntSpec(0, U31_MAX)
_RANK = IntSpec(1, U31_MAX)
_SCORE = IntSpec(SAFE_MIN, SAFE_MAX)


def wire(spec: Spec) -> dict[str, Any]:
    """The ``attrs.field`` arguments of a message field validated (and normalised) by ``spec``.

    Used as ``attrs.field(**wire(spec))`` for a required field and
    ``attrs.field(default=None, **wire(Nullable(spec)))`` for a nullable one, so that mypy's
    attrs plugin still sees which fields are required. All fields are keyword-only.
    """

    def convert(value: Any, attribute: attrs.Attribute[Any]) -> Any:
        return spec.check(value, attribute.name)

    return {"converter": attrs.Converter(convert, takes_field=True), "metadata": {SPEC_KEY: spec}}


def field_spec(attribute: attrs.Attribute[Any]) -> Spec:
    """The ``Spec`` a message field was declared with."""
    spec: Spec = attribute.metadata[SPEC_KEY]
    return spec
