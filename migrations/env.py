"""Alembic's environment for every member: the target is roster-db's one metadata, after
`roster_api.models` imported every member's models.

Where the connection comes from, in order:
1. `config.attributes["connection"]`: handed in by `roster migrate` and the tests;
2. ROSTER_DATABASE_URL, through the service's settings (the `alembic` command line);
3. otherwise the embedded Postgres in the project's .roster/ folder, as `roster serve` uses.
The options (compare_type, server defaults, plain type rendering) live in
`roster_api.migrations.context_options`, shared with the tests that check models and
migrations agree.
"""

import asyncio
import logging.config

from alembic import context
from sqlalchemy.engine import Connection

from roster_api.database import database_url_for
from roster_api.migrations import context_options, run_migrations_on
from roster_api.settings import load_settings
from roster_db import one_off_engine

config = context.config
if config.config_file_name is not None and not config.attributes.get("connection"):
    # Only the `alembic` command line has an ini file whose logging applies.
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


async def run_async_migrations(database_url: str) -> None:
    async with one_off_engine(database_url) as engine, engine.begin() as connection:
        await connection.run_sync(run_migrations_on)


def run_offline() -> None:
    """`alembic upgrade --sql`: write the SQL instead of running it."""
    context.configure(
        url="postgresql+asyncpg://",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return
    with database_url_for(load_settings()) as database_url:
        asyncio.run(run_async_migrations(database_url))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
