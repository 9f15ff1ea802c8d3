"""Account administration for the command line, through roster-auth's user manager (so the
password policy, hashing and email rules are the ones the API applies)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from fastapi_users.exceptions import InvalidPasswordException
from pydantic import SecretStr, ValidationError

from roster_api.app import build_auth_config
from roster_api.settings import Settings
from roster_auth import Pruned, RosterAuth, UserCreate, prune_sessions
from roster_db import create_sessionmaker, one_off_engine, session_scope


@dataclass(frozen=True)
class SuperuserOutcome:
    class Kind(enum.Enum):
        CREATED = "created"
        PROMOTED = "promoted"
        ALREADY_SUPERUSER = "already_superuser"
        REFUSED = "refused"

    kind: Kind
    email: str
    error: str | None = None


async def create_or_promote_superuser(
    settings: Settings,
    database_url: str,
    email: str,
    password: Callable[[], SecretStr],
) -> SuperuserOutcome:
    """Create a verified superuser; an existing account (any letter case) becomes a superuser
    and keeps its password. `password` is asked for only when an account is created."""
    auth = RosterAuth(build_auth_config(settings))
    async with (
        one_off_engine(database_url) as engine,
        session_scope(create_sessionmaker(engine)) as session,
    ):
        manager = auth.user_manager(session)
        existing = await manager.user_db.get_by_email(email)
        if existing is not None:
            if existing.is_superuser:
                return SuperuserOutcome(SuperuserOutcome.Kind.ALREADY_SUPERUSER, existing.email)
            await manager.user_db.update(existing, {"is_superuser": True})
            return SuperuserOutcome(SuperuserOutcome.Kind.PROMOTED, existing.email)
        try:
            user_create = UserCreate(
                email=email,
                password=password().get_secret_value(),
                is_superuser=True,
                is_verified=True,
            )
        except ValidationError as error:
            reasons = "; ".join(str(problem["msg"]) for problem in error.errors())
            return SuperuserOutcome(SuperuserOutcome.Kind.REFUSED, email, reasons)
        try:
            user = await manager.create(user_create, safe=False)
        except InvalidPasswordException as error:
            return SuperuserOutcome(
                SuperuserOutcome.Kind.REFUSED, email, f"password refused: {error.reason}"
            )
        return SuperuserOutcome(SuperuserOutcome.Kind.CREATED, user.email)


async def prune_ended_sessions(settings: Settings, database_url: str) -> Pruned:
    """Delete every ended session (expired cookie tokens; refresh-token families revoked,
    expired or idle), in one transaction."""
    async with one_off_engine(database_url) as engine, engine.begin() as connection:
        return await prune_sessions(connection, build_auth_config(settings))


__all__ = ["SuperuserOutcome", "create_or_promote_superuser", "prune_ended_sessions"]
