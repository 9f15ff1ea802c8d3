"""The stack-ceiling app: what FastAPI plus SQLAlchemy's async Core can do on this machine,
with nothing of roster's own. It answers the reads of issue 11 with roster's JSON under
roster's checks (the JWT's claims, an active user, a stored unexpired cookie token, membership
of the group), in one statement per request, so roster's throughput divided by this app's says
what roster's own layers cost on top of the stack it is built on (the floor, Starlette on bare
asyncpg, stays as the physical reference).

- `GET /users/me` (bearer JWT or the database-token cookie): one statement;
- `GET /user-groups/{id}/users?limit=&offset=`: one statement that checks the caller is an
  active member and reads the total and the page (a deferred join, as roster pages);
- `GET /groups/{id}/members?limit=&offset=`: the same for the members page.

The best the stack offers, as a careful hand would write it: statements built once (`text()`
with typed parameters, compiled once by SQLAlchemy's cache), an AUTOCOMMIT engine (no BEGIN or
COMMIT around a single read), FastAPI's own parameter validation, rows serialised straight to
JSON with no model in between, roster's pool size (15 + 5).

`uvicorn bench.ceiling.app:create_app --factory`, configured by `BENCH_CEILING_*` variables.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

import jwt
from fastapi import Cookie, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import DateTime, Integer, String
from starlette.types import ASGIApp

from bench.counting import Counters, StatsEndpoint
from bench.serve import count_statements

DATABASE_URL_VARIABLE: Final = "BENCH_CEILING_DATABASE_URL"
JWT_SECRET_VARIABLE: Final = "BENCH_CEILING_JWT_SECRET"
COOKIE_LIFETIME_VARIABLE: Final = "BENCH_CEILING_COOKIE_LIFETIME_SECONDS"
# roster's defaults: its pool (15 kept plus 5 overflow), its cookie and its tokens' lifetime.
POOL_SIZE: Final = 15
MAX_OVERFLOW: Final = 5
COOKIE_NAME: Final = "roster_auth"
DEFAULT_COOKIE_LIFETIME_SECONDS: Final = 14 * 24 * 3600
JWT_AUDIENCE: Final = "fastapi-users:auth"
MAX_LIMIT: Final = 100
MAX_GROUP_ID: Final = 2**31 - 1

USER_COLUMNS: Final = (
    "u.id, u.email, u.is_active, u.is_superuser, u.is_verified, u.display_name, u.created_at"
)

ME_BY_ID: Final = text(f'SELECT {USER_COLUMNS} FROM "user" AS u WHERE u.id = :user_id').bindparams(
    bindparam("user_id", type_=UUID(as_uuid=True))
)
ME_BY_TOKEN: Final = text(
    f'SELECT {USER_COLUMNS} FROM accesstoken AS t JOIN "user" AS u ON u.id = t.user_id '
    "WHERE t.token = :token AND t.created_at >= :not_before"
).bindparams(
    bindparam("token", type_=String()), bindparam("not_before", type_=DateTime(timezone=True))
)


def _listing(columns: str) -> TextClause:
    """Who may see the group (an active member), the total and the page, in one statement: a
    row per item of the page, each carrying the total (one row with a NULL item for an empty
    page); no row when the caller is not an active member of an existing group."""
    return text(f"""
