"""Reads outside any transaction: one statement, one round trip.

A read that is a single statement needs no transaction of its own: Postgres runs every
statement on a snapshot of its own, so BEGIN and COMMIT around it add two round trips and
SQLAlchemy's session and transaction bookkeeping, and change nothing of what it returns. A
`Reader` runs Core statements (built once, at import, from the models' tables) on a pooled
connection in AUTOCOMMIT mode, held for that statement only: a request that reads first and
then writes in its session never holds two pooled connections at once.

What needs several statements to agree (a check and the write it allows) belongs in a session.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Executable, Row
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession


class Reader(Protocol):
    async def all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        """Every row the statement returns."""
        ...


class EngineReader:
    """Each statement on its own pooled connection, in AUTOCOMMIT mode (no BEGIN, no COMMIT:
    one round trip), from an engine created with `create_engine(..., autocommit=True)`. The
    pool's reset on return sends nothing either, as no transaction began."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            return result.all()


class SessionReader:
    """Each statement in a session of its own, for a session maker whose connections cannot
    be lent in AUTOCOMMIT mode (tests bind theirs to one connection in a rolled-back
    transaction): the same rows, in a transaction (or a savepoint) of its own."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        async with self.sessionmaker() as session:
            result = await session.execute(statement, parameters)
            rows = result.all()
            await session.commit()
            return rows


__all__ = ["EngineReader", "Reader", "SessionReader"]
