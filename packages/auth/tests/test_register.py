"""Registration: what is stored, what is ignored, what is refused, and switching it off."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import MailKind, OutboxMailer, RosterAuth, User
from roster_auth.testing import DEFAULT_PASSWORD, bearer, config_for_tests

Sessionmaker = async_sessionmaker[AsyncSession]


async def count_users(sessionmaker: Sessionmaker, email: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(func.lower(User.__table__.c.email) == email.lower())
        )
        return count or 0


async def test_register_creates_an_unverified_account_and_mails_a_verification_link(
    client: AsyncClient, outbox: OutboxMailer
) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": "dana@example.org", "password": DEFAULT_PASSWORD, "display_name": "Dana"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "dana@example.org"
    assert body["display_name"] == "Dana"
    assert (body["is_active"], body["is_superuser"], body["is_verified"]) == (True, False, False)
    assert body["created_at"]
    assert "password" not in body
    assert "hashed_password" not in body
    [mail] = outbox.sent_to("dana@example.org", MailKind.VERIFY)
    assert mail.link.startswith("https://roster.test/verify?token=")


async def test_privileged_fields_in_the_body_are_ignored(
    client: AsyncClient, db_sessionmaker: Sessionmaker
) -> None:
    forged_id = "00000000-0000-0000-0000-000000000001"
    response = await client.post(
        "/auth/register",
        json={
            "email": "mallory@example.org",
            "password": DEFAULT_PASSWORD,
            "id": forged_id,
            "is_superuser": True,
            "is_active": False,
            "is_verified": True,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] != forged_id
    assert (body["is_active"], body["is_superuser"], body["is_verified"]) == (True, False, False)
    async with db_sessionmaker() as session:
        stored = await session.get_one(User, body["id"])
        assert (stored.is_active, stored.is_superuser, stored.is_verified) == (True, False, False)


async def test_an_email_is_taken_whatever_its_letter_case(
    client: AsyncClient, db_sessionmaker: Sessionmaker
) -> None:
    first = await client.post(
        "/auth/register", json={"email": "Erin@Example.org", "password": DEFAULT_PASSWORD}
    )
    assert first.status_code == 201, first.text
    for variant in ("Erin@Example.org", "erin@example.org", "ERIN@EXAMPLE.ORG"):
        again = await client.post(
            "/auth/register", json={"email": variant, "password": DEFAULT_PASSWORD}
        )
        assert again.status_code == 400
        assert again.json() == {"detail": "REGISTER_USER_ALREADY_EXISTS"}
    assert await count_users(db_sessionmaker, "erin@example.org") == 1


async def test_a_weak_password_is_refused_with_a_reason_and_nothing_is_stored(
    client: AsyncClient, db_sessionmaker: Sessionmaker, outbox: OutboxMailer
) -> None:
    cases = {
        "short-one": "at least 15 characters",
        "frank@example.org and more": "must not contain your email address",
        "passwordpassword1": "too easy to guess",
    }
    for password, reason in cases.items():
        response = await client.post(
            "/auth/register", json={"email": "frank@example.org", "password": password}
        )
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail["code"] == "REGISTER_INVALID_PASSWORD"
        assert reason in detail["reason"]
    assert await count_users(db_sessionmaker, "frank@example.org") == 0
    assert outbox.messages == []


async def test_malformed_bodies_are_422_with_the_field_named(client: AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not-an-email", "password": DEFAULT_PASSWORD}, "email"),
        ({"email": "gail@example.org"}, "password"),
        (
            {"email": "gail@example.org", "password": DEFAULT_PASSWORD, "display_name": "x" * 101},
            "display_name",
        ),
    ]
    for body, field in cases:
        response = await client.post("/auth/register", json=body)
        assert response.status_code == 422
        assert any(field in error["loc"] for error in response.json()["detail"])


async def test_without_registration_only_superusers_create_users(
    serve_with: Callable[..., Any], make_user: Callable[..., Any], outbox: OutboxMailer
) -> None:
    admin = await make_user(email="admin@example.org", is_superuser=True)
    member = await make_user(email="member@example.org")
    config = config_for_tests(mailer=outbox, registration_enabled=False)
    bare = FastAPI()
    for router in RosterAuth(config).routers():
        bare.include_router(router)
    paths = bare.openapi()["paths"]
    assert "/auth/register" not in paths
    assert "post" in paths["/users"]
    async with serve_with(config) as client:
        closed = await client.post(
            "/auth/register", json={"email": "new@example.org", "password": DEFAULT_PASSWORD}
        )
        assert closed.status_code == 404

        new_user = {"email": "new@example.org", "password": DEFAULT_PASSWORD}
        anonymous = await client.post("/users", json=new_user)
        assert anonymous.status_code == 401
        login = await client.post(
            "/auth/jwt/login", data={"username": member.email, "password": DEFAULT_PASSWORD}
        )
        refused = await client.post(
            "/users", json=new_user, headers=bearer(login.json()["access_token"])
        )
        assert refused.status_code == 403

        login = await client.post(
            "/auth/jwt/login", data={"username": admin.email, "password": DEFAULT_PASSWORD}
        )
        created = await client.post(
            "/users",
            json={**new_user, "is_verified": True, "display_name": "New"},
            headers=bearer(login.json()["access_token"]),
        )
        assert created.status_code == 201, created.text
        assert created.json()["is_verified"] is True
        # A verified account needs no verification mail.
        assert outbox.sent_to("new@example.org") == []
