"""Signing in with an OpenID Connect provider through the whole application (its settings,
middleware, migrated database and logs), the provider a real one on loopback
(`oidc-provider-mock`): the first sign-in makes an account that works on every member's routes,
a forged callback is a 400 in the service's error shape, and no log line holds the code, the
state or a token."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from roster_api import migrations
from roster_api.app import build_auth_config, create_app
from roster_auth.testing import fast_password_helper
from roster_db.testing import CreateDatabase

from .conftest import make_settings, serve

with warnings.catch_warnings():
    # It imports parts of authlib that authlib deprecates, and authlib shows its deprecation
    # warnings always (a filter set when it is imported, which this one must follow).
    import authlib.deprecate  # type: ignore[import-untyped]

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    import oidc_provider_mock  # type: ignore[import-untyped]


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


async def test_a_provider_sign_in_through_the_whole_service(
    create_database: CreateDatabase,
    migrations_dir: Path,
    provider_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await create_database()
    await migrations.upgrade(url, migrations_dir)
    settings = make_settings(
        database_url=url,
        oidc_discovery_url=f"{provider_url}/.well-known/openid-configuration",
        oidc_client_id="roster-e2e",
        oidc_client_secret="roster-e2e-secret",
        oidc_name="company",
        # The test client speaks plain HTTP, and keeps no Secure cookie (the CSRF cookie).
        cookie_secure=False,
    )
    auth_config = dataclasses.replace(
        build_auth_config(settings), password_helper=fast_password_helper()
    )
    caplog.set_level(logging.DEBUG)
    async with (
        serve(create_app(settings, auth_config=auth_config)) as client,
        httpx.AsyncClient() as browser,
    ):
        claims = {"email": "kai@example.com", "email_verified": True}
        assert (await browser.put(f"{provider_url}/users/kai", json=claims)).status_code == 204
        started = await client.get("/auth/company/authorize")
        assert started.status_code == 200, started.text
        authorization_url = started.json()["authorization_url"]
        assert "redirect_uri=http%3A%2F%2Froster.test%2Fauth%2Fcompany%2Fcallback" in (
            authorization_url
        )
        redirect = await browser.post(authorization_url, data={"sub": "kai"})
        assert redirect.status_code == 302
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        callback = {key: values[0] for key, values in query.items()}

        forged = await client.get(
            "/auth/company/callback", params={"code": callback["code"], "state": "forged"}
        )
        assert forged.status_code == 400
        assert forged.json() == {"detail": "ACCESS_TOKEN_DECODE_ERROR"}

        signed_in = await client.get("/auth/company/callback", params=callback)
        assert signed_in.status_code == 200, signed_in.text
        tokens = signed_in.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}

        # The new account works on every member's routes.
        me = await client.get("/users/me", headers=headers)
        assert me.json()["email"] == "kai@example.com"
        assert me.json()["is_verified"] is True
        group = await client.post("/groups", json={"name": "Pilots"}, headers=headers)
        assert group.status_code == 201, group.text
        users = await client.get(f"/user-groups/{group.json()['id']}/users", headers=headers)
        assert [user["email"] for user in users.json()] == ["kai@example.com"]
        refreshed = await client.post(
            "/auth/jwt/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text

    # The service's own lines (the test's HTTP clients and the provider log theirs; the
    # service's HTTP client is quiet below WARNING in production: test_logging).
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore", "werkzeug", "oidc_provider_mock"))
    )
    # The capture sees the service's logs (the sign-in's own line among them)...
    assert f"user {me.json()['id']} logged in" in logged
    # ...and none of them holds what would let someone else sign in.
    for secret in (
        callback["code"],
        callback["state"],
        tokens["access_token"],
        tokens["refresh_token"],
        "roster-e2e-secret",
    ):
        assert secret not in logged


async def test_a_provider_that_is_down_leaves_readiness_and_passwords_alone(
    migrated_database_url: str,
) -> None:
    settings = make_settings(
        database_url=migrated_database_url,
        # Nothing listens on port 1 of the loopback.
        oidc_discovery_url="http://127.0.0.1:1/.well-known/openid-configuration",
        oidc_client_id="roster-e2e",
        oidc_client_secret="roster-e2e-secret",
    )
    async with serve(create_app(settings)) as client:
        down = await client.get("/auth/oidc/authorize")
        ready = await client.get("/health/ready")
        login = await client.post(
            "/auth/jwt/login", data={"username": "nobody@example.com", "password": "x" * 20}
        )
    assert (down.status_code, down.json()) == (503, {"detail": "OAUTH_PROVIDER_UNAVAILABLE"})
    assert ready.status_code == 200, ready.text
    # Answered by the password path as ever: an unknown account.
    assert (login.status_code, login.json()) == (400, {"detail": "LOGIN_BAD_CREDENTIALS"})
