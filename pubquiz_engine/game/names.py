"""Player and team names: what is allowed, how it is cleaned, and when two names collide.

Rules this module keeps:

1. Cheap checks first: a raw name longer than ``RAW_LIMIT`` code points is refused before any
   Unicode work, so a 10 KB name or thousands of combining marks cost almost nothing.
2. A name is shown as its NFKC form with whitespace collapsed. It is refused (INVALID_NAME)
   if it holds control, format (zero-width, bidi overrides, BOM), surrogate, private-use or
   unassigned characters, more than ``MAX_MARKS`` combining marks on one letter, or if it is
   empty or longer than the limit after cleaning.
3. Two names collide when their *skeletons* are equal: casefolded, accents dropped, common
   look-alikes (Cyrillic, Greek, a few symbols) mapped to the Latin letter they imitate, and
   spaces and punctuation removed. "Quiz Team", "quizteam" and "Qu\u0456z Team" (Cyrillic i)
   are the same name. The map is deliberately small: the common Latin look-alikes only.
"""

from __future__ import annotations

import unicodedata

from pubquiz_engine.errors import ErrorCode, Rejected

NAME_MAX = 24  # code points, after cleaning
TEAM_MAX = 32
RAW_LIMIT = 256  # refuse before normalising anything longer than this
MAX_MARKS = 2  # combining marks allowed on one base character ("zalgo" text is refused)

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})

# Look-alikes of Latin letters. Keys are already casefolded (the skeleton casefolds first).
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0443": "y",
    "\u0445": "x", "\u0456": "i", "\u0458": "j", "\u0455": "s", "\u04cf": "l", "\u0501": "d",
    "\u051b": "q", "\u051d": "w", "\u0432": "b", "\u043d": "h", "\u043a": "k", "\u043c": "m",
    "\u0442": "t", "\u0454": "e", "\u0457": "i", "\u04bb": "h", "\u0491": "r",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "i", "\u03ba": "k",
    "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x",
    "\u03b6": "z", "\u03bc": "u", "\u03c9": "w",
    # Latin look-alikes outside ASCII that NFKD does not fold
    "\u0131": "i", "\u0269": "i", "\u01c0": "l", "\u0251": "a", "\u0261": "g", "\u1d0f": "o",
    "\u00f8": "o", "\u0142": "l", "\u0111": "d", "\u00f0": "d", "\u0127": "h",
}


def _invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_NAME, message)


def clean_name(raw: object, *, limit: int = NAME_MAX, what: str = "name") -> str:
    """The display form of ``raw`` (rule 2), or raise ``Rejected(INVALID_NAME)``."""
    if not isinstance(raw, str):
        raise _invalid(f"{what} must be text")
    if len(raw) > RAW_LIMIT:
        raise _invalid(f"{what} is too long (at most {limit} characters)")
    if raw.isascii() and raw.isprintable():
        # Printable ASCII (most names) is its own NFKC form and holds nothing refused: only
        # its spaces are collapsed. ``_cleaned_unicode`` gives the same for it (tested).
        text = " ".join(raw.split())
    else:
        text = _cleaned_unicode(raw, what)
    if not text:
        raise _invalid(f"{what} is empty")
    if len(text) > limit:
        raise _invalid(f"{what} is too long (at most {limit} characters)")
    return text


def _cleaned_unicode(raw: str, what: str) -> str:
    """Rule 2 for any text: NFKC, refused characters and accent stacks, spaces collapsed."""
    text = unicodedata.normalize("NFKC", raw)
    marks = 0
    for c in text:
        category = unicodedata.category(c)
        if category in _REFUSED_CATEGORIES:
            raise _invalid(f"{what} holds an invisible or control character (U+{ord(c):04X})")
        if category.startswith("M"):
            marks += 1
            if marks > MAX_MARKS:
                raise _invalid(f"{what} stacks too many accents on one letter")
        else:
            marks = 0
    return " ".join(text.split())  # also turns any Unicode space into one plain space


#: ASCII's skeleton, once lower-cased: every character but a letter or a digit goes.
_ASCII_DROP: dict[int, None] = {c: None for c in range(128) if not chr(c).isalnum()}


def skeleton(name: str) -> str:
    """The collision key of a cleaned name (rule 3)."""
    if name.isascii():
        # ASCII casefolds to lower case, is its own NFKD form, has no combining marks and no
        # look-alikes in the map: the key is its lower-cased letters and digits.
        # ``_skeleton_unicode`` gives the same for it (tested).
        return name.lower().translate(_ASCII_DROP) or name.casefold()
    return _skeleton_unicode(name)


def _skeleton_unicode(name: str) -> str:
    out: list[str] = []
    for c in unicodedata.normalize("NFKD", name.casefold()):
        if unicodedata.combining(c):
            continue
        c = _CONFUSABLES.get(c, c)
        if c.isalnum():
            out.append(c)
    key = "".join(out)
    # A name of only symbols ("???" or an emoji) has an empty skeleton: then the cleaned text
    # itself is the key, so "🍺" and "🍕" are different names but "🍺" twice collides.
    return key or name.casefold()
