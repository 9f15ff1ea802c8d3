"""The groups API behind a real sign-in on both of roster-auth's backends (elsewhere the tests
mint the same JWTs directly)."""

from collections.abc import Awaitable, Callable

import httpx

from roster_auth.testing import DEFAULT_PASSWORD, bearer

from .conftest import Person


async def test_a_bearer_token_from_the_login_route_works_on_the_groups_api(
    client: httpx.AsyncClient, make_person: Callable[..., Awaitable[Person]]
) -> None:
    person = await make_person("hana")
    login = await client.post(
        "/auth/jwt/login", data={"username": person.user.email, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200, login.text
    headers = bearer(login.json()["access_token"])
    created = await client.post("/groups", json={"name": "Signed in"}, headers=headers)
    assert created.status_code == 201
    mine = await client.get("/users/me/groups", headers=headers)
    assert [(g["name"], g["role"]) for g in mine.json()["items"]] == [("Signed in", "owner")]


async def test_a_cookie_session_works_on_the_groups_api(
    client: httpx.AsyncClient, make_person: Callable[..., Awaitable[Person]]
) -> None:
    person = await make_person("ivan")
    login = await client.post(
        "/auth/cookie/login", data={"username": person.user.email, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 204, login.text
    # The cookie is Secure; the test client speaks plain http, so it is sent by hand.
    (name, value) = login.headers["set-cookie"].split(";")[0].split("=", 1)
    cookies = {"Cookie": f"{name}={value}"}
    created = await client.post("/groups", json={"name": "By cookie"}, headers=cookies)
    assert created.status_code == 201
    group_id = created.json()["id"]
    members = await client.get(f"/groups/{group_id}/members", headers=cookies)
    assert [m["email"] for m in members.json()["items"]] == [person.user.email]
    # After logout the cookie's stored token is revoked.
    logout = await client.post("/auth/cookie/logout", headers=cookies)
    assert logout.status_code == 204
    refused = await client.get(f"/groups/{group_id}", headers=cookies)
    assert refused.status_code == 401
