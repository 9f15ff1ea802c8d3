"""What the refresh-token and session tests share: a clock they move, logins that keep both
tokens, and the refresh request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient, Response

from roster_auth.testing import DEFAULT_PASSWORD, bearer


@dataclass
class Clock:
    """A clock the tests move by hand (`AuthConfig.clock`)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def reset(self) -> None:
        """Back to the real time."""
        self.now = datetime.now(UTC)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def login(
    client: AsyncClient,
    email: str,
    password: str = DEFAULT_PASSWORD,
    user_agent: str = "pytest-client/1.0",
) -> Tokens:
    response = await client.post(
        "/auth/jwt/login",
        data={"username": email, "password": password},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"])


async def refresh(client: AsyncClient, refresh_token: str) -> Response:
    return await client.post("/auth/jwt/refresh", json={"refresh_token": refresh_token})


async def refreshed(client: AsyncClient, refresh_token: str) -> Tokens:
    response = await refresh(client, refresh_token)
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(body["access_token"], body["refresh_token"])


async def cookie_login(client: AsyncClient, email: str, user_agent: str = "browser/2.0") -> str:
    response = await client.post(
        "/auth/cookie/login",
        data={"username": email, "password": DEFAULT_PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 204, response.text
    token = response.cookies["roster_auth"]
    client.cookies.clear()
    return token


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"roster_auth={token}"}


UNAUTHORIZED = {"detail": "Unauthorized"}
