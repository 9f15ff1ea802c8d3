"""The password policy, after NIST SP 800-63B (rev. 4, section 3.1.1.2):

- length is what counts: at least 15 characters by default (the guideline's minimum for a
  password that is the only factor; 8 is the floor it allows with a second factor), at most
  128 (the guideline asks to allow at least 64; the bound keeps hashing cheap to refuse);
- the raw text is bounded before anything reads it: NFKC can grow text 18-fold (U+FDFA) and
  shrink it at most 4-fold (a character and three combining marks become one), so input
  longer than 4 times the maximum is refused unread, and no longer input is ever normalised;
- every character is allowed, spaces and Unicode included, and counted as one code point after
  NFKC normalisation, which is also applied before hashing so that the same password typed on
  two keyboards matches;
- no composition rules (no "one digit, one symbol"): the guideline forbids them;
- a blocklist of commonly used, expected or compromised values, and context-specific words:
  the password may not contain the email address or its name part, nor the display name, and
  zxcvbn's estimate (its lists of common passwords, names and words, keyboard patterns,
  repeats, sequences, dates, plus the user's own data) must reach "safely unguessable" (3 of 4);
- no periodic expiry, no hints, no security questions (none exist here).
"""

import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from fastapi_users.password import PasswordHelperProtocol
from zxcvbn import zxcvbn  # type: ignore[import-untyped]

# zxcvbn refuses longer input; a prefix can only look weaker than the whole, never stronger.
_ESTIMATE_MAX_LENGTH: Final = 72
# Shorter context words (an email "al@...") would match by chance.
_MIN_CONTEXT_WORD_LENGTH: Final = 3
# The most code points NFKC makes into one (U+1F82 and its kin: a letter and three marks);
# a test checks it against the running Python's Unicode tables.
NFKC_MAX_CONTRACTION: Final = 4
# The longest maximum a policy may set: schemas bound every password field statically, at
# `MAX_RAW_PASSWORD_LENGTH`, which must never refuse a password some policy would accept.
MAX_PASSWORD_LENGTH: Final = 128
# No password longer than this, as received, can be `MAX_PASSWORD_LENGTH` once normalised.
MAX_RAW_PASSWORD_LENGTH: Final = NFKC_MAX_CONTRACTION * MAX_PASSWORD_LENGTH


def normalize_password(password: str) -> str:
    """NFKC, so that composed and decomposed forms of the same text are one password."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True, kw_only=True)
class PasswordPolicy:
    min_length: int = 15
    max_length: int = MAX_PASSWORD_LENGTH
    # zxcvbn score 0..4 that a password must reach; 0 turns the estimate off.
    min_strength_score: int = 3

    def __post_init__(self) -> None:
        if self.min_length < 8:
            raise ValueError("min_length below 8 is weaker than NIST SP 800-63B allows")
        if self.max_length < max(64, self.min_length):
            raise ValueError("max_length must be at least 64 and at least min_length")
        if self.max_length > MAX_PASSWORD_LENGTH:
            raise ValueError(f"max_length must be at most {MAX_PASSWORD_LENGTH}")
        if not 0 <= self.min_strength_score <= 4:
            raise ValueError("min_strength_score is a zxcvbn score, from 0 to 4")

    @property
    def max_raw_length(self) -> int:
        """The longest input that can still be `max_length` characters once normalised."""
        return NFKC_MAX_CONTRACTION * self.max_length

    def reason_to_reject_unread(self, password: str) -> str | None:
        """What can be refused without reading the text: input too long to be acceptable
        whatever it normalises to. Cheap (a length), so it may run on the event loop."""
        if len(password) > self.max_raw_length:
            return self._too_long
        return None

    @property
    def _too_long(self) -> str:
        return f"Password must be at most {self.max_length} characters long."

    def reason_to_reject(
        self,
        password: str,
        *,
        email: str,
        context_words: Iterable[str | None] = (),
        common_words: Iterable[str] = (),
    ) -> str | None:
        """Why the password is refused, for the user to read; None when it is acceptable.

        `context_words` (such as the display name) must not appear in the password;
        `common_words` (such as the product's name) only make it count as easier to guess.
        Normalising and estimating cost CPU (zxcvbn takes about 10 ms): servers call this in a
        worker thread.
        """
        unread = self.reason_to_reject_unread(password)
        if unread is not None:
            return unread
        password = normalize_password(password)
        length = len(password)
        if length < self.min_length:
            return f"Password must be at least {self.min_length} characters long."
        if length > self.max_length:
            return self._too_long
        folded = password.casefold()
        email = email.casefold()
        local_part = email.partition("@")[0]
        if email in folded:
            return "Password must not contain your email address."
        if len(local_part) >= _MIN_CONTEXT_WORD_LENGTH and local_part in folded:
            return "Password must not contain the name in your email address."
        words = [word.casefold() for word in context_words if word]
        for word in words:
            if len(word) >= _MIN_CONTEXT_WORD_LENGTH and word in folded:
                return "Password must not contain your name."
        if self.min_strength_score:
            estimate = zxcvbn(
                password[:_ESTIMATE_MAX_LENGTH],
                user_inputs=[email, local_part, *words, *common_words],
            )
            if int(estimate["score"]) < self.min_strength_score:
                warning = str(estimate["feedback"].get("warning") or "").strip()
                reason = "Password is too easy to guess."
                return f"{reason} {warning}" if warning else reason
        return None


# What an account created through an identity provider stores instead of a hash: no
# hasher recognises it, so no password verifies against it until one is set (forgot/reset).
# The random part keeps two such accounts' values apart, as hashes are.
UNUSABLE_PASSWORD_PREFIX: Final = "!"  # noqa: S105 - a marker, not a password


def unusable_password() -> str:
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(32)


def has_usable_password(hashed_password: str) -> bool:
    return not hashed_password.startswith(UNUSABLE_PASSWORD_PREFIX)


class NormalizingPasswordHelper:
    """Wraps a password helper so that passwords are NFKC-normalised before hashing and
    verifying."""

    def __init__(self, inner: PasswordHelperProtocol) -> None:
        self.inner = inner

    def verify_and_update(
        self, plain_password: str, hashed_password: str
    ) -> tuple[bool, str | None]:
        return self.inner.verify_and_update(normalize_password(plain_password), hashed_password)

    def hash(self, password: str) -> str:
        return self.inner.hash(normalize_password(password))

    def generate(self) -> str:
        return self.inner.generate()


__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MAX_RAW_PASSWORD_LENGTH",
    "NFKC_MAX_CONTRACTION",
    "UNUSABLE_PASSWORD_PREFIX",
    "NormalizingPasswordHelper",
    "PasswordPolicy",
    "has_usable_password",
    "normalize_password",
    "unusable_password",
]
