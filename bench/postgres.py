"""The benchmark's database: a fresh one, on the embedded Postgres (default) or on the server
that `ROSTER_DATABASE_URL` names, migrated by `roster migrate upgrade head` and dropped at the
end. The data already on a given server is never touched."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from roster_db.embedded import asyncpg_url, start_embedded_postgres

DATABASE_URL_VARIABLE = "ROSTER_DATABASE_URL"


@dataclass(frozen=True)
class BenchDatabase:
    url: str  # postgresql+asyncpg://..., for roster
    source: str  # where the server came from, for the report

    @property
    def dsn(self) -> str:
        """The same database spelled for asyncpg itself."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def server_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def create_database(server_url: str) -> str:
    name = f"roster_bench_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(_plain(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, url: str) -> None:
    connection = await asyncpg.connect(_plain(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[tuple[str, str]]:
    """(server URL, description): the given server, or an embedded one for the block."""
    if url:
        yield asyncpg_url(url), f"the server of {DATABASE_URL_VARIABLE}"
        return
    with tempfile.TemporaryDirectory(prefix="roster-bench-pg-") as directory:
        embedded = start_embedded_postgres(Path(directory) / "data", temporary=True)
        try:
            yield embedded.url, "embedded-postgres (unpinned, default settings)"
        finally:
            embedded.stop()


def migrate(environment: Mapping[str, str]) -> None:
    """`roster migrate upgrade head` with the service's settings, as a deployment runs it."""
    roster = Path(sys.executable).with_name("roster")
    command = [str(roster), "migrate", "upgrade", "head"]
    completed = subprocess.run(
        command,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({completed.returncode}):\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-4000:]}"
        )
