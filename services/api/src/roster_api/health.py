"""Health probes: `/health/live` (the process answers) and `/health/ready` (the database
answers and is at the migration revision this code expects)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from roster_api.errors import ErrorBody, ServiceErrorCode, error_response
from roster_db import SessionDep

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"


async def database_revision(session: AsyncSession) -> str | None:
    """Alembic's revision of the database, None when it was never migrated. Plain SQL rather
    than Alembic's MigrationContext, which logs at INFO on every probe."""
    if await session.scalar(text("SELECT to_regclass('alembic_version')")) is None:
        return None
    revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


class Live(BaseModel):
    status: Literal["alive"] = "alive"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    revision: str


def create_health_router(expected_revision: str, timeout_seconds: float = 3.0) -> APIRouter:
    """The probes; `expected_revision` is the head of the code's migrations."""
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", response_model=Live)
    async def live() -> Live:
        """The process is up; says nothing about the database (a liveness probe)."""
        return Live()

    not_ready: dict[int | str, dict[str, Any]] = {
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": ErrorBody,
            "description": (
                "The database cannot be reached "
                f"(`{ServiceErrorCode.DATABASE_UNAVAILABLE}`, with `Retry-After`) or is not at "
                f"the code's migration revision (`{ServiceErrorCode.DATABASE_NOT_MIGRATED}`, "
                "with the reason)."
            ),
        }
    }

    @router.get("/ready", response_model=Ready, responses=not_ready)
    async def ready(session: SessionDep) -> Ready | JSONResponse:
        """A database round trip that also checks the database is migrated to the code's head
        (a readiness probe)."""
        async with asyncio.timeout(timeout_seconds):
            revision = await database_revision(session)
        if revision != expected_revision:
            found = "has never been migrated" if revision is None else f"is at {revision}"
            return error_response(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                {
                    "code": ServiceErrorCode.DATABASE_NOT_MIGRATED,
                    "reason": f"the database {found}; this code needs {expected_revision} "
                    "(run `roster migrate upgrade`)",
                },
            )
        return Ready(revision=revision)

    return router


__all__ = ["LIVE_PATH", "READY_PATH", "Live", "Ready", "create_health_router"]
