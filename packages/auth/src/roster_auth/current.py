"""Who is calling: the current-user dependencies every protected route uses.

FastAPI Users' own `current_user` builds a user manager, a user database adapter and a session
for every request, and reads the user through the ORM (`session.get`) inside a transaction:
BEGIN, SELECT, COMMIT. Here, the backends' transports still find the token (the cookie tried
first, then the bearer token, as FastAPI Users does), and the user's row comes from one Core
statement, built once from the models' tables, run by the application's `Reader` (AUTOCOMMIT:
one round trip):

- a bearer JWT: the strategy checks the signature and the claims, then the row by id;
- the cookie: the stored token (its SHA-256 digest, computed here) and its user in one
  statement (a token older than the backend's lifetime is no token), which also writes the
  session's `last_used_at` when it is older than the touch interval (5 minutes by default).

The transports' security schemes are called, not depended on: FastAPI solves every dependency
as a node of its own, and the two schemes' nodes cost about 4 % of a members page (bench/NOTES.md).
So OpenAPI does not see them through these dependencies; `document_credentials` adds to the
document what depending on them would have: both schemes on every operation whose route uses
one of these dependencies, the cookie first, and their definitions.

A JWT never costs a read of the session tables: a refresh-token family that is revoked leaves
the access tokens it issued valid until they expire (15 minutes by default).

Nothing is cached but the statements and the JWTs already verified (each until its expiry, see
`RequiredClaimsJWTStrategy`): every request reads the row afresh, so a deactivation or a
password change (which deletes the stored tokens in the same commit) counts from the next
request on. The answers are FastAPI Users': 401 without a valid token or for an inactive user,
403 for a non-superuser where a superuser is required.
"""

import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar, cast

from fastapi import HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.routing import iter_route_contexts
from fastapi.security.base import SecurityBase
from sqlalchemy import ColumnElement, Row, Table, and_, bindparam, func, select, update
from sqlalchemy.orm import make_transient_to_detached
from starlette.routing import BaseRoute

from roster_auth.backends import RequiredClaimsJWTStrategy
from roster_auth.config import utc_now
from roster_auth.models import AccessToken, User
from roster_auth.sessions import token_digest
from roster_db import reader_of

USERS: Final = cast(Table, User.__table__)
TOKENS: Final = cast(Table, AccessToken.__table__)

USER_BY_ID: Final = select(USERS).where(USERS.c.id == bindparam("user_id"))


def _live_cookie_token(token: str, not_before: str) -> ColumnElement[bool]:
    """The stored cookie token whose digest is `:token`, within the cookie's lifetime (created
    at `:not_before` or later)."""
    return and_(
        TOKENS.c.token == bindparam(token, type_=TOKENS.c.token.type),
        TOKENS.c.created_at >= bindparam(not_before, type_=TOKENS.c.created_at.type),
    )


# The cookie's session's `last_used_at`, written by the same statement that reads the user,
# at most once per touch interval (`touch_before`): no statement more, and most requests write
# nothing. The SELECT sees the row as it was before (one snapshot for the whole statement).
_TOUCH_COOKIE: Final = (
    update(TOKENS)
    .values(last_used_at=bindparam("now", type_=TOKENS.c.last_used_at.type))
    .where(
        _live_cookie_token("token_hash", "not_before"),
        TOKENS.c.last_used_at < bindparam("touch_before", type_=TOKENS.c.last_used_at.type),
    )
    .returning(TOKENS.c.id)
    .cte("touched")
)
USER_BY_TOKEN: Final = (
    select(USERS)
    .join(TOKENS, TOKENS.c.user_id == USERS.c.id)
    .where(_live_cookie_token("token_hash", "not_before"))
    .add_cte(_TOUCH_COOKIE)
)


# The caller's row in a statement of another member (one that checks who calls and answers in
# the same statement, as roster-groups' listings do), chosen as the dependencies below choose
# it: the stored cookie token's user when the token is found (within the cookie's lifetime),
# else the JWT's subject; no row without either. The parameters come from
# `Credentials.parameters()`.
CALLER: Final = (
    select(USERS.c.id, USERS.c.is_active, USERS.c.is_superuser)
    .where(
        USERS.c.id
        == func.coalesce(
            select(TOKENS.c.user_id)
            .where(_live_cookie_token("caller_token", "caller_not_before"))
            .scalar_subquery(),
            bindparam("caller_jwt_user_id", type_=USERS.c.id.type),
        )
    )
    .subquery("caller")
)


