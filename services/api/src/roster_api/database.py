"""Which database the `roster` command talks to: ROSTER_DATABASE_URL when set, otherwise the
embedded Postgres (development only) whose data lives in the project's `.roster/` folder and is
kept between runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import make_url

from roster_api.settings import Settings, variable_name
from roster_db import one_off_engine
from roster_db.embedded import start_embedded_postgres

logger = logging.getLogger(__name__)

# The embedded server's database for roster (its `postgres` database stays for maintenance).
EMBEDDED_DATABASE_NAME: Final = "roster"


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server unless it exists; return its URL."""
    async with one_off_engine(server_url) as engine, engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        exists = await autocommit.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if not exists:
            await autocommit.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def display_url(database_url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(database_url).render_as_string(hide_password=True)


@contextmanager
def database_url_for(settings: Settings) -> Iterator[str]:
    """The database URL to use; starts (or joins) the embedded Postgres when none is set and
    stops it on exit unless another process still uses it. Call from synchronous code."""
    configured = settings.database_url_value()
    if configured is not None:
        yield configured
        return
    if settings.is_production:  # pragma: no cover - Settings refuses this combination
        raise RuntimeError(f"{variable_name('database_url')} is required in production")
    data_dir = settings.resolved_data_dir()
    logger.info("starting the embedded Postgres", extra={"data_dir": str(data_dir)})
    embedded = start_embedded_postgres(data_dir)
    try:
        yield asyncio.run(ensure_database(embedded.url, EMBEDDED_DATABASE_NAME))
    finally:
        embedded.stop()


__all__ = ["EMBEDDED_DATABASE_NAME", "database_url_for", "display_url", "ensure_database"]
