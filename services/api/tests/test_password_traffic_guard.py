"""Under a flood of password traffic, refusals are cheap for the worker and slow for the
client: a full hashing queue is answered before routing, and every refusal of the password
routes waits `refusal_pause_seconds` (asleep) before it is sent. Other routes are untouched."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import build_auth_config, create_app
from roster_api.settings import Settings
from roster_auth import AuthConfig
from roster_auth.testing import DEFAULT_PASSWORD

from .conftest import make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]
# Long enough that a request held back for it stands out from one that was not, even on a
# loaded machine.
PAUSE = 0.5


def test_the_guard_settings_reach_the_auth_config() -> None:
    config = build_auth_config(
        make_settings(password_hashing_niceness=5, refusal_pause_seconds=0.25)
    )
    assert (config.password_hashing_niceness, config.refusal_pause_seconds) == (5, 0.25)
    fields = Settings.model_fields
    defaults = AuthConfig.__dataclass_fields__
    for name in ("password_hashing_niceness", "refusal_pause_seconds"):
        assert fields[name].default == defaults[name].default, name


async def test_a_full_hashing_queue_refuses_logins_before_reading_them(
    db_sessionmaker: Sessionmaker,
) -> None:
    app = create_app(
        make_settings(
            max_concurrent_password_hashes=1,
            max_waiting_password_hashes=0,
            refusal_pause_seconds=PAUSE,
        ),
        sessionmaker=db_sessionmaker,
    )
    async with serve(app) as client:
        queue = app.state.auth.hashing_queue
        async with queue.reserve():  # the one place, held as a login being hashed would
            assert queue.is_full
            for path in ("/auth/jwt/login", "/auth/cookie/login", "/auth/register"):
                started = time.perf_counter()
                # No form at all: the route would answer 422; the guard answers first.
                busy = await client.post(path)
                elapsed = time.perf_counter() - started
                assert busy.status_code == 503, (path, busy.text)
                assert busy.json() == {"detail": "PASSWORD_HASHING_BUSY"}
                assert busy.headers["retry-after"] == "1"
                assert elapsed >= PAUSE, (path, elapsed)
            # Routes that do not hash are neither refused nor held back.
            for method, path, expected in [
                ("POST", "/auth/forgot-password", 422),
                ("GET", "/users/me", 401),
            ]:
                started = time.perf_counter()
                answer = await client.request(method, path)
                assert time.perf_counter() - started < PAUSE, path
                assert answer.status_code == expected, path
        assert not queue.is_full
        accepted = await client.post(
            "/auth/jwt/login", data={"username": "nobody@example.com", "password": "x"}
        )
        assert accepted.status_code == 400, accepted.text


async def test_a_throttled_login_is_refused_after_the_pause(
    db_sessionmaker: Sessionmaker,
) -> None:
    app = create_app(
        make_settings(throttle_login_failures_per_address=1, refusal_pause_seconds=PAUSE),
        sessionmaker=db_sessionmaker,
    )
    form = {"username": "nobody@example.com", "password": DEFAULT_PASSWORD}
    async with serve(app) as client:
        failed = await client.post("/auth/jwt/login", data=form)
        assert failed.status_code == 400
        started = time.perf_counter()
        refused = await client.post("/auth/jwt/login", data=form)
        elapsed = time.perf_counter() - started
    assert refused.status_code == 429
    assert refused.json() == {"detail": "TOO_MANY_REQUESTS"}
    assert elapsed >= PAUSE, elapsed
