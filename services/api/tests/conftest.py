"""Fixtures for roster-api's tests: the session's Postgres from roster-db's plugin, a database
migrated once per session, and apps built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio
from fastapi import FastAPI
from httpx import AsyncClient

import roster_api.models  # noqa: F401  (every member's tables, before the plugin creates them)
from roster_api import migrations
from roster_api.settings import Settings
from roster_db.testkit import PostgresServer, asgi_client, create_throwaway_database, drop_database

pytest_plugins = ["roster_db.testing"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[3] / "migrations"
BASE_URL: Final = "http://roster.test"
# Nothing listens on port 1 of the loopback: connecting is refused at once.
UNREACHABLE_DATABASE_URL: Final = "postgresql+asyncpg://roster:unused@127.0.0.1:1/roster"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests, independent of the developer's environment and .env file."""
    values: dict[str, Any] = {
        "environment": "development",
        "migrations_dir": MIGRATIONS_DIR,
        "log_format": "console",
        # Refusals are answered at once, except in the guard's own tests.
        "refusal_pause_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def migrations_dir() -> Path:
    return MIGRATIONS_DIR


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def migrated_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A database upgraded to head by the migrations (not by create_all), for the session."""
    url = await create_throwaway_database(postgres_server)
    await migrations.upgrade(url, MIGRATIONS_DIR)
    yield url
    await drop_database(postgres_server, url)


def serve(app: FastAPI) -> AbstractAsyncContextManager[AsyncClient]:
    """The app with its lifespan running, over real HTTP semantics through ASGI."""
    return asgi_client(app, base_url=BASE_URL)
