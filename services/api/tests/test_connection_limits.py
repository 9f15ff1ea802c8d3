"""The service under a real uvicorn on 127.0.0.1, configured as `roster serve` configures it
(`roster_api.cli.connection_options`): past the concurrency limit the answer is 503 at once, a
request head past h11's limit is refused, and X-Forwarded-For is believed only from the proxies
that ROSTER_FORWARDED_ALLOW_IPS names. Every wait is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
import uvicorn
from fastapi import FastAPI, Request

from roster_api.app import create_app
from roster_api.cli import connection_options
from roster_auth.testing import config_for_tests

from .conftest import UNREACHABLE_DATABASE_URL, make_settings

WAIT_LIMIT_SECONDS: Final = 10.0


def app_and_options(**settings: Any) -> tuple[FastAPI, dict[str, Any]]:
    """The service (its live probe needs no database) and uvicorn's options for it."""
    configured = make_settings(database_url=UNREACHABLE_DATABASE_URL, **settings)
    return create_app(configured, auth_config=config_for_tests()), connection_options(configured)


@asynccontextmanager
async def running(app: FastAPI, options: dict[str, Any]) -> AsyncIterator[str]:
    """uvicorn serving `app` on a free loopback port, stopped (bounded) on exit; yields its
    base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, **options)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(WAIT_LIMIT_SECONDS):
            while not server.started:
                if serving.done():
                    serving.result()  # raises what stopped it
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=WAIT_LIMIT_SECONDS)


def client(base_url: str) -> httpx.AsyncClient:
    # One client, one connection: what a separate caller opens.
    return httpx.AsyncClient(base_url=base_url, timeout=WAIT_LIMIT_SECONDS, trust_env=False)


async def test_past_the_concurrency_limit_the_answer_is_503_at_once() -> None:
    app, options = app_and_options(limit_concurrency=3)
    arrived, release = asyncio.Semaphore(0), asyncio.Event()

    @app.get("/test-only/hold")
    async def hold() -> dict[str, str]:
        arrived.release()
        await release.wait()
        return {"held": "done"}

    async with running(app, options) as base_url:
        first, second, third = client(base_url), client(base_url), client(base_url)
        async with first, second, third:
            held = [asyncio.ensure_future(c.get("/test-only/hold")) for c in (first, second)]
            for _ in held:
                await asyncio.wait_for(arrived.acquire(), timeout=WAIT_LIMIT_SECONDS)
            # Two requests in flight on two connections: a third connection reaches the limit
            # of 3 (uvicorn counts the asking connection too).
            refused = await third.get("/health/live")
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(*held), timeout=WAIT_LIMIT_SECONDS)
        assert refused.status_code == 503
        assert [answer.status_code for answer in answers] == [200, 200]
        # Below the limit again, a new connection is served.
        async with client(base_url) as fourth:
            assert (await fourth.get("/health/live")).status_code == 200


async def test_a_request_head_growing_past_the_h11_limit_is_refused() -> None:
    """A client that keeps sending one header (a slow or endless request head) is answered 400
    and cut off once the unfinished head passes the limit, instead of being buffered."""
    app, options = app_and_options(h11_max_incomplete_event_size=4096)
    async with running(app, options) as base_url:
        async with client(base_url) as caller:
            fits = await caller.get("/health/live", headers={"X-Padding": "a" * 2000})
        port = httpx.URL(base_url).port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: roster.test\r\nX-Padding: ")
            writer.write(b"a" * 8000)  # and no end of the head
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=WAIT_LIMIT_SECONDS)
        finally:
            writer.close()
            await writer.wait_closed()
    assert fits.status_code == 200
    assert status_line.startswith(b"HTTP/1.1 400 ")


async def client_address_seen(forwarded_allow_ips: str | None) -> str:
    app, options = app_and_options(forwarded_allow_ips=forwarded_allow_ips)

    @app.get("/test-only/client")
    async def client_address(request: Request) -> str:
        assert request.client is not None
        return request.client.host

    async with running(app, options) as base_url, client(base_url) as caller:
        response = await caller.get("/test-only/client", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 200
    address: str = response.json()
    return address


async def test_forwarded_for_is_believed_only_from_configured_proxies() -> None:
    # uvicorn's own default would believe a client on 127.0.0.1.
    assert await client_address_seen(None) == "127.0.0.1"
    assert await client_address_seen("192.0.2.1") == "127.0.0.1"
    assert await client_address_seen("127.0.0.1") == "203.0.113.7"
