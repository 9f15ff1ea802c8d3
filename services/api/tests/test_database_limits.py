"""The service's time limits on its database connections, end to end: the settings reach every
connection (of both pools), and a request cut short by one, or by a connection the server
ended, answers 503 with Retry-After, never 500.

The app runs on its own engine (as in production) against committed data: a second connection
holds a group's row lock while an owner's write waits for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import create_app
from roster_auth import RosterAuth
from roster_auth.testing import bearer_headers, config_for_tests, create_user
from roster_db import ReaderDep, SessionDep, with_generic_plan
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]

# Bounds every wait, so that code without the limits fails instead of hanging.
WAIT_LIMIT_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Crew:
    group_id: int
    owner_headers: dict[str, str]


async def make_crew(sessionmaker: Sessionmaker, auth: RosterAuth) -> Crew:
    """A committed group with one owner, and the owner's bearer header."""
    async with sessionmaker() as session:
        owner = await create_user(session, email="owner@example.com")
        group = UserGroup(name="Crew")
        session.add(group)
        await session.flush()
        assert group.id is not None
        session.add(Membership(group_id=group.id, user_id=owner.id, role=GroupRole.OWNER))
        await session.commit()
        return Crew(group_id=group.id, owner_headers=await bearer_headers(auth, owner))


def app_with_limits(database_url: str, **limits: float) -> FastAPI:
    """The service on its own engine, built from settings as `roster serve` builds it."""
    return create_app(
        make_settings(database_url=database_url, **limits), auth_config=config_for_tests()
    )


@asynccontextmanager
async def group_row_locked(sessionmaker: Sessionmaker, group_id: int) -> AsyncIterator[None]:
    """Another transaction holds the group's row lock (`FOR UPDATE`) inside the block."""
    async with sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        try:
            yield
        finally:
            await holder.rollback()


async def owners_write(client: httpx.AsyncClient, crew: Crew) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await asyncio.wait_for(
        client.patch(
            f"/groups/{crew.group_id}", json={"description": "new"}, headers=crew.owner_headers
        ),
        timeout=WAIT_LIMIT_SECONDS,
    )
    return response, time.monotonic() - started


def limit_warnings(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [
        record.__dict__["sqlstate"]
        for record in caplog.records
        if record.getMessage() == "database time limit exceeded"
    ]


async def test_the_settings_reach_every_connection_of_the_service(database_url: str) -> None:
    app = app_with_limits(
        database_url,
        database_statement_timeout_seconds=7,
        database_lock_timeout_seconds=1.5,
        database_idle_in_transaction_timeout_seconds=45,
    )

    @app.get("/test-only/limits")
    async def limits(session: SessionDep) -> list[str]:
        names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        connection = await session.connection()
        return [
            str((await connection.execute(text(f"SHOW {name}"))).scalar_one()) for name in names
        ]

    async with serve(app) as client:
        response = await client.get("/test-only/limits")
    assert response.json() == ["7s", "1500ms", "45s"]


async def test_the_reader_plans_the_statements_that_ask_for_it_once_under_the_same_limits(
    database_url: str,
) -> None:
    app = app_with_limits(database_url, database_statement_timeout_seconds=7)
    settings = text(
        "SELECT current_setting('plan_cache_mode'), current_setting('statement_timeout')"
    )

    @app.get("/test-only/plans")
    async def plans(reader: ReaderDep) -> list[list[str]]:
        return [
            [str(value) for value in (await reader.all(statement))[0]]
            for statement in (settings, with_generic_plan(settings))
        ]

    async with serve(app) as client:
        response = await client.get("/test-only/plans")
    assert response.json() == [["auto", "7s"], ["force_generic_plan", "7s"]]


async def test_a_write_waiting_past_the_lock_timeout_is_a_503_with_retry_after(
    database_url: str,
    committing_sessionmaker: Sessionmaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with_limits(database_url, database_lock_timeout_seconds=0.2)
    crew = await make_crew(committing_sessionmaker, app.state.auth)
    with caplog.at_level(logging.WARNING, logger="roster_api"):
        async with serve(app) as client, group_row_locked(committing_sessionmaker, crew.group_id):
            response, elapsed = await owners_write(client, crew)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"detail": "DATABASE_UNAVAILABLE"}
    assert 0.2 <= elapsed < WAIT_LIMIT_SECONDS / 2
    assert limit_warnings(caplog) == ["55P03"]


async def test_a_statement_past_the_statement_timeout_is_a_503_with_retry_after(
    database_url: str,
    committing_sessionmaker: Sessionmaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No lock timeout: the statement waiting for the lock runs until the statement timeout.
    app = app_with_limits(
        database_url, database_lock_timeout_seconds=0, database_statement_timeout_seconds=0.3
    )
    crew = await make_crew(committing_sessionmaker, app.state.auth)
    with caplog.at_level(logging.WARNING, logger="roster_api"):
        async with serve(app) as client, group_row_locked(committing_sessionmaker, crew.group_id):
            response, elapsed = await owners_write(client, crew)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"detail": "DATABASE_UNAVAILABLE"}
    assert 0.3 <= elapsed < WAIT_LIMIT_SECONDS / 2
    assert limit_warnings(caplog) == ["57014"]


async def test_without_the_lock_held_the_same_write_succeeds(
    database_url: str, committing_sessionmaker: Sessionmaker
) -> None:
    """The 503s above come from the held lock, not from the limits alone."""
    app = app_with_limits(
        database_url, database_lock_timeout_seconds=0.2, database_statement_timeout_seconds=0.3
    )
    crew = await make_crew(committing_sessionmaker, app.state.auth)
    async with serve(app) as client:
        response, _ = await owners_write(client, crew)
    assert response.status_code == 200, response.text


async def test_connections_the_server_ended_fail_one_request_each_with_a_503_then_are_replaced(
    database_url: str, committing_sessionmaker: Sessionmaker
) -> None:
    """A Postgres restart or failover ends every pooled connection: the request that meets a
    dead one answers 503 with Retry-After (never 500), and the pool opens new ones."""
    app = app_with_limits(database_url)
    crew = await make_crew(committing_sessionmaker, app.state.auth)
    backend = text("SELECT pg_backend_pid()")

    @app.get("/test-only/backends")
    async def backends(reader: ReaderDep) -> list[int]:
        return [(await reader.all(s))[0][0] for s in (backend, with_generic_plan(backend))]

    listing = f"/groups/{crew.group_id}/members"
    async with serve(app) as client:
        # One connection in each pool (the requests run one at a time).
        pids = (await client.get("/test-only/backends")).json()
        assert (await client.get(listing, headers=crew.owner_headers)).status_code == 200
        assert (await client.get("/users/me", headers=crew.owner_headers)).status_code == 200
        async with committing_sessionmaker() as session:
            ended = await session.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                {"pids": pids},
            )
            assert ended.scalars().all() == [True, True]

        first = [
            await client.get(path, headers=crew.owner_headers) for path in (listing, "/users/me")
        ]
        assert [response.status_code for response in first] == [503, 503]
        assert {response.json()["detail"] for response in first} == {"DATABASE_UNAVAILABLE"}
        assert all(response.headers["retry-after"] for response in first)
        again = [
            await client.get(path, headers=crew.owner_headers) for path in (listing, "/users/me")
        ]
        assert [response.status_code for response in again] == [200, 200]
        assert set((await client.get("/test-only/backends")).json()).isdisjoint(pids)
