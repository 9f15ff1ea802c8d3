"""The FastAPI Users code we re-implement, guarded: a new library version that changes one of
the originals fails here, naming the original to re-read and our copy to bring in line.

To add a copy: a row in `COPIES` with the original, ours, and the digest this test prints for
the original when the row's digest is left empty."""

import hashlib
import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Final

import pytest

from roster_auth.backends import (
    HashingAccessTokenDatabase,
    PurgingDatabaseStrategy,
    RequiredClaimsJWTStrategy,
)
from roster_auth.database import RosterUserDatabase
from roster_auth.manager import UserManager


@dataclass(frozen=True)
class LibraryCopy:
    # "module:qualified.name", as importable.
    original: str
    ours: str
    # sha256 of `inspect.getsource(original)` in the version our copy follows.
    digest: str


COPIES: Final = (
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.authenticate",
        "roster_auth.manager:UserManager.authenticate",
        "e453ea340730cf50c47dfa131f0708706fcaaf1d196c5dcb93c07dc023903188",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.create",
        "roster_auth.manager:UserManager.create",
        "3d1328456778ffce42a3ec59f4ba5611468084c7336a533d07da4573df472cb7",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager._update",
        "roster_auth.manager:UserManager._update",
        "1c49e7a79f770662558dc24d0ae60074ff4c03b60f83e23e82a02bc75f34936b",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.forgot_password",
        "roster_auth.manager:UserManager.forgot_password",
        "785379634e5059ec0baccd44c8fdd98fd0034bb5fb5952b733db62f73a456595",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.reset_password",
        "roster_auth.manager:UserManager.reset_password",
        "f0c5df8b888017290be39b6cb3ea30567d28392e573a069875972729af73cb3e",
    ),
    LibraryCopy(
        "fastapi_users.authentication.strategy.jwt:JWTStrategy.read_token",
        "roster_auth.backends:RequiredClaimsJWTStrategy.read_token",
        "6a1f7707aa53a38395447b67240d855bda678f4ec46f2bced54639ce03e76ce6",
    ),
    # The cookie's token is returned, not the stored row's digest; the session's origin kept.
    LibraryCopy(
        "fastapi_users.authentication.strategy.db:DatabaseStrategy.write_token",
        "roster_auth.backends:PurgingDatabaseStrategy.write_token",
        "20df030dac38842c85c0f3573f5e4384d0843a02c5e9582c5610aca9dc7fbfea",
    ),
    # POST /users answers a refused creation as /auth/register does.
    LibraryCopy(
        "fastapi_users.router.register:get_register_router",
        "roster_auth.router:build_admin_router",
        "f5f0adb2e9a6abc4e2616f05631ee5de89e1da52fd2abea6fc01d5d19e2ba697",
    ),
    # PATCH /users/me: the library's `update_me`, plus the current password's answer.
    LibraryCopy(
        "fastapi_users.router.users:get_users_router",
        "roster_auth.router:build_users_router",
        "b7bb17cb4098a6c55797a14952cdc1cf53d4c98a3fb1331f13eff6f733362354",
    ),
    # Sign-in through a provider: the library's routes and account rules, rewritten with
    # the state checked before the code is used, PKCE, and the email-verification rules.
    LibraryCopy(
        "fastapi_users.router.oauth:get_oauth_router",
        "roster_auth.oauth_routes:OAuthRoutes._sign_in_router",
        "ee42ece00e9f53390c83ddc0fda91dd6391c52a68c0b526f1d18f52794cd1c46",
    ),
    LibraryCopy(
        "fastapi_users.router.oauth:get_oauth_associate_router",
        "roster_auth.oauth_routes:OAuthRoutes._associate_router",
        "84f034b6662e4efeebcf3c82d30d2d89fae8c9388b45c47362cd870e8faaad8a",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.oauth_callback",
        "roster_auth.manager:UserManager.oauth_sign_in",
        "e61f264ed933951e21d329de1dadf1dbf3b511d848ecf7f6046e13e54842135c",
    ),
    LibraryCopy(
        "fastapi_users.manager:BaseUserManager.oauth_associate_callback",
        "roster_auth.manager:UserManager.oauth_link",
        "e5f83e05058c4982f4b32496007b20d7920503cf32364693190cc4241135bc7d",
    ),
)

# Our subclasses of FastAPI Users' classes: a method of theirs that one of ours replaces
# without calling `super()` must have a row above.
SUBCLASSES: Final = (
    UserManager,
    RosterUserDatabase,
    RequiredClaimsJWTStrategy,
    PurgingDatabaseStrategy,
    HashingAccessTokenDatabase,
)
# FastAPI Users' documented extension points: meant to be written anew, not copied.
HOOK_PREFIXES: Final = ("on_after_", "on_before_", "validate_password")


def resolve(path: str) -> Any:
    module_name, _, qualified_name = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for name in qualified_name.split("."):
        found = getattr(found, name)
    return found


def source_digest(path: str) -> str:
    return hashlib.sha256(inspect.getsource(resolve(path)).encode()).hexdigest()


@pytest.mark.parametrize("copy", COPIES, ids=[copy.original for copy in COPIES])
def test_the_library_original_is_the_one_our_copy_follows(copy: LibraryCopy) -> None:
    digest = source_digest(copy.original)
    assert digest == copy.digest, (
        f"{copy.original} changed in fastapi-users {version('fastapi-users')}: re-read it, "
        f"bring {copy.ours} in line with it, then set the row's digest to {digest!r}"
    )


@pytest.mark.parametrize("copy", COPIES, ids=[copy.ours for copy in COPIES])
def test_our_copy_exists_and_is_ours(copy: LibraryCopy) -> None:
    ours = resolve(copy.ours)
    assert ours.__module__.startswith("roster_auth."), f"{copy.ours} is not defined by us"


def _replacements(cls: type) -> list[str]:
    """The library methods `cls` defines anew, without delegating to the library's."""
    library_bases = [base for base in cls.__mro__[1:] if base.__module__.startswith("fastapi")]
    names = []
    for name, member in vars(cls).items():
        if not callable(member) or name.startswith("__") or name.startswith(HOOK_PREFIXES):
            continue
        if not any(name in vars(base) for base in library_bases):
            continue
        if "super()." not in inspect.getsource(member):
            names.append(f"{cls.__module__}:{cls.__qualname__}.{name}")
    return names


def test_every_method_we_replace_has_a_row() -> None:
    listed = {copy.ours for copy in COPIES}
    unlisted = [name for cls in SUBCLASSES for name in _replacements(cls) if name not in listed]
    assert unlisted == [], f"add a row to COPIES for each of {unlisted}"
