"""Engine and session factories. Nothing connects at import time: the application builds
these in its lifespan and disposes of them on shutdown."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

AUTOCOMMIT: Final = "AUTOCOMMIT"
READ_COMMITTED: Final = "READ COMMITTED"


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    pool_pre_ping: bool = True,
    pool_recycle_seconds: float = -1,
    connect_timeout: float = 10.0,
    echo: bool = False,
    hide_parameters: bool = True,
    statement_timeout_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
    idle_in_transaction_session_timeout_seconds: float | None = None,
    autocommit: bool = False,
    generic_plans: bool = False,
) -> AsyncEngine:
    """An async engine for a `postgresql+asyncpg://` URL.

    The three timeouts become the Postgres settings of the same names on every connection the
    engine opens: a statement running longer is cancelled (SQLSTATE 57014), a lock waited for
    longer is given up (55P03), a transaction left idle longer ends its session. None keeps the
    server's value; 0 means no limit, as in Postgres.

    With `autocommit`, the engine lends its connections in AUTOCOMMIT mode (no BEGIN, no
    COMMIT: each statement its own transaction), as an `EngineReader` wants them; sessions get
    transactions from `transactional(engine)`. The application's engine is one: reads are
    most of its traffic, and a pooled connection switched to another isolation level on every
    checkout (`execution_options`) costs SQLAlchemy 26 to 60 µs each time.

    With `generic_plans`, Postgres plans each prepared statement once per connection, without
    its parameters' values, and runs that plan every time (`plan_cache_mode =
    force_generic_plan`); by default it plans each execution afresh for its values until a
    generic plan seems as cheap. Only for statements written to plan well either way (see
    `roster_db.reading.with_generic_plan`)."""
    if make_url(url).drivername != "postgresql+asyncpg":
        raise ValueError("roster needs a postgresql+asyncpg:// database URL")
    timeouts = {
        "statement_timeout": statement_timeout_seconds,
        "lock_timeout": lock_timeout_seconds,
        "idle_in_transaction_session_timeout": idle_in_transaction_session_timeout_seconds,
    }
    # Sent in the startup packet: no extra round trip per connection, and no pooled connection
    # can miss them.
    server_settings = {
        name: _milliseconds(name, seconds)
        for name, seconds in timeouts.items()
        if seconds is not None
    }
    if generic_plans:
        server_settings["plan_cache_mode"] = "force_generic_plan"
    connect_args: dict[str, object] = {"timeout": connect_timeout}
    if server_settings:
        connect_args["server_settings"] = server_settings
    return _create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pool_pre_ping,
        pool_recycle=pool_recycle_seconds,
        echo=echo,
        # Statement parameters (password hashes, tokens) stay out of error messages and logs.
        hide_parameters=hide_parameters,
        # asyncpg's own connect timeout (`timeout`), so an unreachable server fails fast
        # instead of hanging.
        connect_args=connect_args,
        **({"isolation_level": AUTOCOMMIT} if autocommit else {}),
    )


def transactional(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, lending its connections for transactions at READ COMMITTED (Postgres' default
    level, the one roster's writes are written for), for the sessions of an engine created
    with `autocommit`. Each connection is switched on checkout and back on return."""
    return engine.execution_options(isolation_level=READ_COMMITTED)


def _milliseconds(name: str, seconds: float) -> str:
    if seconds < 0:
        raise ValueError(f"{name} cannot be negative")
    # Rounded up: a positive limit below one millisecond must not become 0, "no limit".
    return str(math.ceil(seconds * 1000))


def create_sessionmaker(
    bind: AsyncEngine | AsyncConnection,
) -> async_sessionmaker[AsyncSession]:
    """SQLModel sessions that keep loaded attributes after commit (no lazy reload under async).

    Bound to a connection that is already in a transaction (as in tests), sessions work in
    savepoints, so code that commits still leaves the outer transaction to decide.
    """
    return async_sessionmaker(
        bind,
        class_=AsyncSession,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@asynccontextmanager
async def one_off_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine with one connection, for the few statements of a command or a script, disposed
    of when the block ends (an engine left behind keeps its connection open)."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block succeeds, roll back on any error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
