"""The throttle's and the hashing queue's settings reach roster-auth, and the service answers
their refusals in its one error shape."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import build_auth_config, create_app
from roster_auth import ThrottleConfig
from roster_auth.testing import DEFAULT_PASSWORD

from .conftest import make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]


def test_every_throttle_setting_reaches_the_auth_config() -> None:
    settings = make_settings(
        max_concurrent_password_hashes=3,
        max_waiting_password_hashes=0,
        throttle_enabled=False,
        throttle_login_window_seconds=61,
        throttle_login_failures_per_account_and_address=2,
        throttle_login_failures_per_address=3,
        throttle_login_failures_per_account=4,
        throttle_registration_window_seconds=62,
        throttle_registrations_per_address=5,
        throttle_registrations_per_email=6,
        throttle_mail_window_seconds=63,
        throttle_mail_requests_per_address=7,
        throttle_mail_requests_per_email=8,
    )
    config = build_auth_config(settings)
    assert (config.max_concurrent_password_hashes, config.max_waiting_password_hashes) == (3, 0)
    throttle = asdict(config.throttle)
    for name, value in throttle.items():
        if name in {"clock", "purge_interval_seconds"}:
            continue
        assert getattr(settings, f"throttle_{name}") == value, name


def test_defaults_match_the_library_defaults() -> None:
    config = build_auth_config(make_settings())
    assert asdict(config.throttle) == asdict(ThrottleConfig())
    assert (config.max_concurrent_password_hashes, config.max_waiting_password_hashes) == (1, 4)


async def test_too_many_failed_logins_are_429_in_the_service_error_shape(
    db_sessionmaker: Sessionmaker,
) -> None:
    # The auth configuration built from the settings, as in production (Argon2id at full cost).
    app = create_app(
        make_settings(throttle_login_failures_per_address=2), sessionmaker=db_sessionmaker
    )
    async with serve(app) as client:
        for number in range(2):
            response = await client.post(
                "/auth/jwt/login",
                data={"username": f"nobody{number}@example.com", "password": DEFAULT_PASSWORD},
            )
            assert response.status_code == 400
        refused = await client.post(
            "/auth/cookie/login",
            data={"username": "nobody9@example.com", "password": DEFAULT_PASSWORD},
        )
    assert refused.status_code == 429
    assert refused.json() == {"detail": "TOO_MANY_REQUESTS"}
    assert 0 < int(refused.headers["retry-after"]) <= 900


def test_openapi_names_both_503s_of_a_route_that_hashes(db_sessionmaker: Sessionmaker) -> None:
    schema = create_app(make_settings(), sessionmaker=db_sessionmaker).openapi()
    for path, method in [
        ("/auth/jwt/login", "post"),
        ("/auth/register", "post"),
        ("/auth/reset-password", "post"),
        ("/users/me", "patch"),
    ]:
        responses = schema["paths"][path][method]["responses"]
        description = responses["503"]["description"]
        assert "PASSWORD_HASHING_BUSY" in description, path
        assert "DATABASE_UNAVAILABLE" in description, path
        assert "Retry-After" in responses["503"]["headers"], path
    login = schema["paths"]["/auth/jwt/login"]["post"]["responses"]
    assert "TOO_MANY_REQUESTS" in login["429"]["description"]
