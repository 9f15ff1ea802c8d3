"""Helpers for tests, imported like any module (`from roster_db.testkit import asgi_client`).

They live outside the pytest plugin `roster_db.testing` on purpose: a conftest that imported
the plugin module itself would load it before pytest does, and pytest could then no longer
rewrite the plugin's assertions. The plugin builds its fixtures on these.

- `asgi_client(app)`: an HTTP client for an application with its lifespan running;
- `PostgresServer`, `create_throwaway_database`, `drop_database`: databases of their own on the
  session's server (the `postgres_server` fixture), for tests that need more than one.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.engine import make_url


class Provider(enum.StrEnum):
    """Where the test session's Postgres comes from."""

    URL = "url"
    DOCKER = "docker"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class PostgresServer:
    """A running server: `url` reaches its maintenance database with the asyncpg driver."""

    provider: Provider
    url: str

    def url_for(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)


async def _run_on_maintenance_database(server: PostgresServer, statement: str) -> None:
    # asyncpg speaks libpq's URL syntax, Unix socket `?host=` included.
    plain = make_url(server.url).set(drivername="postgresql")
    connection = await asyncpg.connect(plain.render_as_string(hide_password=False))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_throwaway_database(server: PostgresServer) -> str:
    """Create an empty database with a unique name; return its URL."""
    name = f"roster_test_{uuid.uuid4().hex[:12]}"
    await _run_on_maintenance_database(server, f'CREATE DATABASE "{name}"')
    return server.url_for(name)


async def drop_database(server: PostgresServer, url: str) -> None:
    name = make_url(url).database
    await _run_on_maintenance_database(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def asgi_client(
    app: FastAPI, *, base_url: str = "https://roster.test"
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (so its lifespan state reaches the requests), spoken
    to over HTTP through ASGI, no socket. HTTPS by default, so Secure cookies come back."""
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=base_url
        ) as client,
    ):
        yield client


__all__ = [
    "PostgresServer",
    "Provider",
    "asgi_client",
    "create_throwaway_database",
    "drop_database",
]
