"""`/users/me` for everyone, `/users` and `/users/{id}` for superusers."""

from collections.abc import Awaitable, Callable

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AccessToken, MailKind, OutboxMailer, RosterAuth, User
from roster_auth.testing import DEFAULT_PASSWORD, bearer, bearer_headers

Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]


async def test_me_can_edit_its_profile_but_not_its_privileges(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="abby@example.org", is_verified=False)
    headers = bearer(await jwt_login("abby@example.org"))
    response = await client.patch(
        "/users/me",
        headers=headers,
        json={
            "display_name": "Abby",
            "is_superuser": True,
            "is_active": False,
            "is_verified": True,
            "id": "00000000-0000-0000-0000-000000000001",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["display_name"] == "Abby"
    assert (body["is_superuser"], body["is_active"], body["is_verified"]) == (False, True, False)
    assert (await client.get("/users/me", headers=headers)).json() == body
    assert (await client.get("/probe/admin", headers=headers)).status_code == 403


async def test_me_cannot_take_an_email_in_use_in_any_letter_case(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="Bea@example.org")
    await make_user(email="cleo@example.org")
    headers = bearer(await jwt_login("cleo@example.org"))
    response = await client.patch(
        "/users/me",
        headers=headers,
        json={"email": "bea@EXAMPLE.org", "current_password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "UPDATE_USER_EMAIL_ALREADY_EXISTS"}
    assert (await client.get("/users/me", headers=headers)).json()["email"] == "cleo@example.org"


async def test_me_may_change_the_letter_case_of_its_own_email(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="dora@example.org", is_verified=True)
    headers = bearer(await jwt_login("dora@example.org"))
    response = await client.patch("/users/me", headers=headers, json={"email": "Dora@example.org"})
    assert response.status_code == 200, response.text
    # The same mailbox: still verified.
    assert (response.json()["email"], response.json()["is_verified"]) == ("Dora@example.org", True)


async def test_a_refused_update_changes_nothing(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="edda@example.org", display_name="Edda")
    headers = bearer(await jwt_login("edda@example.org"))
    response = await client.patch(
        "/users/me",
        headers=headers,
        json={
            "email": "EDDA@example.org",
            "display_name": "Changed",
            "password": "too-short",
            "current_password": DEFAULT_PASSWORD,
        },
    )
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "UPDATE_USER_INVALID_PASSWORD"
    me = (await client.get("/users/me", headers=headers)).json()
    assert (me["email"], me["display_name"]) == ("edda@example.org", "Edda")
    assert await jwt_login("edda@example.org", DEFAULT_PASSWORD)


async def test_a_new_email_must_be_verified_again(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="fay@example.org", is_verified=True)
    headers = bearer(await jwt_login("fay@example.org"))
    response = await client.patch(
        "/users/me",
        headers=headers,
        json={"email": "fay@new.org", "current_password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 200
    assert response.json()["is_verified"] is False


async def test_user_routes_by_id_are_for_superusers_only(
    client: AsyncClient,
    make_user: MakeUser,
    jwt_login: Login,
    cookie_login: Login,
    db_sessionmaker: Sessionmaker,
) -> None:
    await make_user(email="admin@example.org", is_superuser=True)
    target = await make_user(email="gus@example.org")
    await make_user(email="hal@example.org")
    member = bearer(await jwt_login("hal@example.org"))
    for method in ("GET", "PATCH", "DELETE"):
        anonymous = await client.request(method, f"/users/{target.id}", json={})
        assert anonymous.status_code == 401, method
        refused = await client.request(method, f"/users/{target.id}", json={}, headers=member)
        assert refused.status_code == 403, method

    await cookie_login("gus@example.org")  # a stored token, to see it go with the user
    client.cookies.clear()
    admin = bearer(await jwt_login("admin@example.org"))
    read = await client.get(f"/users/{target.id}", headers=admin)
    assert read.status_code == 200
    assert read.json()["email"] == "gus@example.org"
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert (await client.get(f"/users/{missing}", headers=admin)).status_code == 404

    promoted = await client.patch(
        f"/users/{target.id}",
        headers=admin,
        json={"is_superuser": True, "is_verified": True, "display_name": "Gus"},
    )
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["is_superuser"], promoted.json()["is_verified"]) == (True, True)

    deleted = await client.delete(f"/users/{target.id}", headers=admin)
    assert deleted.status_code == 204
    assert (await client.get(f"/users/{target.id}", headers=admin)).status_code == 404
    async with db_sessionmaker() as session:
        owner = AccessToken.__table__.c.user_id
        left = await session.scalars(select(AccessToken).where(owner == target.id))
        assert list(left) == []


async def test_listing_users_is_paginated_filtered_and_stable(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    await make_user(email="admin@example.org", is_superuser=True)
    for name in ("ivy", "jan", "kai", "lou", "max"):
        await make_user(email=f"{name.title()}@team.example.org")
    await make_user(email="under_score@example.org")
    await make_user(email="underXscore@example.org")
    admin = bearer(await jwt_login("admin@example.org"))

    async with db_sessionmaker() as session:
        columns = User.__table__.c
        expected = list(
            await session.scalars(select(columns.email).order_by(columns.created_at, columns.id))
        )
    everyone = await client.get("/users", headers=admin)
    assert everyone.status_code == 200
    assert everyone.json()["total"] == 8
    assert [user["email"] for user in everyone.json()["items"]] == expected
    assert (everyone.json()["limit"], everyone.json()["offset"]) == (50, 0)

    team = [email for email in expected if "team.example" in email.lower()]
    pages = [
        (
            await client.get(
                "/users", headers=admin, params={"email": "TEAM.example", "limit": 2, "offset": at}
            )
        ).json()
        for at in (0, 2, 4)
    ]
    assert [page["total"] for page in pages] == [5, 5, 5]
    assert [user["email"] for page in pages for user in page["items"]] == team

    # `_` is a literal underscore, not a wildcard.
    literal = await client.get("/users", headers=admin, params={"email": "under_"})
    assert [user["email"] for user in literal.json()["items"]] == ["under_score@example.org"]

    invalid_params: list[dict[str, str | int]] = [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"email": "x" * 321},
    ]
    for params in invalid_params:
        invalid = await client.get("/users", headers=admin, params=params)
        assert invalid.status_code == 422, params


async def test_listing_users_is_for_superusers_only(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="nell@example.org")
    assert (await client.get("/users")).status_code == 401
    member = bearer(await jwt_login("nell@example.org"))
    assert (await client.get("/users", headers=member)).status_code == 403


async def test_superusers_create_users_with_flags(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login, outbox: OutboxMailer
) -> None:
    await make_user(email="admin@example.org", is_superuser=True)
    await make_user(email="taken@example.org")
    admin = bearer(await jwt_login("admin@example.org"))
    created = await client.post(
        "/users",
        headers=admin,
        json={"email": "ops@example.org", "password": DEFAULT_PASSWORD, "is_superuser": True},
    )
    assert created.status_code == 201, created.text
    assert (created.json()["is_superuser"], created.json()["is_verified"]) == (True, False)
    assert outbox.sent_to("ops@example.org", MailKind.VERIFY)
    assert (
        await client.get("/probe/admin", headers=bearer(await jwt_login("ops@example.org")))
    ).status_code == 200

    duplicate = await client.post(
        "/users", headers=admin, json={"email": "TAKEN@example.org", "password": DEFAULT_PASSWORD}
    )
    assert duplicate.status_code == 400
    assert duplicate.json() == {"detail": "REGISTER_USER_ALREADY_EXISTS"}
    weak = await client.post(
        "/users", headers=admin, json={"email": "weak@example.org", "password": "weak"}
    )
    assert weak.status_code == 400
    assert weak.json()["detail"]["code"] == "REGISTER_INVALID_PASSWORD"


async def test_null_for_a_field_that_cannot_be_null_leaves_it_unchanged(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    await make_user(email="admin@example.org", is_superuser=True)
    target = await make_user(email="otto@example.org", display_name="Otto")
    admin = bearer(await jwt_login("admin@example.org"))
    nulls = {
        "email": None,
        "password": None,
        "is_active": None,
        "is_superuser": None,
        "is_verified": None,
    }
    response = await client.patch(
        f"/users/{target.id}", headers=admin, json={**nulls, "display_name": None}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["email"], body["is_active"], body["is_verified"]) == (
        "otto@example.org",
        True,
        True,
    )
    assert body["display_name"] is None  # nullable: cleared
    assert await jwt_login("otto@example.org", DEFAULT_PASSWORD)

    created = await client.post(
        "/users",
        headers=admin,
        json={"email": "pam@example.org", "password": DEFAULT_PASSWORD, "is_active": None},
    )
    assert created.status_code == 201, created.text
    assert created.json()["is_active"] is True


async def test_addresses_go_out_as_stored_without_being_checked_again(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth
) -> None:
    # email-validator would lower-case the first domain and refuse the second (a reserved
    # name): on the way out neither matters, the address was checked when it was stored.
    admin = await make_user(email="Root@Example.ORG", is_superuser=True)
    reserved = await make_user(email="ops@roster.test")
    headers = await bearer_headers(auth, admin)

    me = await client.get("/users/me", headers=headers)
    assert (me.status_code, me.json()["email"]) == (200, "Root@Example.ORG")
    one = await client.get(f"/users/{reserved.id}", headers=headers)
    assert (one.status_code, one.json()["email"]) == (200, "ops@roster.test")
    listed = await client.get("/users", headers=headers)
    assert listed.status_code == 200, listed.text
    emails = {user["email"] for user in listed.json()["items"]}
    assert emails == {"Root@Example.ORG", "ops@roster.test"}

    # Addresses coming in are still checked, and the schema still says what the field is.
    refused = await client.patch("/users/me", headers=headers, json={"email": "root@roster.test"})
    assert refused.status_code == 422
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["UserRead"]["properties"]["email"]["format"] == "email"


async def test_flags_are_booleans_not_numbers_or_words(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    # The schema says boolean; pydantic's lax mode would read 0, 0.0 or "no" as false.
    await make_user(email="admin@example.org", is_superuser=True)
    target = await make_user(email="rita@example.org")
    admin = bearer(await jwt_login("admin@example.org"))
    for flags in ({"is_active": 0}, {"is_verified": 0.0}, {"is_superuser": "no"}):
        [field] = flags
        updated = await client.patch(f"/users/{target.id}", headers=admin, json=flags)
        assert updated.status_code == 422, updated.text
        assert updated.json()["detail"][0]["loc"] == ["body", field]
        created = await client.post(
            "/users",
            headers=admin,
            json={"email": "sam@example.org", "password": DEFAULT_PASSWORD, **flags},
        )
        assert created.status_code == 422, created.text
    assert (await client.get(f"/users/{target.id}", headers=admin)).json()["is_active"] is True
