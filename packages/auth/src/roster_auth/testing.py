"""Helpers for tests, of this package and of the members built on it.

    from roster_auth.testing import create_user, config_for_tests

`config_for_tests()` gives test secrets, an `OutboxMailer` to read tokens from and a cheap
password hasher (production keeps the strong default: never use these outside tests).
"""

from typing import Any, Final

from fastapi_users.password import PasswordHelper, PasswordHelperProtocol
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.auth import RosterAuth
from roster_auth.config import AuthConfig
from roster_auth.mail import OutboxMailer
from roster_auth.models import User
from roster_auth.password import NormalizingPasswordHelper

# Test values, public on purpose.
ACCESS_TOKEN_SECRET: Final = "test-access-token-secret-0123456789abcdef"  # noqa: S105
RESET_PASSWORD_SECRET: Final = "test-reset-password-secret-0123456789abcdef"  # noqa: S105
VERIFY_SECRET: Final = "test-verify-secret-0123456789abcdef"  # noqa: S105
# Long enough and hard enough to guess for the default password policy.
DEFAULT_PASSWORD: Final = "violet-harbour-tandem-42"  # noqa: S105


def fast_password_helper() -> PasswordHelperProtocol:
    """Argon2id with minimal cost: about a millisecond per hash instead of tens."""
    return PasswordHelper(
        PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    )


def config_for_tests(**overrides: Any) -> AuthConfig:
    """An `AuthConfig` for tests: `OutboxMailer`, fast hashing, test secrets. Pass `mailer=`
    (keep a reference to read mails) or any other field to override."""
    settings: dict[str, Any] = {
        "access_token_secret": ACCESS_TOKEN_SECRET,
        "reset_password_secret": RESET_PASSWORD_SECRET,
        "verify_secret": VERIFY_SECRET,
        "mailer": OutboxMailer(),
        "password_helper": fast_password_helper(),
        "public_base_url": "https://roster.test",
    }
    settings.update(overrides)
    return AuthConfig(**settings)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str = DEFAULT_PASSWORD,
    is_active: bool = True,
    is_superuser: bool = False,
    is_verified: bool = True,
    display_name: str | None = None,
    password_helper: PasswordHelperProtocol | None = None,
) -> User:
    """Insert a user directly (no policy, no mail) and commit. The password is hashed as
    `RosterAuth` hashes it, with `fast_password_helper()` unless another is given."""
    helper = NormalizingPasswordHelper(password_helper or fast_password_helper())
    user = User(
        email=email,
        hashed_password=helper.hash(password),
        is_active=is_active,
        is_superuser=is_superuser,
        is_verified=is_verified,
        display_name=display_name,
    )
    session.add(user)
    await session.commit()
    await session.refresh(user)
    return user


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}


async def bearer_headers(auth: RosterAuth, user: User) -> dict[str, str]:
    """An Authorization header with a fresh JWT for the user (no login request)."""
    return bearer(await auth.access_token(user))


__all__ = [
    "ACCESS_TOKEN_SECRET",
    "DEFAULT_PASSWORD",
    "RESET_PASSWORD_SECRET",
    "VERIFY_SECRET",
    "bearer",
    "bearer_headers",
    "config_for_tests",
    "create_user",
    "fast_password_helper",
]
