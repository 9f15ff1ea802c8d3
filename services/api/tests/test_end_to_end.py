"""The real `roster serve` in a subprocess, on a free loopback port, against a migrated database
on the test Postgres, driven over real HTTP: health, register, log in, create a group, add a
member, list the group's users with the token; then the database goes away (a TCP proxy
between the service and Postgres is cut) and comes back, and the service recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from roster_api import migrations
from roster_db.testing import CreateDatabase
from roster_db.testkit import PostgresServer

from .conftest import MIGRATIONS_DIR

STARTUP_TIMEOUT_SECONDS: Final = 30.0
RECOVERY_TIMEOUT_SECONDS: Final = 15.0
SHUTDOWN_TIMEOUT_SECONDS: Final = 15.0
PASSWORD: Final = "violet-harbour-tandem-42"

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class CuttableProxy:
    """Forwards loopback TCP connections to Postgres; `cut()` drops every connection and stops
    listening (the database "goes away"), `restore()` listens again on the same port."""

    def __init__(self, connect_upstream: Connect) -> None:
        self.connect_upstream = connect_upstream
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await self.connect_upstream()
        except OSError:
            writer.close()
            return
        self.writers |= {writer, upstream_writer}
        for source, target in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, target))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        target.close()

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server = None

    async def restore(self) -> None:
        await self.start()


def upstream_of(server_url: str) -> Connect:
    """How to reach the test Postgres: its Unix socket (embedded) or host and port."""
    url = make_url(server_url)
    socket_dir = url.query.get("host")
    port = url.port or 5432
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        path = f"{socket_dir}/.s.PGSQL.{port}"
        return lambda: asyncio.open_unix_connection(path)
    host = url.host or "127.0.0.1"
    return lambda: asyncio.open_connection(host, port)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(postgres_server: PostgresServer) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(upstream_of(postgres_server.url))
    await proxy.start()
    yield proxy
    if proxy.server is not None:
        await proxy.cut()


class RunningService:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest_asyncio.fixture(loop_scope="session")
async def service(
    create_database: CreateDatabase, proxy: CuttableProxy, tmp_path: Path
) -> AsyncIterator[RunningService]:
    database_url = await create_database()
    await migrations.upgrade(database_url, MIGRATIONS_DIR)
    through_proxy = (
        make_url(database_url)
        .set(host="127.0.0.1", port=proxy.port, query={})
        .render_as_string(hide_password=False)
    )
    port = free_port()
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("ROSTER_")},
        "ROSTER_ENVIRONMENT": "production",
        "ROSTER_DATABASE_URL": through_proxy,
        "ROSTER_ACCESS_TOKEN_SECRET": "e2e-access-Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga",
        "ROSTER_RESET_PASSWORD_SECRET": "e2e-reset-Yp2u6Wa0Kv8Qj1Sm4Gi7Le3Oc5Rb9Fz",
        "ROSTER_VERIFY_SECRET": "e2e-verify-Xo1t5Vz9Ju7Pi0Rl3Fh6Kd2Nb4Qa8Ey",
        "ROSTER_MIGRATIONS_DIR": str(MIGRATIONS_DIR),
        # Fail fast while the database is away, so the test stays short.
        "ROSTER_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
        "ROSTER_DATABASE_POOL_TIMEOUT_SECONDS": "2",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as errors, (tmp_path / "serve.out").open("wb") as output:
        # Popen returns at once; the waits below are bounded and off the event loop.
        process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own interpreter and module
            [
                *(sys.executable, "-m", "roster_api.cli", "serve"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            env=environment,
            cwd=tmp_path,
            stdout=output,
            stderr=errors,
        )
    running = RunningService(process, f"http://127.0.0.1:{port}", log)
    try:
        await wait_until_live(running)
        yield running
    finally:
        await stop(process)


async def wait_until_live(service: RunningService) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=service.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                pytest.fail(f"roster serve exited early:\n{service.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health/live")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    pytest.fail(f"roster serve did not start in {STARTUP_TIMEOUT_SECONDS}s:\n{service.log_tail()}")


async def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user would; killed only if it does not stop in time. Waits without
    blocking the event loop, which also runs the proxy the service's connections go through."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


async def wait_until_ready(client: httpx.AsyncClient) -> httpx.Response:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    response = await client.get("/health/ready")
    while response.status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        response = await client.get("/health/ready")
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_served_api_end_to_end_and_through_a_database_outage(
    service: RunningService, proxy: CuttableProxy
) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        assert (live.status_code, ready.status_code) == (200, 200), service.log_tail()
        assert ready.json()["revision"] == migrations.head_revision(MIGRATIONS_DIR)

        registered = {}
        for email in ("alice@example.com", "bob@example.com"):
            response = await client.post(
                "/auth/register", json={"email": email, "password": PASSWORD}
            )
            assert response.status_code == 201, response.text
            registered[email] = response.json()["id"]

        login = await client.post(
            "/auth/jwt/login", data={"username": "alice@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]

        created = await client.post("/groups", json={"name": "Engineering"}, headers=bearer(token))
        assert created.status_code == 201, created.text
        group_id = created.json()["id"]

        added = await client.post(
            f"/groups/{group_id}/members",
            json={"user_id": registered["bob@example.com"]},
            headers=bearer(token),
        )
        assert added.status_code == 201, added.text

        users_path = f"/user-groups/{group_id}/users"
        assert (await client.get(users_path)).status_code == 401
        listed = await client.get(users_path, headers=bearer(token))
        assert listed.status_code == 200, listed.text
        members = [user["email"] for user in listed.json()]
        assert members == ["alice@example.com", "bob@example.com"]

        await proxy.cut()
        during = await client.get(users_path, headers=bearer(token))
        assert during.status_code == 503, during.text
        assert during.json() == {"detail": "DATABASE_UNAVAILABLE"}
        assert int(during.headers["Retry-After"]) > 0
        not_ready = await client.get("/health/ready")
        assert not_ready.status_code == 503
        assert (await client.get("/health/live")).status_code == 200

        await proxy.restore()
        recovered = await wait_until_ready(client)
        assert recovered.status_code == 200, service.log_tail()
        after = await client.get(users_path, headers=bearer(token))
        assert after.status_code == 200, after.text
        assert [user["email"] for user in after.json()] == members

    await stop(service.process)
    assert service.process.returncode == 0, service.log_tail()
    # Production logs: one JSON object a line, none holding the token or the password.
    lines = service.log.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert {"request", "Application startup complete."} <= {event["event"] for event in events}
    assert any(event.get("event") == "database unavailable" for event in events)
    assert not [line for line in lines if token in line or PASSWORD in line]
