"""The floor app: Starlette on a bare asyncpg pool, no ORM, no validation layer, no dependency
injection. It answers two of roster's requests with the same JSON (the benchmark checks that
before it starts), so roster's throughput divided by the floor's says what roster's layers
cost on this machine, in this run.

- `GET /user-groups/{id}/users?limit=&offset=`: decode the same JWT, then one query that checks
  the caller is an active member and reads the total and the page;
- `GET /users/me`: decode the same JWT (PyJWT, as FastAPI Users does), one query.

`uvicorn bench.floor.app:create_app --factory`, configured by `BENCH_FLOOR_*` variables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from bench.counting import Counters, StatsEndpoint

DSN_VARIABLE: Final = "BENCH_FLOOR_DATABASE_URL"
JWT_SECRET_VARIABLE: Final = "BENCH_FLOOR_JWT_SECRET"
POOL_SIZE_VARIABLE: Final = "BENCH_FLOOR_POOL_SIZE"
# roster's default pool: 5 kept plus 10 overflow connections.
DEFAULT_POOL_SIZE: Final = 15
JWT_AUDIENCE: Final = "fastapi-users:auth"
MAX_LIMIT: Final = 100

USER_COLUMNS: Final = "id, email, is_active, is_superuser, is_verified, display_name, created_at"

ME_SQL: Final = f'SELECT {USER_COLUMNS} FROM "user" WHERE id = $1'

# Who may see the group (an active member), the total and the page, in one statement: a row per
# user of the page, each carrying the total (one row with a NULL id for an empty page); no row
# when the caller is not an active member of an existing group.
GROUP_USERS_SQL: Final = """
SELECT counted.total, page.*
FROM "user" AS caller
JOIN membership AS access ON access.user_id = caller.id AND access.group_id = $2
CROSS JOIN LATERAL (
    SELECT count(*) AS total FROM membership WHERE group_id = $2
) AS counted
LEFT JOIN LATERAL (
    SELECT u.id, u.email, u.is_active, u.is_superuser, u.is_verified, u.display_name,
           u.created_at, m.joined_at, m.user_id
    FROM membership AS m JOIN "user" AS u ON u.id = m.user_id
    WHERE m.group_id = $2
    ORDER BY m.joined_at, m.user_id
    LIMIT $3 OFFSET $4
) AS page ON true
WHERE caller.id = $1 AND caller.is_active
ORDER BY page.joined_at, page.user_id
"""


def iso(moment: datetime) -> str:
    """As pydantic writes an aware datetime: ISO 8601 with `Z` for UTC."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def user_json(row: Mapping[str, Any]) -> dict[str, object]:
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "is_active": row["is_active"],
        "is_superuser": row["is_superuser"],
        "is_verified": row["is_verified"],
        "display_name": row["display_name"],
        "created_at": iso(row["created_at"]),
    }


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class Floor:
    def __init__(self, dsn: str, jwt_secret: str, pool_size: int, counters: Counters) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.pool_size = pool_size
        self.counters = counters
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the pool is opened by the lifespan"
        return self._pool

    async def _init_connection(self, connection: asyncpg.Connection) -> None:
        connection.add_query_logger(self.counters.round_trip)

    async def _keep_session(self, connection: asyncpg.Connection) -> None:
        # The floor never changes session state, so the default reset (one more round trip
        # per request) has nothing to undo.
        return None

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=min(5, self.pool_size),
            max_size=self.pool_size,
            init=self._init_connection,
            reset=self._keep_session,
        )
        try:
            yield
        finally:
            await self._pool.close()

    def caller_id(self, request: Request) -> uuid.UUID | None:
        """The user a valid bearer JWT names (FastAPI Users' claims), else None."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                audience=[JWT_AUDIENCE],
                algorithms=["HS256"],
                options={"require": ["exp", "sub", "aud"]},
            )
            return uuid.UUID(claims["sub"])
        except (jwt.PyJWTError, ValueError):
            return None

    async def users_me(self, request: Request) -> JSONResponse:
        user_id = self.caller_id(request)
        if user_id is None:
            return problem(401, "Unauthorized")
        self.counters.statement()
        row = await self.pool.fetchrow(ME_SQL, user_id)
        if row is None or not row["is_active"]:
            return problem(401, "Unauthorized")
        return JSONResponse(user_json(row))

    async def group_users(self, request: Request) -> JSONResponse:
        """A bare array of users, `X-Total-Count` and `Link` headers, as roster answers."""
        user_id = self.caller_id(request)
        if user_id is None:
            return problem(401, "Unauthorized")
        try:
            group_id = int(request.path_params["group_id"])
            limit = int(request.query_params.get("limit", "50"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return problem(422, "group_id, limit and offset are integers")
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            return problem(422, f"limit is 1 to {MAX_LIMIT}, offset at least 0")
        self.counters.statement()
        rows = await self.pool.fetch(GROUP_USERS_SQL, user_id, group_id, limit, offset)
        if not rows:
            return problem(404, "GROUP_NOT_FOUND")
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
        return JSONResponse(
            [user_json(row) for row in rows if row["id"] is not None], headers=headers
        )


def create_app() -> ASGIApp:
    counters = Counters()
    floor = Floor(
        dsn=os.environ[DSN_VARIABLE],
        jwt_secret=os.environ[JWT_SECRET_VARIABLE],
        pool_size=int(os.environ.get(POOL_SIZE_VARIABLE, DEFAULT_POOL_SIZE)),
        counters=counters,
    )
    app = Starlette(
        routes=[
            Route("/users/me", floor.users_me),
            Route("/user-groups/{group_id}/users", floor.group_users),
        ],
        lifespan=floor.lifespan,
    )
    return StatsEndpoint(app, counters)
