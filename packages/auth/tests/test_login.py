"""Logging in on both backends, and what a protected route accepts and refuses."""

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AccessToken, AuthConfig, User, token_digest
from roster_auth.testing import ACCESS_TOKEN_SECRET, DEFAULT_PASSWORD, bearer

Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]


async def stored_tokens(sessionmaker: Sessionmaker, user: User) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AccessToken.__table__.c.token).where(AccessToken.__table__.c.user_id == user.id)
        )
        return list(rows)


async def test_jwt_login_gives_a_bearer_token_with_a_finite_lifetime(
    client: AsyncClient, make_user: MakeUser, auth_config: AuthConfig
) -> None:
    user = await make_user(email="hana@example.org")
    response = await client.post(
        "/auth/jwt/login", data={"username": "hana@example.org", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == str(user.id)
    lifetime = claims["exp"] - time.time()
    assert auth_config.access_token_lifetime_seconds - 60 < lifetime
    assert lifetime <= auth_config.access_token_lifetime_seconds

    me = await client.get("/users/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["id"] == str(user.id)
    # Routes of other members take the same dependency.
    probe = await client.get("/probe/me", headers=bearer(token))
    assert probe.json() == str(user.id)


async def test_cookie_login_stores_a_token_and_sets_a_safe_cookie(
    client: AsyncClient, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="ivan@example.org")
    response = await client.post(
        "/auth/cookie/login", data={"username": "IVAN@example.org", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 204, response.text
    set_cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"secure", "httponly", "samesite", "max-age"} <= attributes
    assert "samesite=lax" in set_cookie.lower()
    token = response.cookies["roster_auth"]
    # Stored as its digest only.
    assert await stored_tokens(db_sessionmaker, user) == [token_digest(token)]

    me = await client.get("/users/me")  # the client sends the cookie back
    assert me.status_code == 200
    assert me.json()["email"] == "ivan@example.org"
    assert (await client.get("/probe/me")).json() == str(user.id)


@pytest.mark.parametrize("backend", ["jwt", "cookie"])
async def test_unknown_email_and_wrong_password_look_the_same(
    client: AsyncClient, make_user: MakeUser, backend: str
) -> None:
    await make_user(email="judy@example.org")
    await make_user(email="sleeper@example.org", is_active=False)
    attempts = [
        ("nobody@example.org", DEFAULT_PASSWORD),
        ("judy@example.org", "not-the-right-password"),
        # An inactive user with the right password learns nothing either.
        ("sleeper@example.org", DEFAULT_PASSWORD),
    ]
    answers = []
    for email, password in attempts:
        response = await client.post(
            f"/auth/{backend}/login", data={"username": email, "password": password}
        )
        answers.append((response.status_code, response.json(), "set-cookie" in response.headers))
    assert answers == [(400, {"detail": "LOGIN_BAD_CREDENTIALS"}, False)] * 3


async def test_protected_routes_without_credentials_are_401(client: AsyncClient) -> None:
    for path in ("/users/me", "/probe/me", "/probe/admin", "/users"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Unauthorized"}


def forge(claims: dict[str, Any], secret: str = ACCESS_TOKEN_SECRET, **options: Any) -> str:
    return jwt.encode(claims, secret, algorithm=options.get("algorithm", "HS256"))


async def test_forged_expired_and_foreign_jwts_are_401(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="kim@example.org")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    valid = {"sub": str(user.id), "aud": ["fastapi-users:auth"], "exp": soon}
    # The control: our own secret and claims are accepted.
    assert (await client.get("/users/me", headers=bearer(forge(valid)))).status_code == 200

    refused = {
        "wrong secret": forge(valid, secret="another-secret-of-the-same-length-000000"),
        "expired": forge({**valid, "exp": datetime.now(UTC) - timedelta(seconds=5)}),
        "wrong audience": forge({**valid, "aud": ["fastapi-users:verify"]}),
        "no audience": forge({"sub": valid["sub"], "exp": soon}),
        "no expiry": forge({"sub": valid["sub"], "aud": valid["aud"]}),
        "unknown user": forge({**valid, "sub": "00000000-0000-0000-0000-000000000000"}),
        "not a uuid": forge({**valid, "sub": "kim"}),
        "unsigned": jwt.encode(valid, "", algorithm="none"),
        "garbage": "not.a.jwt",
    }
    for case, token in refused.items():
        response = await client.get("/users/me", headers=bearer(token))
        assert response.status_code == 401, case


async def test_inactive_users_lose_their_sessions_on_both_backends(
    client: AsyncClient,
    make_user: MakeUser,
    jwt_login: Login,
    cookie_login: Login,
    db_sessionmaker: Sessionmaker,
) -> None:
    admin = await make_user(email="root@example.org", is_superuser=True)
    user = await make_user(email="leo@example.org")
    user_jwt = await jwt_login("leo@example.org")
    user_cookie = await cookie_login("leo@example.org")
    client.cookies.clear()
    admin_jwt = await jwt_login(admin.email)

    deactivated = await client.patch(
        f"/users/{user.id}", json={"is_active": False}, headers=bearer(admin_jwt)
    )
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["is_active"] is False

    assert (await client.get("/users/me", headers=bearer(user_jwt))).status_code == 401
    client.cookies.set("roster_auth", user_cookie)
    assert (await client.get("/users/me")).status_code == 401
    client.cookies.clear()
    assert await stored_tokens(db_sessionmaker, user) == []
    login = await client.post(
        "/auth/jwt/login", data={"username": "leo@example.org", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 400
    assert login.json() == {"detail": "LOGIN_BAD_CREDENTIALS"}
