"""A user's own change of password or email (`PATCH /users/me`) needs the current password;
a new address must be verified, and the old one is told. Superusers change anyone without."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient, Response

from roster_auth import MailKind, OutboxMailer, RosterAuth, User
from roster_auth.mail import token_of
from roster_auth.testing import DEFAULT_PASSWORD, bearer, bearer_headers

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"
OTHER_PASSWORD = "juniper-quarry-mandolin-31"
BAD_CURRENT_PASSWORD = "UPDATE_USER_BAD_CURRENT_PASSWORD"


async def login_status(client: AsyncClient, email: str, password: str) -> int:
    response = await client.post("/auth/jwt/login", data={"username": email, "password": password})
    return response.status_code


def refusal_code(response: Response) -> str:
    assert response.status_code == 400, response.text
    code: str = response.json()["detail"]["code"]
    return code


async def test_a_stolen_token_cannot_take_the_account_over(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login, outbox: OutboxMailer
) -> None:
    await make_user(email="vic@example.org", display_name="Vic")
    stolen = bearer(await jwt_login("vic@example.org"))
    # Vic suspects a theft and resets the password; the bearer JWT lives on until it expires.
    await client.post("/auth/forgot-password", json={"email": "vic@example.org"})
    token = outbox.last_token("vic@example.org", MailKind.RESET_PASSWORD)
    reset = await client.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert (await client.get("/users/me", headers=stolen)).status_code == 200
    outbox.clear()

    # The thief moves the account to their own address, or sets a password they know,
    # even with the password they may have stolen along with the token.
    attempts: list[dict[str, Any]] = [
        {"email": "mallory@evil.example"},
        {"email": "mallory@evil.example", "current_password": DEFAULT_PASSWORD},
        {"password": OTHER_PASSWORD},
        {"password": OTHER_PASSWORD, "current_password": DEFAULT_PASSWORD},
    ]
    for attempt in attempts:
        response = await client.patch("/users/me", headers=stolen, json=attempt)
        assert refusal_code(response) == BAD_CURRENT_PASSWORD, attempt

    # So a reset asked for at the thief's address goes nowhere, and the account stays Vic's.
    forgot = await client.post("/auth/forgot-password", json={"email": "mallory@evil.example"})
    assert forgot.status_code == 202
    assert outbox.messages == []
    me = (await client.get("/users/me", headers=stolen)).json()
    assert (me["email"], me["is_verified"]) == ("vic@example.org", True)
    assert await login_status(client, "vic@example.org", NEW_PASSWORD) == 200
    assert await login_status(client, "vic@example.org", OTHER_PASSWORD) == 400


@pytest.mark.parametrize(
    "change",
    [
        {"password": NEW_PASSWORD},
        {"email": "walt@new.example"},
        {"email": "WALT@example.org", "password": NEW_PASSWORD},
    ],
    ids=["password", "email", "letter case and password"],
)
@pytest.mark.parametrize(
    ("proof", "reason"),
    [
        ({}, "Give current_password"),
        ({"current_password": None}, "Give current_password"),
        ({"current_password": ""}, "Give current_password"),
        ({"current_password": OTHER_PASSWORD}, "The current password is wrong."),
    ],
    ids=["missing", "null", "empty", "wrong"],
)
async def test_a_missing_or_wrong_current_password_changes_nothing(
    client: AsyncClient,
    make_user: MakeUser,
    auth: RosterAuth,
    outbox: OutboxMailer,
    change: dict[str, str],
    proof: dict[str, str | None],
    reason: str,
) -> None:
    walt = await make_user(email="walt@example.org", display_name="Walt")
    headers = await bearer_headers(auth, walt)
    response = await client.patch(
        "/users/me", headers=headers, json={**change, **proof, "display_name": "Changed"}
    )
    assert refusal_code(response) == BAD_CURRENT_PASSWORD
    assert response.json()["detail"]["reason"].startswith(reason)
    me = (await client.get("/users/me", headers=headers)).json()
    assert (me["email"], me["display_name"], me["is_verified"]) == (
        "walt@example.org",
        "Walt",
        True,
    )
    assert await login_status(client, "walt@example.org", DEFAULT_PASSWORD) == 200
    assert outbox.messages == []


async def test_the_current_password_lets_the_password_change(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, outbox: OutboxMailer
) -> None:
    # Stored sessions end with the change: test_revocation.py shows it for cookies.
    xia = await make_user(email="xia@example.org")
    response = await client.patch(
        "/users/me",
        headers=await bearer_headers(auth, xia),
        json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert await login_status(client, "xia@example.org", DEFAULT_PASSWORD) == 400
    assert await login_status(client, "xia@example.org", NEW_PASSWORD) == 200
    assert outbox.messages == []


async def test_a_new_email_is_unverified_and_both_addresses_are_told(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, outbox: OutboxMailer
) -> None:
    yves = await make_user(email="yves@example.org", is_verified=False)
    headers = await bearer_headers(auth, yves)
    # A verification link mailed to the old address before the change...
    await client.post("/auth/request-verify-token", json={"email": "yves@example.org"})
    old_link_token = outbox.last_token("yves@example.org", MailKind.VERIFY)
    outbox.clear()

    changed = await client.patch(
        "/users/me",
        headers=headers,
        json={"email": "Yves@New.example", "current_password": DEFAULT_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    # email-validator lower-cases the domain.
    assert (changed.json()["email"], changed.json()["is_verified"]) == ("Yves@new.example", False)

    verify, notice = outbox.messages
    assert (verify.to, verify.kind) == ("Yves@new.example", MailKind.VERIFY)
    assert (notice.to, notice.kind) == ("yves@example.org", MailKind.EMAIL_CHANGED)
    # The notice carries no token, and does not tell the old mailbox where mail goes now.
    assert notice.link == ""
    with pytest.raises(ValueError, match="no token"):
        token_of(notice)
    assert "new.example" not in notice.body.lower()
    assert "changed" in notice.subject

    # ...no longer verifies anything: its token names the old address.
    stale = await client.post("/auth/verify", json={"token": old_link_token})
    assert stale.status_code == 400
    verified = await client.post("/auth/verify", json={"token": token_of(verify)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True
    assert await login_status(client, "yves@new.example", DEFAULT_PASSWORD) == 200
    assert await login_status(client, "yves@example.org", DEFAULT_PASSWORD) == 400


@pytest.mark.parametrize(
    "update",
    [
        {"display_name": "Zed"},
        {"display_name": None},
        # The user's own address, as stored or in other letter case: the same mailbox.
        {"email": "zed@example.org", "display_name": "Zed"},
        {"email": "ZED@Example.org"},
        {"password": None, "email": None},
    ],
    ids=["display name", "clear display name", "same email", "letter case", "nulls"],
)
async def test_changes_that_are_not_credentials_need_no_password_and_send_nothing(
    client: AsyncClient,
    make_user: MakeUser,
    auth: RosterAuth,
    outbox: OutboxMailer,
    update: dict[str, str | None],
) -> None:
    zed = await make_user(email="zed@example.org", display_name="Z")
    response = await client.patch("/users/me", headers=await bearer_headers(auth, zed), json=update)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"].casefold() == "zed@example.org"
    assert body["is_verified"] is True
    assert outbox.messages == []


async def test_superusers_change_other_accounts_without_a_current_password(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, outbox: OutboxMailer
) -> None:
    root = await make_user(email="root@example.org", is_superuser=True)
    ana = await make_user(email="ana@example.org")
    as_root = await bearer_headers(auth, root)
    changed = await client.patch(
        f"/users/{ana.id}",
        headers=as_root,
        json={"email": "ana@new.example", "password": NEW_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["email"], changed.json()["is_verified"]) == ("ana@new.example", False)
    assert await login_status(client, "ana@new.example", NEW_PASSWORD) == 200
    # Whoever changes the address, the new one is verified and the old one told.
    assert [(message.to, message.kind) for message in outbox.messages] == [
        ("ana@new.example", MailKind.VERIFY),
        ("ana@example.org", MailKind.EMAIL_CHANGED),
    ]
    outbox.clear()

    # A superuser may also vouch for the new address: then no verification mail.
    vouched = await client.patch(
        f"/users/{ana.id}",
        headers=as_root,
        json={"email": "ana@third.example", "is_verified": True},
    )
    assert vouched.json()["is_verified"] is True
    assert [(message.to, message.kind) for message in outbox.messages] == [
        ("ana@new.example", MailKind.EMAIL_CHANGED)
    ]

    # Their own account, through /users/me, is a user's own change like any other.
    own = await client.patch("/users/me", headers=as_root, json={"password": OTHER_PASSWORD})
    assert refusal_code(own) == BAD_CURRENT_PASSWORD


async def test_the_schema_documents_the_current_password_and_its_refusal(
    client: AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]

    def body_schema(operation: dict[str, Any]) -> dict[str, Any]:
        reference: str = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        found: dict[str, Any] = components[reference.rsplit("/", 1)[-1]]
        return found

    patch_me = schema["paths"]["/users/me"]["patch"]
    # FastAPI Users' route name (hence operation id) and answers, kept.
    assert patch_me["operationId"] == "users_patch_current_user_users_me_patch"
    assert {"200", "400", "401", "422", "429", "503"} <= set(patch_me["responses"])
    examples = patch_me["responses"]["400"]["content"]["application/json"]["examples"]
    assert set(examples) == {
        BAD_CURRENT_PASSWORD,
        "UPDATE_USER_EMAIL_ALREADY_EXISTS",
        "UPDATE_USER_INVALID_PASSWORD",
    }
    me_body = body_schema(patch_me)["properties"]
    assert BAD_CURRENT_PASSWORD in me_body["current_password"]["description"]
    assert {"string", "null"} == {part["type"] for part in me_body["current_password"]["anyOf"]}

    # A superuser's change of someone else takes no current password.
    patch_user = schema["paths"]["/users/{id}"]["patch"]
    assert patch_user["operationId"] == "users_patch_user_users__id__patch"
    assert "current_password" not in body_schema(patch_user)["properties"]
