"""Engine, sessions and the request-scoped session dependency."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.pool import QueuePool
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db import (
    SessionDep,
    create_engine,
    create_sessionmaker,
    one_off_engine,
    session_scope,
    transactional,
)
from roster_db.testing import CreateDatabase
from roster_db.testkit import asgi_client


async def _create_notes(connection: AsyncConnection) -> None:
    await connection.execute(text("CREATE TABLE note (id serial PRIMARY KEY, body text NOT NULL)"))


async def _count(connection: AsyncConnection) -> int:
    return int((await connection.execute(text("SELECT count(*) FROM note"))).scalar_one())


async def _insert(session: AsyncSession, body: str) -> None:
    connection = await session.connection()
    await connection.execute(text("INSERT INTO note (body) VALUES (:body)"), {"body": body})


def _pooled_connections(engine: AsyncEngine) -> int:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin() + pool.checkedout()


def test_engine_refuses_a_url_for_another_driver() -> None:
    with pytest.raises(ValueError, match="postgresql\\+asyncpg"):
        create_engine("postgresql://localhost/roster")


async def test_a_one_off_engine_closes_its_connection_when_the_block_fails(
    database_url: str,
) -> None:
    engines: list[AsyncEngine] = []

    async def failing_command() -> None:
        async with one_off_engine(database_url) as engine:
            engines.append(engine)
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            assert _pooled_connections(engine) == 1  # back in the pool, still open
            raise RuntimeError("the command failed")

    with pytest.raises(RuntimeError, match="the command failed"):
        await failing_command()
    assert _pooled_connections(engines[0]) == 0


async def _timeouts(connection: AsyncConnection) -> tuple[str, ...]:
    names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
    return tuple(
        [str((await connection.execute(text(f"SHOW {name}"))).scalar_one()) for name in names]
    )


async def test_engine_sets_the_time_limits_on_every_connection(database_url: str) -> None:
    engine = create_engine(
        database_url,
        pool_size=2,
        max_overflow=0,
        statement_timeout_seconds=1.5,
        lock_timeout_seconds=0.25,
        idle_in_transaction_session_timeout_seconds=30,
    )
    try:
        async with engine.connect() as first, engine.connect() as second:
            assert await _timeouts(first) == ("1500ms", "250ms", "30s")
            assert await _timeouts(second) == ("1500ms", "250ms", "30s")
    finally:
        await engine.dispose()


async def test_engine_without_time_limits_keeps_the_servers(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            assert await _timeouts(connection) == ("0", "0", "0")
    finally:
        await engine.dispose()


async def test_an_autocommit_engine_commits_each_statement_and_sessions_get_transactions(
    create_database: CreateDatabase,
) -> None:
    # One pooled connection: the session below and the reads before and after share it.
    engine = create_engine(await create_database(), pool_size=1, max_overflow=0, autocommit=True)
    sessionmaker = create_sessionmaker(transactional(engine))
    try:
        async with engine.connect() as connection:
            await _create_notes(connection)
            await connection.execute(text("INSERT INTO note (body) VALUES ('committed alone')"))
        # Never committed, yet kept: no transaction was open.
        async with engine.connect() as connection:
            assert await _count(connection) == 1

        async def failing_unit_of_work() -> None:
            async with session_scope(sessionmaker) as session:
                connection = await session.connection()
                level = await connection.execute(text("SHOW transaction_isolation"))
                assert level.scalar_one() == "read committed"
                await _insert(session, "dropped with its transaction")
                raise RuntimeError("the route failed")

        with pytest.raises(RuntimeError, match="the route failed"):
            await failing_unit_of_work()
        async with engine.connect() as connection:
            assert await _count(connection) == 1
            # The connection the session used is back in AUTOCOMMIT mode.
            await connection.execute(text("INSERT INTO note (body) VALUES ('again alone')"))
        async with engine.connect() as connection:
            assert await _count(connection) == 2
    finally:
        await engine.dispose()


def test_engine_refuses_a_negative_time_limit() -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        create_engine("postgresql+asyncpg://localhost/roster", lock_timeout_seconds=-1)


async def test_session_scope_commits_on_success_and_rolls_back_on_error(
    db_connection: AsyncConnection, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _create_notes(db_connection)
    async with session_scope(db_sessionmaker) as session:
        await _insert(session, "kept")

    async def failing_unit_of_work() -> None:
        async with session_scope(db_sessionmaker) as session:
            await _insert(session, "dropped")
            raise RuntimeError("the route failed")

    with pytest.raises(RuntimeError):
        await failing_unit_of_work()
    assert await _count(db_connection) == 1


async def test_loaded_attributes_survive_commit(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert db_sessionmaker.kw["expire_on_commit"] is False


async def test_request_session_commits_before_the_response_and_rolls_back_failures(
    db_connection: AsyncConnection, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _create_notes(db_connection)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, object]]:
        yield {"sessionmaker": db_sessionmaker}

    app = FastAPI(lifespan=lifespan)

    @app.post("/notes")
    async def add_note(session: SessionDep, fail: bool = False) -> dict[str, str]:
        await _insert(session, "x")
        if fail:
            raise RuntimeError("boom")
        return {"status": "ok"}

    async with asgi_client(app) as client:
        assert (await client.post("/notes")).status_code == 200
        assert await _count(db_connection) == 1
        with pytest.raises(RuntimeError, match="boom"):
            await client.post("/notes", params={"fail": True})
    assert await _count(db_connection) == 1
