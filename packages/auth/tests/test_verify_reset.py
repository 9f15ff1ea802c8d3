"""Email verification and password reset, with the tokens taken from the mails."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import jwt
from httpx import AsyncClient

from roster_auth import MailKind, OutboxMailer, User
from roster_auth.testing import DEFAULT_PASSWORD, RESET_PASSWORD_SECRET, bearer

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"


async def register(client: AsyncClient, email: str) -> str:
    response = await client.post(
        "/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def test_verify_with_the_token_from_the_mail(
    client: AsyncClient, outbox: OutboxMailer, jwt_login: Login
) -> None:
    await register(client, "tess@example.org")
    token = outbox.last_token("tess@example.org", MailKind.VERIFY)

    verified = await client.post("/auth/verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True
    me = await client.get("/users/me", headers=bearer(await jwt_login("tess@example.org")))
    assert me.json()["is_verified"] is True

    again = await client.post("/auth/verify", json={"token": token})
    assert again.status_code == 400
    assert again.json() == {"detail": "VERIFY_USER_ALREADY_VERIFIED"}


async def test_bad_verification_tokens_are_400(client: AsyncClient, outbox: OutboxMailer) -> None:
    await register(client, "uma@example.org")
    await client.post("/auth/forgot-password", json={"email": "uma@example.org"})
    reset_token = outbox.last_token("uma@example.org", MailKind.RESET_PASSWORD)
    for token in ("garbage", reset_token):
        response = await client.post("/auth/verify", json={"token": token})
        assert response.status_code == 400
        assert response.json() == {"detail": "VERIFY_USER_BAD_TOKEN"}


async def test_request_verify_token_answers_the_same_for_everyone(
    client: AsyncClient, outbox: OutboxMailer, make_user: MakeUser
) -> None:
    await make_user(email="vera@example.org", is_verified=False)
    await make_user(email="done@example.org", is_verified=True)
    for email in ("vera@example.org", "done@example.org", "nobody@example.org"):
        response = await client.post("/auth/request-verify-token", json={"email": email})
        assert response.status_code == 202
        assert response.json() is None
    assert [message.to for message in outbox.messages] == ["vera@example.org"]
    token = outbox.last_token("vera@example.org", MailKind.VERIFY)
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 200


async def test_reset_password_with_the_token_from_the_mail(
    client: AsyncClient, outbox: OutboxMailer, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="wes@example.org")
    forgot = await client.post("/auth/forgot-password", json={"email": "WES@example.org"})
    assert forgot.status_code == 202
    [mail] = outbox.sent_to("wes@example.org", MailKind.RESET_PASSWORD)
    assert mail.link.startswith("https://roster.test/reset-password?token=")
    token = outbox.last_token("wes@example.org", MailKind.RESET_PASSWORD)

    weak = await client.post("/auth/reset-password", json={"token": token, "password": "short"})
    assert weak.status_code == 400
    assert weak.json()["detail"]["code"] == "RESET_PASSWORD_INVALID_PASSWORD"
    assert "at least 15" in weak.json()["detail"]["reason"]
    # Refused: the old password still works.
    assert await jwt_login("wes@example.org", DEFAULT_PASSWORD)

    reset = await client.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    old = await client.post(
        "/auth/jwt/login", data={"username": "wes@example.org", "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 400
    assert await jwt_login("wes@example.org", NEW_PASSWORD)

    # The token was bound to the old password: it cannot be used twice.
    reused = await client.post(
        "/auth/reset-password", json={"token": token, "password": "another-" + NEW_PASSWORD}
    )
    assert reused.status_code == 400
    assert reused.json() == {"detail": "RESET_PASSWORD_BAD_TOKEN"}


async def test_forgot_password_answers_the_same_for_everyone(
    client: AsyncClient, outbox: OutboxMailer, make_user: MakeUser
) -> None:
    await make_user(email="xena@example.org")
    await make_user(email="gone@example.org", is_active=False)
    answers = []
    for email in ("xena@example.org", "gone@example.org", "nobody@example.org"):
        response = await client.post("/auth/forgot-password", json={"email": email})
        answers.append((response.status_code, response.json()))
    assert answers == [(202, None)] * 3
    assert [message.to for message in outbox.messages] == ["xena@example.org"]


async def test_expired_or_forged_reset_tokens_are_400(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="yuri@example.org")
    claims = {
        "sub": str(user.id),
        "password_fgpt": "irrelevant",
        "aud": "fastapi-users:reset",
    }
    expired = jwt.encode(
        {**claims, "exp": datetime.now(UTC) - timedelta(seconds=1)}, RESET_PASSWORD_SECRET
    )
    forged = jwt.encode(
        {**claims, "exp": datetime.now(UTC) + timedelta(hours=1)},
        "someone-elses-secret-that-is-long-enough",
    )
    for token in (expired, forged, "garbage"):
        response = await client.post(
            "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
        )
        assert response.status_code == 400
        assert response.json() == {"detail": "RESET_PASSWORD_BAD_TOKEN"}
