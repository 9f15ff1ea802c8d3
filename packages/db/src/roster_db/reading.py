"""Reads outside any transaction: one statement, one round trip.

A read that is a single statement needs no transaction of its own: Postgres runs every
statement on a snapshot of its own, so BEGIN and COMMIT around it add two round trips and
SQLAlchemy's session and transaction bookkeeping, and change nothing of what it returns. A
`Reader` runs Core statements (built once, at import, from the models' tables) on a pooled
connection in AUTOCOMMIT mode, held for that statement only: a request that reads first and
then writes in its session never holds two pooled connections at once.

What needs several statements to agree (a check and the write it allows) belongs in a session.

Postgres plans a statement on every execution by default, for its parameters' values: for the
listings' statements, which check the caller, count and page in one, planning costs three
times what running them does (0.25 ms against 0.08 ms for a page of 10 members). A statement
marked `with_generic_plan` runs on connections that plan each statement once and keep that
plan (`create_engine(..., generic_plans=True)`), when the reader has them.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Executable, Row
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

_GENERIC_PLAN_OPTION: Final = "roster_generic_plan"

ExecutableT = TypeVar("ExecutableT", bound=Executable)


def with_generic_plan(statement: ExecutableT) -> ExecutableT:
    """`statement`, to be run under a plan made once without its parameters' values. Only for
    a statement whose plan does not depend on them: the same indexes and the same nested
    loops for every value (tests check the plan both ways). A generic plan is made for an
    average value, so a join whose size depends on a parameter is fenced off (a LATERAL
    with a LIMIT) to keep it a nested loop."""
    return statement.execution_options(**{_GENERIC_PLAN_OPTION: True})


class Reader(Protocol):
    async def all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        """Every row the statement returns."""
        ...


class EngineReader:
    """Each statement on its own pooled connection, in AUTOCOMMIT mode (no BEGIN, no COMMIT:
    one round trip), from an engine created with `create_engine(..., autocommit=True)`. The
    pool's reset on return sends nothing either, as no transaction began.

    Statements marked `with_generic_plan` go to `generic_plan_engine` when there is one (an
    engine created with `autocommit` and `generic_plans` too), the others to `engine`."""

    def __init__(self, engine: AsyncEngine, generic_plan_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.generic_plan_engine = generic_plan_engine or engine

    async def all(
        self, statement: Executable, parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        engine = (
            self.generic_plan_engine
            if statement.get_execution_options().get(_GENERIC_PLAN_OPTION)
            else self.engine
        )
        async with engine.connect() as connection:
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


__all__ = ["EngineReader", "Reader", "SessionReader", "with_generic_plan"]
