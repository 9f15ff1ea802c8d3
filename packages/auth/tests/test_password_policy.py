"""The password policy on its own (no database): what it refuses, and why."""

import sys
import unicodedata

import pytest

from roster_auth import PasswordPolicy
from roster_auth.password import (
    MAX_PASSWORD_LENGTH,
    MAX_RAW_PASSWORD_LENGTH,
    NFKC_MAX_CONTRACTION,
    NormalizingPasswordHelper,
)
from roster_auth.testing import fast_password_helper

POLICY = PasswordPolicy()
# ASCII letters to their full-width forms (U+FF21...), which NFKC turns back.
FULLWIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}
EMAIL = "alice.smith@example.org"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("a-short-pass", "at least 15 characters"),
        ("x" * 100 + "-lengthy-and-random-" * 2, "at most 128 characters"),
        ("my alice.smith@example.org pw", "must not contain your email address"),
        ("ALICE.SMITH is here 2024!", "must not contain the name in your email"),
        # Full-width letters are the same letters once normalised (NFKC).
        (
            unicodedata.normalize("NFKD", "ALICE.SMITH").translate(FULLWIDTH) + " rides again",
            "must not contain the name in your email",
        ),
        ("Wonderland Queen of hearts", "must not contain your name"),
        ("passwordpassword1", "too easy to guess"),
        ("aaaaaaaaaaaaaaaaaaaa", "too easy to guess"),
        ("qwertyuiopasdfghjkl", "too easy to guess"),
        ("123456789012345", "too easy to guess"),
    ],
)
def test_refused_passwords_say_why(password: str, reason: str) -> None:
    refusal = POLICY.reason_to_reject(password, email=EMAIL, context_words=["Queen of Hearts"])
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "violet-harbour-tandem-42",
        "Grüße aus Köln, 1987 war gut",
        "lowercase words only and no digits at all",
    ],
)
def test_long_unguessable_passwords_pass_without_composition_rules(password: str) -> None:
    assert POLICY.reason_to_reject(password, email=EMAIL) is None


def test_only_the_first_72_characters_are_estimated() -> None:
    # The estimator refuses longer input; judging the prefix can only err on the strict side.
    patterned_prefix = "x" * 72 + "9Kq!vT2#mP7&zR4@"
    assert POLICY.reason_to_reject(patterned_prefix, email=EMAIL) is not None
    assert POLICY.reason_to_reject("9Kq!vT2#mP7&zR4@" + "x" * 72, email=EMAIL) is None


def test_length_counts_code_points_after_normalisation() -> None:
    # 14 code points when composed; 15 when the "é" is decomposed: the policy must see 14.
    composed = "café-tiger-owl"
    decomposed = unicodedata.normalize("NFD", composed)
    assert len(decomposed) == 15
    refusal = POLICY.reason_to_reject(decomposed, email=EMAIL)
    assert refusal is not None
    assert "at least 15" in refusal


def test_short_local_parts_are_not_context_words() -> None:
    assert PasswordPolicy().reason_to_reject("alpaca grazing quietly", email="al@x.io") is None


def test_the_strength_estimate_can_be_turned_off() -> None:
    lenient = PasswordPolicy(min_strength_score=0)
    assert lenient.reason_to_reject("passwordpassword1", email=EMAIL) is None


@pytest.mark.parametrize(
    "settings",
    [
        {"min_length": 7},
        {"max_length": 63},
        {"min_length": 80, "max_length": 70},
        # Schemas bound the raw input statically, for the longest maximum allowed.
        {"max_length": MAX_PASSWORD_LENGTH + 1},
        {"min_strength_score": 5},
    ],
)
def test_policy_bounds_follow_the_guideline(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"min_length|max_length|min_strength_score"):
        PasswordPolicy(**settings)


def test_passwords_are_normalised_before_hashing() -> None:
    helper = NormalizingPasswordHelper(fast_password_helper())
    hashed = helper.hash(unicodedata.normalize("NFC", "crème brûlée for two, please"))
    verified, _ = helper.verify_and_update(
        unicodedata.normalize("NFD", "crème brûlée for two, please"), hashed
    )
    assert verified
    wrong, _ = helper.verify_and_update("creme brulee for two, please", hashed)
    assert not wrong


def most_contracted_characters() -> list[str]:
    """Every character that NFKC leaves alone and whose full decomposition is longest: the
    most code points of input that one character of a normalised password can stand for."""
    stable = (chr(code) for code in range(sys.maxunicode + 1))
    lengths = {
        char: len(unicodedata.normalize("NFKD", char))
        for char in stable
        if unicodedata.decomposition(char) and unicodedata.normalize("NFKC", char) == char
    }
    longest = max(lengths.values())
    return [char for char, length in lengths.items() if length == longest]


def test_nfkc_contracts_text_at_most_as_the_raw_bound_assumes() -> None:
    # Fails when a Unicode upgrade brings a longer composition: raise NFKC_MAX_CONTRACTION.
    contracted = most_contracted_characters()
    assert {len(unicodedata.normalize("NFKD", char)) for char in contracted} == {
        NFKC_MAX_CONTRACTION
    }
    assert MAX_RAW_PASSWORD_LENGTH == NFKC_MAX_CONTRACTION * MAX_PASSWORD_LENGTH


def test_the_longest_raw_input_that_can_be_acceptable_is_read() -> None:
    # 512 code points, each group of four composing into one character: 128 once
    # normalised, so the length bound must let it through to the rest of the policy.
    composed = "".join(most_contracted_characters())
    password = (composed * MAX_PASSWORD_LENGTH)[:MAX_PASSWORD_LENGTH]
    raw = unicodedata.normalize("NFD", password)
    assert len(raw) == MAX_RAW_PASSWORD_LENGTH
    assert POLICY.reason_to_reject_unread(raw) is None
    assert POLICY.reason_to_reject(raw, email=EMAIL) is None


def test_input_too_long_to_be_acceptable_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(password: str) -> str:
        raise AssertionError("normalised a password that was too long to be acceptable")

    monkeypatch.setattr("roster_auth.password.normalize_password", fail)
    # NFKC would make it 18 times longer; it is refused before that.
    too_long = "\ufdfa" * (MAX_RAW_PASSWORD_LENGTH + 1)
    for refusal in (
        POLICY.reason_to_reject_unread(too_long),
        POLICY.reason_to_reject(too_long, email=EMAIL),
    ):
        assert refusal is not None
        assert "at most 128 characters" in refusal
    strict = PasswordPolicy(max_length=64)
    assert strict.max_raw_length == 256
    assert strict.reason_to_reject_unread("x" * 257) is not None