@dataclass(frozen=True)
class Credentials:
    """What a request presents, checked as far as it can be without the database: the cookie's
    token (looked up by `CALLER`) and the subject of a valid JWT."""

    token: str | None
    jwt_user_id: uuid.UUID | None
    not_before: datetime

    def parameters(self) -> dict[str, object]:
        """`CALLER`'s parameters (the stored token is the cookie token's digest)."""
        return {
            "caller_token": None if self.token is None else token_digest(self.token),
            "caller_not_before": self.not_before,
            "caller_jwt_user_id": self.jwt_user_id,
        }


@dataclass(frozen=True)
class CredentialSources:
    """Where a request's credentials come from, for every current-user dependency: the
    bearer JWT (read by `jwt_strategy`) and the cookie's stored token (valid for
    `cookie_lifetime_seconds`), each through the backend's security scheme, so that OpenAPI
    documents both."""

    jwt_strategy: RequiredClaimsJWTStrategy
    bearer_scheme: SecurityBase
    cookie_scheme: SecurityBase
    cookie_lifetime_seconds: int
    # How often a cookie session's `last_used_at` is written, at most.
    touch_interval_seconds: int = 5 * 60
    clock: Callable[[], datetime] = utc_now

    @property
    def cookie_lifetime(self) -> timedelta:
        return timedelta(seconds=self.cookie_lifetime_seconds)

    @property
    def touch_interval(self) -> timedelta:
        return timedelta(seconds=self.touch_interval_seconds)

    async def tokens(self, request: Request) -> tuple[str | None, str | None]:
        """The cookie's token and the bearer token of `request`, as the two schemes read them
        (FastAPI's `APIKeyCookie` and `OAuth2PasswordBearer`, neither refusing on its own)."""
        cookie_scheme = cast(_TokenScheme, self.cookie_scheme)
        bearer_scheme = cast(_TokenScheme, self.bearer_scheme)
        return await cookie_scheme(request), await bearer_scheme(request)


class _TokenScheme(Protocol):
    async def __call__(self, request: Request) -> str | None: ...


DependencyT = TypeVar("DependencyT", bound=Callable[..., Any])
# Where a dependency of this module keeps the sources it reads (for `document_credentials`).
_SOURCES_ATTRIBUTE: Final = "roster_credential_sources"


def _reading(sources: CredentialSources, dependency: DependencyT) -> DependencyT:
    setattr(dependency, _SOURCES_ATTRIBUTE, sources)
    return dependency


def not_authenticated() -> HTTPException:
    """FastAPI Users' answer to missing or invalid credentials, or an inactive user."""
    return HTTPException(status.HTTP_401_UNAUTHORIZED)


CredentialsDependency = Callable[..., Coroutine[Any, Any, Credentials]]


def credentials_dependency(sources: CredentialSources) -> CredentialsDependency:
    """The request's credentials, for a route that reads the caller's row in its own statement
    (`CALLER`), or a 401 when it has neither a cookie nor a valid JWT. The statement must
    answer 401 too when `CALLER` finds no row or an inactive user."""
    jwt_strategy, cookie_lifetime, clock = (
        sources.jwt_strategy,
        sources.cookie_lifetime,
        sources.clock,
    )

    async def current_credentials(request: Request) -> Credentials:
        cookie_token, bearer_token = await sources.tokens(request)
        jwt_user_id = None if bearer_token is None else jwt_strategy.user_id_of(bearer_token)
        if cookie_token is None and jwt_user_id is None:
            raise not_authenticated()
        return Credentials(cookie_token, jwt_user_id, clock() - cookie_lifetime)

    return _reading(sources, current_credentials)


def user_from_row(row: Row[Any]) -> User:
    """The row as a `User` the ORM sees as loaded and detached, as if a session that read it
    had closed: a route that writes the user (`PATCH /users/me`) adds it to its session, which
    then updates the row, never inserts it."""
    user = User(**row._mapping)
    make_transient_to_detached(user)
    return user


CurrentUserDependency = Callable[..., Coroutine[Any, Any, User]]
CurrentUserRowDependency = Callable[..., Coroutine[Any, Any, Row[Any]]]


