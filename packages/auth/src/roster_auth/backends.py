"""The two ways a client proves who it is, both accepted on every protected route:

- bearer transport + JWT strategy (`/auth/jwt`): stateless, short-lived, not revocable;
- cookie transport + database strategy (`/auth/cookie`): an opaque token stored in Postgres,
  revoked at logout, on a password change or reset, and on deactivation.
"""

import functools
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from fastapi_users import BaseUserManager, exceptions
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    CookieTransport,
    JWTStrategy,
)
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users.openapi import OpenAPIResponseType
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyAccessTokenDatabase
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.config import AuthConfig, secret_value
from roster_auth.models import AccessToken, User
from roster_db import SessionDep

JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "fastapi-users:auth"


class RequiredClaimsJWTStrategy(JWTStrategy[User, uuid.UUID]):
    """FastAPI Users' JWT strategy, refusing tokens without an expiry (PyJWT accepts them when
    the claim is absent), a subject or an audience."""

    async def read_token(
        self, token: str | None, user_manager: BaseUserManager[User, uuid.UUID]
    ) -> User | None:
        if token is None:
            return None
        user_id = self.user_id_of(token)
        if user_id is None:
            return None
        try:
            return await user_manager.get(user_id)
        except exceptions.UserNotExists:
            return None

    def user_id_of(self, token: str) -> uuid.UUID | None:
        """The user a valid token names (signature, expiry, audience, subject), else None."""
        try:
            data = jwt.decode(
                token,
                self._decode_secret,
                audience=self.token_audience,
                algorithms=[self.algorithm],
                options={"require": ["exp", "sub", "aud"]},
            )
            return uuid.UUID(data["sub"])
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
            return None

    @functools.cached_property
    def _decode_secret(self) -> str:
        return secret_value(self.decode_key)


class PurgingDatabaseStrategy(DatabaseStrategy[User, uuid.UUID, AccessToken]):
    """FastAPI Users' database strategy, which also deletes the user's expired tokens when it
    stores a new one (in the same commit), so the table does not grow with every login."""

    def __init__(self, session: AsyncSession, lifetime_seconds: int) -> None:
        super().__init__(SQLAlchemyAccessTokenDatabase(session, AccessToken), lifetime_seconds)
        self.session = session
        self.lifetime = timedelta(seconds=lifetime_seconds)

    async def write_token(self, user: User) -> str:
        columns = AccessToken.__table__.c
        await self.session.execute(
            delete(AccessToken).where(
                columns.user_id == user.id,
                columns.created_at < datetime.now(UTC) - self.lifetime,
            )
        )
        return await super().write_token(user)


def jwt_strategy(config: AuthConfig) -> RequiredClaimsJWTStrategy:
    return RequiredClaimsJWTStrategy(
        secret=secret_value(config.access_token_secret),
        lifetime_seconds=config.access_token_lifetime_seconds,
        token_audience=[JWT_AUDIENCE],
        algorithm=JWT_ALGORITHM,
    )


class DocumentedBearerTransport(BearerTransport):
    """FastAPI Users' bearer transport, whose logout answer (204: nothing to clear) is in the
    published schema; FastAPI Users declares none, so the schema said 200."""

    @staticmethod
    def get_openapi_logout_responses_success() -> OpenAPIResponseType:
        return {204: {"description": "Logged out (a JWT stays valid until it expires)."}}


def database_strategy(config: AuthConfig, session: AsyncSession) -> PurgingDatabaseStrategy:
    return PurgingDatabaseStrategy(session, config.cookie_token_lifetime_seconds)


def build_backends(
    config: AuthConfig, strategy: RequiredClaimsJWTStrategy
) -> tuple[AuthenticationBackend[User, uuid.UUID], AuthenticationBackend[User, uuid.UUID]]:
    """The JWT (bearer) backend on `strategy`, which also mints the application's own tokens,
    and the database-token (cookie) backend."""

    # `async`, like every dependency here: FastAPI runs a plain `def` in a worker thread, a
    # hand-off that costs more than the call on every authenticated request.
    async def get_jwt_strategy() -> RequiredClaimsJWTStrategy:
        return strategy

    # A plain function (not a generator), so that it may depend on the function-scoped
    # session, which commits before the response is sent.
    async def get_database_strategy(session: SessionDep) -> PurgingDatabaseStrategy:
        return database_strategy(config, session)

    jwt_backend = AuthenticationBackend[User, uuid.UUID](
        name="jwt",
        transport=DocumentedBearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    cookie_backend = AuthenticationBackend[User, uuid.UUID](
        name="cookie",
        transport=CookieTransport(
            cookie_name=config.cookie_name,
            cookie_max_age=config.cookie_token_lifetime_seconds,
            cookie_domain=config.cookie_domain,
            cookie_secure=config.cookie_secure,
            cookie_httponly=True,
            cookie_samesite=config.cookie_samesite,
        ),
        get_strategy=get_database_strategy,
    )
    return jwt_backend, cookie_backend
