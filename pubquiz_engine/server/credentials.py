"""Join codes and tokens: what a guesser would have to guess, and how we compare them.

Rules this module keeps:

1. Join codes are read aloud in a noisy pub and typed on phones: upper-case letters and digits
   without the look-alikes (0/O, 1/I/L), six characters. 31**6 is about 8.9e8 codes; with 2,000
   live sessions one guess hits with probability 2.3e-6, and guesses are rate limited per
   address, so guessing a live code is impractical. Input is normalised (case, spaces, dashes).
2. Host and resume tokens are 128+ random bits (``secrets``). A resume token names its session
   and participant in clear (``CODE.ID.SECRET``) so any node can route it, and only the secret
   part is compared, always with ``hmac.compare_digest`` on SHA-256 digests (constant time,
   whatever the lengths).
3. We store and log only a hash of a token, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
_CODE_CHARS = frozenset(CODE_ALPHABET)


def new_join_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str | None:
    """The canonical form of a typed join code, or None when it cannot be one."""
    code = raw.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or not _CODE_CHARS.issuperset(code):
        return None
    return code


def new_secret() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


def token_hash(token: str) -> str:
    """What we keep in databases and logs instead of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets.

    ``hmac.compare_digest`` takes the same time for any two inputs *of one length*, but returns
    at once for different lengths; comparing SHA-256 digests (always 32 bytes) keeps the length
    of the expected secret (the operator key's, say) from showing in the timing too.
    """
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def resume_token(code: str, participant: int, secret: str) -> str:
    return f"{code}.{participant}.{secret}"


def parse_resume_token(token: str) -> tuple[str, int, str] | None:
    """(code, participant, secret) of a well-formed resume token, else None."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 9:
        return None
    code = normalise_code(parts[0])
    if code is None or not parts[2]:
        return None
    return code, int(parts[1]), parts[2]