def current_user_row_dependency(
    sources: CredentialSources, *, superuser: bool = False
) -> CurrentUserRowDependency:
    """The active user's row (a superuser's, with `superuser`), or FastAPI Users' 401 (403):
    for a route that only shows the user (`GET /users/me`), which needs no `User` object."""
    jwt_strategy, cookie_lifetime, touch_interval, clock = (
        sources.jwt_strategy,
        sources.cookie_lifetime,
        sources.touch_interval,
        sources.clock,
    )

    # The reader and the tokens are taken from the request, not as dependencies of their own:
    # every dependency FastAPI solves costs a few percent of a request this short.
    async def current_user_row(request: Request) -> Row[Any]:
        cookie_token, bearer_token = await sources.tokens(request)
        reader = reader_of(request)
        rows: Sequence[Row[Any]] = ()
        if cookie_token is not None:
            now = clock()
            rows = await reader.all(
                USER_BY_TOKEN,
                {
                    "token_hash": token_digest(cookie_token),
                    "not_before": now - cookie_lifetime,
                    "now": now,
                    "touch_before": now - touch_interval,
                },
            )
        if not rows and bearer_token is not None:
            user_id = jwt_strategy.user_id_of(bearer_token)
            if user_id is not None:
                rows = await reader.all(USER_BY_ID, {"user_id": user_id})
        if not rows or not rows[0].is_active:
            raise not_authenticated()
        if superuser and not rows[0].is_superuser:
            raise HTTPException(status.HTTP_403_FORBIDDEN)
        return rows[0]

    return _reading(sources, current_user_row)


def current_user_dependency(
    sources: CredentialSources, *, superuser: bool = False
) -> CurrentUserDependency:
    """The active user (and a superuser, with `superuser`), or FastAPI Users' 401 (403)."""
    read_row = current_user_row_dependency(sources, superuser=superuser)

    # The row's dependency, called directly rather than depended on (one dependency fewer to
    # solve on every request).
    async def current_user(request: Request) -> User:
        return user_from_row(await read_row(request))

    return _reading(sources, current_user)


def _sources_in(dependant: Dependant) -> CredentialSources | None:
    """The sources read by the first dependency of this module in `dependant`'s tree."""
    pending = [dependant]
    while pending:
        current = pending.pop()
        sources = getattr(current.call, _SOURCES_ATTRIBUTE, None)
        if isinstance(sources, CredentialSources):
            return sources
        pending.extend(current.dependencies)
    return None


# Where FastAPI puts an operation's `security`: after these keys, before the rest.
_OPERATION_METADATA: Final = ("tags", "summary", "description", "operationId", "deprecated")


def _with_security(operation: dict[str, Any], required: list[dict[str, list[str]]]) -> None:
    listed = operation.get("security", [])
    security = listed + [entry for entry in required if entry not in listed]
    if "security" in operation:
        operation["security"] = security
        return
    rest = {key: operation.pop(key) for key in list(operation) if key not in _OPERATION_METADATA}
    operation.update({"security": security, **rest})


def document_credentials(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Document, in `schema` (FastAPI's OpenAPI document of `routes`, changed in place), the
    security of every operation whose route uses a dependency of this module, as FastAPI
    documents two security-scheme dependencies: both schemes, the cookie first, and each
    scheme's definition under `components.securitySchemes`. An application that mounts
    roster-auth's routes calls it from its `openapi()`, as roster-api does."""
    paths: dict[str, Any] = schema.get("paths", {})
    for context in iter_route_contexts(routes):
        dependant = getattr(context, "dependant", None)
        if not isinstance(dependant, Dependant) or not getattr(context, "include_in_schema", True):
            continue
        sources = _sources_in(dependant)
        if sources is None:
            continue
        schemes = (sources.cookie_scheme, sources.bearer_scheme)
        required: list[dict[str, list[str]]] = [{scheme.scheme_name: []} for scheme in schemes]
        operations = paths.get(str(context.path_format), {})
        for method in context.methods or ():
            if method.lower() in operations:
                _with_security(operations[method.lower()], required)
        definitions = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in schemes:
            definitions.setdefault(
                scheme.scheme_name,
                jsonable_encoder(scheme.model, by_alias=True, exclude_none=True),
            )
    return schema


__all__ = [
    "CALLER",
    "USER_BY_ID",
    "USER_BY_TOKEN",
    "CredentialSources",
    "Credentials",
    "CredentialsDependency",
    "credentials_dependency",
    "current_user_dependency",
    "current_user_row_dependency",
    "document_credentials",
    "not_authenticated",
    "user_from_row",
]
