"""Database errors are classified from real violations and real connection failures."""

import asyncio
import socket
import uuid

import pytest
from sqlalchemy import CheckConstraint, Column, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from roster_db import create_engine, errors
from roster_db.base import NAMING_CONVENTION
from roster_db.testing import CreateDatabase

_metadata = MetaData(naming_convention=NAMING_CONVENTION)
parent = Table("err_parent", _metadata, Column("id", Integer, primary_key=True))
child = Table(
    "err_child",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(20), unique=True),
    Column("size", Integer, CheckConstraint("size > 0", name="positive_size")),
    Column("parent_id", Integer, ForeignKey("err_parent.id")),
)


async def _violation(connection: AsyncConnection, statement: str) -> IntegrityError:
    await connection.run_sync(_metadata.create_all)
    await connection.execute(text("INSERT INTO err_parent (id) VALUES (1)"))
    await connection.execute(text("INSERT INTO err_child (id, code, size) VALUES (1, 'a', 1)"))
    savepoint = await connection.begin_nested()
    with pytest.raises(IntegrityError) as caught:
        await connection.execute(text(statement))
    await savepoint.rollback()
    return caught.value


async def test_unique_violation_is_recognised(db_connection: AsyncConnection) -> None:
    error = await _violation(db_connection, "INSERT INTO err_child (id, code) VALUES (2, 'a')")
    assert errors.sqlstate_of(error) == "23505"
    assert errors.is_unique_violation(error)
    assert not errors.is_foreign_key_violation(error)
    assert not errors.is_database_unavailable(error)
    assert errors.constraint_name_of(error) == "uq_err_child_code"


async def test_foreign_key_violation_is_recognised(db_connection: AsyncConnection) -> None:
    error = await _violation(db_connection, "INSERT INTO err_child (id, parent_id) VALUES (2, 99)")
    assert errors.is_foreign_key_violation(error)
    assert not errors.is_unique_violation(error)
    assert errors.constraint_name_of(error) == "fk_err_child_parent_id_err_parent"


async def test_check_violation_is_recognised(db_connection: AsyncConnection) -> None:
    error = await _violation(db_connection, "INSERT INTO err_child (id, size) VALUES (2, 0)")
    assert errors.is_check_violation(error)
    assert not errors.is_unique_violation(error)
    assert errors.constraint_name_of(error) == "ck_err_child_positive_size"


async def test_a_plain_sql_error_is_neither_conflict_nor_unavailability(
    db_connection: AsyncConnection,
) -> None:
    savepoint = await db_connection.begin_nested()
    with pytest.raises(DBAPIError) as caught:
        await db_connection.execute(text("SELECT * FROM no_such_table"))
    await savepoint.rollback()
    assert errors.sqlstate_of(caught.value) == "42P01"
    assert not errors.is_database_unavailable(caught.value)
    assert not errors.is_unique_violation(caught.value)
    assert not errors.is_time_limit_exceeded(caught.value)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "host",
    [
        pytest.param(f"127.0.0.1:{_closed_port()}", id="connection-refused"),
        pytest.param(f"no-such-host-{uuid.uuid4().hex[:8]}.invalid", id="dns-failure"),
    ],
)
async def test_an_unreachable_server_is_unavailable(host: str) -> None:
    engine = create_engine(f"postgresql+asyncpg://roster:secret@{host}/roster", connect_timeout=2)
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the point is to classify it
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert errors.is_database_unavailable(caught.value)


async def test_an_exhausted_pool_is_unavailable(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        async with engine.connect():
            with pytest.raises(Exception) as caught:  # noqa: PT011
                async with engine.connect():
                    pass
    finally:
        await engine.dispose()
    assert errors.is_database_unavailable(caught.value)


def test_timeouts_and_os_errors_are_unavailable() -> None:
    assert errors.is_database_unavailable(TimeoutError())
    assert errors.is_database_unavailable(ConnectionRefusedError())
    assert errors.is_database_unavailable(socket.gaierror())
    assert not errors.is_database_unavailable(ValueError("not a database problem"))


async def test_a_deadlock_is_retryable_not_unavailable(create_database: CreateDatabase) -> None:
    engine = create_engine(await create_database())
    try:
        async with engine.begin() as setup:
            await setup.execute(text("CREATE TABLE account (id int PRIMARY KEY, balance int)"))
            await setup.execute(text("INSERT INTO account VALUES (1, 0), (2, 0)"))
        first_locked, second_locked = asyncio.Event(), asyncio.Event()

        async def transfer(
            first: int, second: int, mine: asyncio.Event, theirs: asyncio.Event
        ) -> None:
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE account SET balance = balance + 1 WHERE id = :id"), {"id": first}
                )
                mine.set()
                await theirs.wait()
                await connection.execute(
                    text("UPDATE account SET balance = balance - 1 WHERE id = :id"), {"id": second}
                )

        outcomes = await asyncio.gather(
            transfer(1, 2, first_locked, second_locked),
            transfer(2, 1, second_locked, first_locked),
            return_exceptions=True,
        )
    finally:
        await engine.dispose()
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == 1  # Postgres aborts one side and lets the other commit
    assert errors.sqlstate_of(failures[0]) == "40P01"
    assert errors.is_retryable(failures[0])
    assert not errors.is_database_unavailable(failures[0])
    assert not errors.is_retryable(ValueError())


async def test_engine_errors_do_not_quote_statement_parameters(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect() as connection:
                await connection.execute(
                    text("SELECT CAST(:secret AS text), 1 / 0"), {"secret": "hash-of-a-password"}
                )
    finally:
        await engine.dispose()
    assert "division by zero" in str(caught.value)
    assert "hash-of-a-password" not in str(caught.value)


async def test_a_statement_past_statement_timeout_is_a_time_limit(database_url: str) -> None:
    engine = create_engine(database_url, statement_timeout_seconds=0.1)
    try:
        with pytest.raises(DBAPIError) as caught:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT pg_sleep(5)"))
    finally:
        await engine.dispose()
    assert errors.sqlstate_of(caught.value) == "57014"
    assert errors.is_time_limit_exceeded(caught.value)
    assert not errors.is_database_unavailable(caught.value)
    assert not errors.is_retryable(caught.value)


async def test_a_lock_waited_for_past_lock_timeout_is_a_time_limit(database_url: str) -> None:
    holder_engine = create_engine(database_url, pool_size=1, max_overflow=0)
    engine = create_engine(database_url, pool_size=1, max_overflow=0, lock_timeout_seconds=0.1)
    key = {"key": uuid.uuid4().int >> 65}  # a lock no other test takes
    try:
        async with holder_engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:key)"), key)
            with pytest.raises(DBAPIError) as caught:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), key)
    finally:
        await engine.dispose()
        await holder_engine.dispose()
    assert errors.sqlstate_of(caught.value) == "55P03"
    assert errors.is_time_limit_exceeded(caught.value)
    assert not errors.is_database_unavailable(caught.value)


def test_time_limit_codes_are_recognised_whoever_wraps_them() -> None:
    class ReportedError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    for code in ("57014", "55P03", "25P03"):
        wrapped = DBAPIError("SELECT 1", None, ReportedError(code))
        assert errors.is_time_limit_exceeded(wrapped), code
    assert not errors.is_time_limit_exceeded(DBAPIError("SELECT 1", None, ReportedError("40P01")))
