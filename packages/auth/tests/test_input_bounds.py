"""The login form and the reset's new password are bounded before anything is normalised,
hashed or sent to Postgres, and the published schema says so."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from roster_auth import RosterAuth
from roster_auth.testing import DEFAULT_PASSWORD

from .conftest import build_app

MakeUser = Callable[..., Awaitable[Any]]
# 4 x the policy's 128: the most a password field accepts as typed.
RAW_PASSWORD_MAX = 512


@pytest.mark.parametrize("backend", ["jwt", "cookie"])
@pytest.mark.parametrize(
    "username",
    ["\x00", "a\x00b@example.org", "tab\t@example.org", "c1\x85@example.org", "x" * 321],
    ids=["NUL", "NUL inside", "tab", "C1 control", "longer than an email"],
)
async def test_a_username_with_control_characters_or_too_long_is_422(
    client: AsyncClient, backend: str, username: str
) -> None:
    response = await client.post(
        f"/auth/{backend}/login", data={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "username"]


@pytest.mark.parametrize("backend", ["jwt", "cookie"])
async def test_the_login_password_is_bounded_as_typed(
    client: AsyncClient, make_user: MakeUser, backend: str
) -> None:
    await make_user(email="yara@example.org")
    form = {"username": "yara@example.org"}
    too_long = await client.post(
        f"/auth/{backend}/login", data={**form, "password": "p" * (RAW_PASSWORD_MAX + 1)}
    )
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["detail"][0]["loc"] == ["body", "password"]
    longest = await client.post(
        f"/auth/{backend}/login", data={**form, "password": "p" * RAW_PASSWORD_MAX}
    )
    assert (longest.status_code, longest.json()) == (400, {"detail": "LOGIN_BAD_CREDENTIALS"})


async def test_the_reset_password_is_bounded_as_typed(client: AsyncClient) -> None:
    response = await client.post(
        "/auth/reset-password",
        json={"token": "not-a-token", "password": "p" * (RAW_PASSWORD_MAX + 1)},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "password"]
    # Within the bound, the token is what is wrong.
    response = await client.post(
        "/auth/reset-password", json={"token": "not-a-token", "password": DEFAULT_PASSWORD}
    )
    assert (response.status_code, response.json()) == (400, {"detail": "RESET_PASSWORD_BAD_TOKEN"})


def test_the_schema_publishes_the_bounds(auth: RosterAuth, db_sessionmaker: Any) -> None:
    components = build_app(auth, db_sessionmaker).openapi()["components"]["schemas"]
    for backend in ("jwt", "cookie"):
        form = components[f"Body_auth_{backend}_login_auth_{backend}_login_post"]["properties"]
        assert form["username"]["maxLength"] == 320
        assert form["username"]["pattern"] == r"^[^\x00-\x1f\x7f-\x9f]*$"
        assert form["password"]["maxLength"] == RAW_PASSWORD_MAX
    reset = components["Body_reset_reset_password_auth_reset_password_post"]["properties"]
    assert reset["password"]["maxLength"] == RAW_PASSWORD_MAX


def test_route_names_are_fastapi_users_own(auth: RosterAuth, db_sessionmaker: Any) -> None:
    app = build_app(auth, db_sessionmaker)
    operations = {
        (path, method): operation.get("summary")
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    }
    # Summaries come from route names: clients that go by them see the library's.
    assert operations[("/auth/jwt/login", "post")] == "Auth:Jwt.Login"
    assert operations[("/auth/cookie/logout", "post")] == "Auth:Cookie.Logout"
    assert operations[("/auth/register", "post")] == "Register:Register"
    assert operations[("/auth/forgot-password", "post")] == "Reset:Forgot Password"
    assert operations[("/auth/request-verify-token", "post")] == "Verify:Request-Token"
    assert operations[("/auth/verify", "post")] == "Verify:Verify"
