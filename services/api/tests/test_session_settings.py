"""The refresh-token settings reach roster-auth, and the service answers the token flow in its
one error shape."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import build_auth_config, create_app
from roster_auth import AuthConfig
from roster_auth.testing import DEFAULT_PASSWORD, config_for_tests, create_user

from .conftest import make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]


def test_the_refresh_token_settings_reach_the_auth_config() -> None:
    config = build_auth_config(
        make_settings(refresh_token_lifetime_seconds=3600, refresh_token_idle_seconds=600)
    )
    assert (config.refresh_token_lifetime_seconds, config.refresh_token_idle_seconds) == (3600, 600)
    defaults = build_auth_config(make_settings())
    library = AuthConfig(access_token_secret="a", reset_password_secret="b", verify_secret="c")
    assert (defaults.refresh_token_lifetime_seconds, defaults.refresh_token_idle_seconds) == (
        library.refresh_token_lifetime_seconds,
        library.refresh_token_idle_seconds,
    )
    assert defaults.refresh_token_lifetime_seconds == 30 * 24 * 3600


async def test_login_refresh_and_reuse_through_the_service(db_sessionmaker: Sessionmaker) -> None:
    async with db_sessionmaker() as session:
        user = await create_user(session, email="flow@example.com")
    app = create_app(make_settings(), sessionmaker=db_sessionmaker, auth_config=config_for_tests())
    async with serve(app) as client:
        login = await client.post(
            "/auth/jwt/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 200, login.text
        first = login.json()["refresh_token"]
        refreshed = await client.post("/auth/jwt/refresh", json={"refresh_token": first})
        assert refreshed.status_code == 200
        assert refreshed.headers["cache-control"] == "no-store"
        sessions = await client.get(
            "/users/me/sessions",
            headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
        )
        assert [s["current"] for s in sessions.json()] == [True]
        reused = await client.post("/auth/jwt/refresh", json={"refresh_token": first})
        assert (reused.status_code, reused.json()) == (401, {"detail": "Unauthorized"})
        bad = await client.post("/auth/jwt/refresh", content=b"refresh_token=x")
        assert bad.status_code == 422
        schema = (await client.get("/openapi.json")).json()
    refresh = schema["paths"]["/auth/jwt/refresh"]["post"]
    assert {"200", "401", "422"} <= set(refresh["responses"])
    assert "/users/{user_id}/sessions/{session_id}" in schema["paths"]
