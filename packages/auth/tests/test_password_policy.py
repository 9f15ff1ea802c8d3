"""The password policy on its own (no database): what it refuses, and why."""

import unicodedata

import pytest

from roster_auth import PasswordPolicy
from roster_auth.password import NormalizingPasswordHelper
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
