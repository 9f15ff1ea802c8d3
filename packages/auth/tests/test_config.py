"""The configuration refuses what would be unsafe, and production keeps strong hashing."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import pytest
from pydantic import SecretStr

from roster_auth import AuthConfig, AuthConfigError, LoggingMailer, RosterAuth
from roster_auth.testing import config_for_tests

STRONG: dict[str, Any] = {
    "access_token_secret": "a" * 20 + "-access-secret-0123",
    "reset_password_secret": "r" * 20 + "-reset-secret-01234",
    "verify_secret": "v" * 20 + "-verify-secret-0123",
}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"access_token_lifetime_seconds": 0}, "access_token_lifetime_seconds"),
        ({"cookie_token_lifetime_seconds": -1}, "cookie_token_lifetime_seconds"),
        ({"verify_token_lifetime_seconds": 0}, "verify_token_lifetime_seconds"),
        ({"refresh_token_lifetime_seconds": 0}, "refresh_token_lifetime_seconds"),
        ({"refresh_token_idle_seconds": -5}, "refresh_token_idle_seconds"),
        ({"session_touch_interval_seconds": 0}, "session_touch_interval_seconds"),
        ({"cookie_samesite": "none", "cookie_secure": False}, "cookie_secure"),
        ({"public_base_url": "roster.example"}, "public_base_url"),
        ({"verify_link_path": "verify"}, "verify_link_path"),
        ({"mailer": LoggingMailer(reveal_content=True)}, "development=True"),
        ({"max_concurrent_password_hashes": 0}, "max_concurrent_password_hashes"),
        ({"max_waiting_password_hashes": -1}, "max_waiting_password_hashes"),
        ({"password_hashing_niceness": 20}, "password_hashing_niceness"),
        ({"password_hashing_niceness": -1}, "password_hashing_niceness"),
        ({"refusal_pause_seconds": 1}, "refusal_pause_seconds"),
        ({"refusal_pause_seconds": -0.1}, "refusal_pause_seconds"),
    ],
)
def test_unsafe_configuration_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthConfigError, match=re.escape(message)):
        AuthConfig(**{**STRONG, **overrides})


def test_secrets_may_be_secret_strings() -> None:
    secrets: dict[str, Any] = {name: SecretStr(value) for name, value in STRONG.items()}
    config = AuthConfig(**secrets)
    assert isinstance(config.access_token_secret, SecretStr)
    assert "access-secret" not in repr(config)


def test_a_mailer_that_logs_tokens_is_allowed_in_development() -> None:
    config = AuthConfig(**STRONG, mailer=LoggingMailer(reveal_content=True), development=True)
    with pytest.raises(AuthConfigError):
        replace(config, development=False)


def test_production_hashes_with_argon2id_at_full_cost() -> None:
    auth = RosterAuth(AuthConfig(**STRONG))
    hashed = auth.password_helper.hash("violet-harbour-tandem-42")
    match = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$.+", hashed)
    assert match is not None, hashed
    memory_kib, iterations, _ = (int(group) for group in match.groups())
    # At least OWASP's minimum for Argon2id (19 MiB, 2 iterations).
    assert memory_kib >= 19 * 1024
    assert iterations >= 2


def test_the_testing_hasher_is_cheap_and_still_argon2id() -> None:
    auth = RosterAuth(config_for_tests())
    hashed = auth.password_helper.hash("violet-harbour-tandem-42")
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


async def test_the_bearer_backend_reads_tokens_with_the_strategy_that_mints_them() -> None:
    auth = RosterAuth(config_for_tests())
    # FastAPI Users types the dependency as any kind of callable; ours is a coroutine function.
    get_strategy = cast(Callable[[], Awaitable[object]], auth.jwt_backend.get_strategy)
    assert await get_strategy() is auth.jwt_strategy