SELECT counted.total, page.*
FROM "user" AS caller
JOIN membership AS access ON access.user_id = caller.id AND access.group_id = :group_id
CROSS JOIN LATERAL (
    SELECT count(*) AS total FROM membership WHERE group_id = :group_id
) AS counted
LEFT JOIN LATERAL (
    SELECT {columns}, m.joined_at AS page_joined_at, m.user_id AS page_user_id
    FROM (
        SELECT user_id, role, joined_at FROM membership WHERE group_id = :group_id
        ORDER BY joined_at, user_id LIMIT :limit OFFSET :offset
    ) AS m JOIN "user" AS u ON u.id = m.user_id
) AS page ON true
WHERE caller.id = :caller_id AND caller.is_active
ORDER BY page.page_joined_at, page.page_user_id
""").bindparams(
        bindparam("caller_id", type_=UUID(as_uuid=True)),
        bindparam("group_id", type_=Integer()),
        bindparam("limit", type_=Integer()),
        bindparam("offset", type_=Integer()),
    )


GROUP_USERS: Final = _listing(USER_COLUMNS)
MEMBERS: Final = _listing("m.user_id, u.email, u.display_name, m.role::text AS role, m.joined_at")
USER_FIELDS: Final = (
    "id", "email", "is_active", "is_superuser", "is_verified", "display_name", "created_at"
)  # fmt: skip
MEMBER_FIELDS: Final = ("user_id", "email", "display_name", "role", "joined_at")


def iso(moment: datetime) -> str:
    """As pydantic writes an aware datetime: ISO 8601 with `Z` for UTC."""
    text_ = moment.isoformat()
    return text_[:-6] + "Z" if text_.endswith("+00:00") else text_


def as_json(row: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, object]:
    item: dict[str, object] = {}
    for name in fields:
        value = row[name]
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = iso(value)
        item[name] = value
    return item


UNAUTHORIZED: Final = HTTPException(401, "Unauthorized")
GroupId = Annotated[int, Path(ge=1, le=MAX_GROUP_ID)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0)]


def create_app() -> ASGIApp:
    counters = Counters()
    count_statements(counters)
    secret = os.environ[JWT_SECRET_VARIABLE]
    cookie_lifetime = timedelta(
        seconds=int(os.environ.get(COOKIE_LIFETIME_VARIABLE, DEFAULT_COOKIE_LIFETIME_SECONDS))
    )
    engines: list[AsyncEngine] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engines.append(
            create_async_engine(
                os.environ[DATABASE_URL_VARIABLE],
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                isolation_level="AUTOCOMMIT",
            )
        )
        try:
            yield
        finally:
            await engines[0].dispose()

    def caller_id(authorization: str | None) -> uuid.UUID:
        """The user a valid bearer JWT names (FastAPI Users' claims, roster's required ones)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UNAUTHORIZED
        try:
            claims = jwt.decode(
                token,
                secret,
                audience=[JWT_AUDIENCE],
                algorithms=["HS256"],
                options={"require": ["exp", "sub", "aud"]},
            )
            return uuid.UUID(claims["sub"])
        except (jwt.PyJWTError, ValueError) as error:
            raise UNAUTHORIZED from error

    async def fetch(statement: TextClause, **parameters: object) -> list[Any]:
        async with engines[0].connect() as connection:
            result = await connection.execute(statement, parameters)
            return list(result.mappings().all())

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/me")
    async def users_me(
        authorization: Annotated[str | None, Header()] = None,
        roster_auth: Annotated[str | None, Cookie()] = None,
    ) -> JSONResponse:
        # roster tries the cookie first, then the bearer token.
        rows = []
        if roster_auth:
            not_before = datetime.now(UTC) - cookie_lifetime
            # roster stores the token's SHA-256 digest, computed before the statement.
            digest = hashlib.sha256(roster_auth.encode()).hexdigest()
            rows = await fetch(ME_BY_TOKEN, token=digest, not_before=not_before)
        if not rows:
            rows = await fetch(ME_BY_ID, user_id=caller_id(authorization))
        if not rows or not rows[0]["is_active"]:
            raise UNAUTHORIZED
        return JSONResponse(as_json(rows[0], USER_FIELDS))

    async def listing(
        request: Request,
        statement: TextClause,
        fields: tuple[str, ...],
        authorization: str | None,
        group_id: int,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, object]], int, dict[str, str], Mapping[str, Any] | None]:
        user_id = caller_id(authorization)
        rows = await fetch(
            statement, caller_id=user_id, group_id=group_id, limit=limit, offset=offset
        )
        if not rows:
            raise HTTPException(404, "GROUP_NOT_FOUND")
        total = int(rows[0]["total"])
        headers = {"X-Total-Count": str(total)}
        links = []
        if offset + limit < total:
            next_url = request.url.include_query_params(limit=limit, offset=offset + limit)
            links.append(f'<{next_url}>; rel="next"')
        if offset > 0:
            previous_url = request.url.include_query_params(
                limit=limit, offset=max(offset - limit, 0)
            )
            links.append(f'<{previous_url}>; rel="prev"')
        if links:
            headers["Link"] = ", ".join(links)
        page = [row for row in rows if row["page_user_id"] is not None]
        items = [as_json(row, fields) for row in page]
        return items, total, headers, page[-1] if page else None

    @app.get("/user-groups/{group_id}/users")
    async def group_users(
        request: Request,
        group_id: GroupId,
        limit: Limit = 50,
        offset: Offset = 0,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        items, _, headers, _ = await listing(
            request, GROUP_USERS, USER_FIELDS, authorization, group_id, limit, offset
        )
        return JSONResponse(items, headers=headers)

    @app.get("/groups/{group_id}/members")
    async def members(
        request: Request,
        group_id: GroupId,
        limit: Limit = 50,
        offset: Offset = 0,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        items, total, _, last = await listing(
            request, MEMBERS, MEMBER_FIELDS, authorization, group_id, limit, offset
        )
        # roster's `next_cursor`, written as roster writes it; no cursor input (offset only).
        next_cursor = None
        if last is not None and offset + len(items) < total:
            position = f"{last['joined_at'].isoformat()}|{last['user_id']}".encode()
            next_cursor = base64.urlsafe_b64encode(position).rstrip(b"=").decode("ascii")
        return JSONResponse(
            {
                "items": items,
                "total": total,
                "limit": limit,
                "offset": offset,
                "next_cursor": next_cursor,
            }
        )

    return StatsEndpoint(app, counters)
