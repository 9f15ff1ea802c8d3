"""The two ways a client proves who it is, both accepted on every protected route:

- bearer transport + JWT strategy (`/auth/jwt`): stateless, short-lived, not revocable; a
  login also hands out a refresh token to renew it with (roster_auth.sessions);
- cookie transport + database strategy (`/auth/cookie`): an opaque token whose SHA-256 digest
  is stored in Postgres, revoked at logout, when its session is ended, on a password change
  or reset, and on deactivation.
"""

import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import jwt
from fastapi import Request
from fastapi_users import BaseUserManager, exceptions
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    CookieTransport,
    JWTStrategy,
)
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users.jwt import generate_jwt
from fastapi_users.openapi import OpenAPIResponseType
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyAccessTokenDatabase
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.config import AuthConfig, secret_value
from roster_auth.models import AccessToken, User
from roster_auth.sessions import Origin, Sessions, token_digest
from roster_db import SessionDep

JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "fastapi-users:auth"
# The refresh-token family (session) an access token was issued for (OpenID Connect's name).
SESSION_CLAIM = "sid"


# How many verified access tokens a strategy remembers (about half a kilobyte each).
VERIFIED_TOKENS_KEPT: Final = 4096

TokenClaims = tuple[uuid.UUID, uuid.UUID | None]


class RequiredClaimsJWTStrategy(JWTStrategy[User, uuid.UUID]):
    """FastAPI Users' JWT strategy, refusing tokens without an expiry (PyJWT accepts them when
    the claim is absent), a subject or an audience.

    A token it has verified is remembered until its expiry (the last `VERIFIED_TOKENS_KEPT`,
    oldest forgotten first): a client sends the same token with every request of its 15
    minutes, and PyJWT's checks (the key's format, base64, JSON, the HMAC, the claims) cost
    about 70 µs each time, a tenth of a `/users/me`. Only a token that passed every check is
    kept, under its full text (signature included), and its expiry is checked again at each
    use as PyJWT checks it; the claims that decide anything else (the user's row, active or
    not) are read from the database on every request, as before."""

    # The clock PyJWT reads the expiry against (seconds since the epoch); tests move it.
    clock: Callable[[], float] = staticmethod(time.time)

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
        claims = self.claims_of(token)
        return None if claims is None else claims[0]

    def claims_of(self, token: str) -> TokenClaims | None:
        """(user, session) of a valid token, else None. The session is the refresh-token
        family the token was issued for (its `sid` claim): None for a token without one (one
        from `write_token`, not issued by a login of this backend)."""
        verified = self._verified.get(token)
        if verified is not None:
            claims, expires_at = verified
            if self.clock() < expires_at:  # PyJWT: expired when `exp <= now`
                return claims
            del self._verified[token]
            return None
        try:
            data = jwt.decode(
                token,
                self._decode_secret,
                audience=self.token_audience,
                algorithms=[self.algorithm],
                options={"require": ["exp", "sub", "aud"]},
            )
            user_id = uuid.UUID(data["sub"])
            sid = data.get(SESSION_CLAIM)
            claims = (user_id, None if sid is None else uuid.UUID(sid))
            expires_at = int(data["exp"])
        except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
            return None
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)  # the oldest
        self._verified[token] = (claims, expires_at)
        return claims

    @functools.cached_property
    def _verified(self) -> OrderedDict[str, tuple[TokenClaims, int]]:
        # Insertion order is age order: the first key is the oldest.
        return OrderedDict()

    def write_session_token(self, user_id: uuid.UUID, family_id: uuid.UUID) -> str:
        """An access token for the user, naming the refresh-token family it was issued for."""
        data = {"sub": str(user_id), "aud": self.token_audience, SESSION_CLAIM: str(family_id)}
        return generate_jwt(data, self.encode_key, self.lifetime_seconds, algorithm=self.algorithm)

    @functools.cached_property
    def _decode_secret(self) -> str:
        return secret_value(self.decode_key)


class HashingAccessTokenDatabase(SQLAlchemyAccessTokenDatabase[AccessToken]):
    """FastAPI Users' access-token adapter on the tokens' SHA-256 digests: a token given to
    `get_by_token` or `create` is hashed first, so the table never holds a usable token (the
    cookie carries it)."""

    async def get_by_token(self, token: str, max_age: datetime | None = None) -> AccessToken | None:
        return await super().get_by_token(token_digest(token), max_age)

    async def create(self, create_dict: dict[str, Any]) -> AccessToken:
        return await super().create({**create_dict, "token": token_digest(create_dict["token"])})


class PurgingDatabaseStrategy(DatabaseStrategy[User, uuid.UUID, AccessToken]):
    """FastAPI Users' database strategy on hashed tokens, which records where a session began
    (user agent, client address) and, when it stores a new token, deletes the user's ended
    sessions (cookie and refresh, in the same commit), so the tables do not grow with every
    login."""

    def __init__(
        self,
        session: AsyncSession,
        config: AuthConfig,
        request: Request | None = None,
    ) -> None:
        super().__init__(
            HashingAccessTokenDatabase(session, AccessToken), config.cookie_token_lifetime_seconds
        )
        self.session = session
        self.sessions = Sessions(config)
        self.request = request

    async def write_token(self, user: User) -> str:
        # FastAPI Users' write_token, returning the token rather than the stored row's
        # (hashed) one.
        now = self.sessions.clock()
        await self.sessions.purge_user(self.session, user.id, now)
        access_token_dict = self._create_access_token_dict(user)
        await self.database.create(
            {
                **access_token_dict,
                "created_at": now,
                "last_used_at": now,
                **Origin.of(self.request).values(),
            }
        )
        token: str = access_token_dict["token"]
        return token


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


def database_strategy(
    config: AuthConfig, session: AsyncSession, request: Request | None = None
) -> PurgingDatabaseStrategy:
    return PurgingDatabaseStrategy(session, config, request)


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
    async def get_database_strategy(
        request: Request, session: SessionDep
    ) -> PurgingDatabaseStrategy:
        return database_strategy(config, session, request)

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
