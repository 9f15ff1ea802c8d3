"""The JWT strategy remembers the access tokens it verified, each until its expiry."""

import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from roster_auth import backends
from roster_auth.backends import RequiredClaimsJWTStrategy, jwt_strategy
from roster_auth.testing import ACCESS_TOKEN_SECRET, config_for_tests


def claims_in(token: str) -> dict[str, Any]:
    # PyJWT's own module function: the fixture below counts `jwt.decode`.
    claims: dict[str, Any] = jwt.api_jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.fixture
def strategy() -> RequiredClaimsJWTStrategy:
    return jwt_strategy(config_for_tests())


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT is asked to decode, in order."""
    seen: list[str] = []
    decode: Callable[..., Any] = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    return seen


def test_a_verified_token_is_not_decoded_again_until_it_expires(
    strategy: RequiredClaimsJWTStrategy, decodes: list[str]
) -> None:
    user_id, family_id = uuid.uuid4(), uuid.uuid4()
    token = strategy.write_session_token(user_id, family_id)
    expires_at = claims_in(token)["exp"]
    assert strategy.claims_of(token) == (user_id, family_id)
    assert strategy.claims_of(token) == (user_id, family_id)
    assert decodes == [token]
    # A second before its expiry it still counts; at its expiry it is refused, as PyJWT
    # refuses a token whose `exp` is not after now.
    strategy.clock = lambda: expires_at - 1
    assert strategy.user_id_of(token) == user_id
    strategy.clock = lambda: expires_at
    assert strategy.claims_of(token) is None
    assert decodes == [token]


def test_a_refused_token_is_decoded_every_time(
    strategy: RequiredClaimsJWTStrategy, decodes: list[str]
) -> None:
    valid = strategy.write_session_token(uuid.uuid4(), uuid.uuid4())
    claims = claims_in(valid)
    refused = [
        "not.a.jwt",
        jwt.encode({**claims, "exp": claims["exp"] - 3600}, ACCESS_TOKEN_SECRET, algorithm="HS256"),
        jwt.encode(claims, "another-secret-of-the-same-length-000000", algorithm="HS256"),
    ]
    for token in refused:
        assert strategy.claims_of(token) is None
        assert strategy.claims_of(token) is None
    assert decodes == [token for token in refused for _ in range(2)]


def test_past_the_bound_the_oldest_token_is_forgotten_first(
    strategy: RequiredClaimsJWTStrategy, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "VERIFIED_TOKENS_KEPT", 2)
    first, second, third = (
        strategy.write_session_token(uuid.uuid4(), uuid.uuid4()) for _ in range(3)
    )
    for token in (first, second, third):
        assert strategy.claims_of(token) is not None
    decodes.clear()
    assert strategy.claims_of(third) is not None
    assert strategy.claims_of(second) is not None
    assert decodes == []
    assert strategy.claims_of(first) is not None
    assert decodes == [first]
