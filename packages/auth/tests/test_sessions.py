"""Sessions a user can see and end (`/users/me/sessions`), superusers' routes on any user's,
revocation of every session on a password change, reset, deactivation or deletion, pruning,
and the cost of `GET /users/me` (one statement, never a session table for a JWT)."""

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import (
    AccessToken,
    AuthConfig,
    MailKind,
    OutboxMailer,
    RefreshToken,
    RefreshTokenFamily,
    User,
    prune_sessions,
    token_digest,
)
from roster_auth.testing import DEFAULT_PASSWORD

from .sessions_kit import (
    UNAUTHORIZED,
    Clock,
    Tokens,
    cookie,
    cookie_login,
    login,
    refresh,
)

Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"
LIFETIME = 100
IDLE = 40
COOKIE_LIFETIME = 200
TOUCH = 60


@pytest.fixture(scope="module")
def module_clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def clock(module_clock: Clock) -> Clock:
    """The clock of the module's configuration, at the real time when the test starts."""
    module_clock.reset()
    return module_clock


@pytest.fixture(scope="module")
def auth_config(auth_config: AuthConfig, module_clock: Clock) -> AuthConfig:
    return replace(
        auth_config,
        clock=module_clock,
        refresh_token_lifetime_seconds=LIFETIME,
        refresh_token_idle_seconds=IDLE,
        cookie_token_lifetime_seconds=COOKIE_LIFETIME,
        session_touch_interval_seconds=TOUCH,
    )


async def sessions_of(client: AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/users/me/sessions", headers=headers)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()
    return listed


async def me(client: AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/users/me", headers=headers)).status_code


async def test_the_listing_shows_the_callers_sessions_and_which_is_current(
    client: AsyncClient, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user(email="gia@example.org")
    other = await make_user(email="hal@example.org")
    browser = await cookie_login(client, user.email, user_agent="Firefox/140\x07")
    clock.advance(1)
    phone = await login(client, user.email, user_agent="RosterApp/3 (Android)")
    clock.advance(1)
    laptop = await login(client, user.email, user_agent="roster-cli/0.1")
    await login(client, other.email)
    await cookie_login(client, other.email)

    listed = await sessions_of(client, phone.headers)
    assert [(s["kind"], s["user_agent"]) for s in listed] == [
        ("refresh", "roster-cli/0.1"),
        ("refresh", "RosterApp/3 (Android)"),
        ("cookie", "Firefox/140"),  # control characters are not kept
    ]
    assert [s["current"] for s in listed] == [False, True, False]
    assert {s["client_address"] for s in listed} == {"127.0.0.1"}
    assert set(listed[0]) == {
        "id",
        "kind",
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "client_address",
        "current",
    }
    # Ids are neither the tokens nor their digests.
    secrets = {browser, phone.refresh_token, laptop.refresh_token}
    for shown in listed:
        assert shown["id"] not in secrets | {token_digest(secret) for secret in secrets}

    by_cookie = await sessions_of(client, cookie(browser))
    assert [s["current"] for s in by_cookie] == [False, False, True]
    # A live cookie is the request's session even beside a bearer token (the cookie counts
    # first, as in the current-user dependencies).
    both = await sessions_of(client, {**cookie(browser), **phone.headers})
    assert [s["current"] for s in both] == [False, False, True]


async def test_ending_one_session_leaves_the_others_working(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="ines@example.org")
    browser = await cookie_login(client, user.email)
    phone = await login(client, user.email)
    laptop = await login(client, user.email)
    listed = await sessions_of(client, laptop.headers)
    phone_id = next(s["id"] for s in listed if s["current"] is False and s["kind"] == "refresh")

    ended = await client.delete(f"/users/me/sessions/{phone_id}", headers=laptop.headers)
    assert ended.status_code == 204
    assert (await refresh(client, phone.refresh_token)).status_code == 401
    assert await me(client, cookie(browser)) == 200
    assert (await refresh(client, laptop.refresh_token)).status_code == 200

    browser_id = next(s["id"] for s in listed if s["kind"] == "cookie")
    ended = await client.delete(f"/users/me/sessions/{browser_id}", headers=laptop.headers)
    assert ended.status_code == 204
    assert await me(client, cookie(browser)) == 401
    # Ended sessions are not listed, and cannot be ended twice.
    assert [s["id"] for s in await sessions_of(client, laptop.headers)] == [
        s["id"] for s in listed if s["id"] not in (phone_id, browser_id)
    ]
    again = await client.delete(f"/users/me/sessions/{phone_id}", headers=laptop.headers)
    assert again.status_code == 404
    assert again.json() == {"detail": "SESSION_NOT_FOUND"}


async def test_another_users_session_is_answered_as_an_unknown_one(
    client: AsyncClient, make_user: MakeUser
) -> None:
    alice = await make_user(email="jo@example.org")
    bob = await make_user(email="kai@example.org")
    alices = await login(client, alice.email)
    bobs = await login(client, bob.email)
    bobs_browser = await cookie_login(client, bob.email)
    for shown in await sessions_of(client, bobs.headers):
        answer = await client.delete(f"/users/me/sessions/{shown['id']}", headers=alices.headers)
        unknown = await client.delete(f"/users/me/sessions/{uuid.uuid4()}", headers=alices.headers)
        assert (answer.status_code, answer.json()) == (unknown.status_code, unknown.json())
        assert answer.status_code == 404
    assert (await refresh(client, bobs.refresh_token)).status_code == 200
    assert await me(client, cookie(bobs_browser)) == 200
    # Nor does Alice's listing show them.
    assert len(await sessions_of(client, alices.headers)) == 1
    malformed = await client.delete("/users/me/sessions/not-an-id", headers=alices.headers)
    assert malformed.status_code == 422


async def test_ending_all_but_the_current_session(client: AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(email="lou@example.org")
    other = await make_user(email="mo@example.org")
    browser = await cookie_login(client, user.email)
    phone = await login(client, user.email)
    laptop = await login(client, user.email)
    others = await login(client, other.email)

    ended = await client.delete("/users/me/sessions", headers=laptop.headers)
    assert ended.status_code == 204
    assert await me(client, cookie(browser)) == 401
    assert (await refresh(client, phone.refresh_token)).status_code == 401
    assert (await refresh(client, laptop.refresh_token)).status_code == 200
    assert (await refresh(client, others.refresh_token)).status_code == 200

    # From a cookie, the cookie stays.
    second_browser = await cookie_login(client, user.email)
    tablet = await login(client, user.email)
    assert (
        await client.delete("/users/me/sessions", headers=cookie(second_browser))
    ).status_code == 204
    assert await me(client, cookie(second_browser)) == 200
    assert (await refresh(client, tablet.refresh_token)).status_code == 401


async def test_the_session_routes_need_a_signed_in_user(client: AsyncClient) -> None:
    for method, path in (
        ("GET", "/users/me/sessions"),
        ("DELETE", "/users/me/sessions"),
        ("DELETE", f"/users/me/sessions/{uuid.uuid4()}"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


async def test_superusers_list_and_end_any_users_sessions(
    client: AsyncClient, make_user: MakeUser, clock: Clock
) -> None:
    admin = await make_user(email="root@example.org", is_superuser=True)
    user = await make_user(email="ned@example.org")
    admins = await login(client, admin.email)
    phone = await login(client, user.email)
    clock.advance(1)
    laptop = await login(client, user.email)
    clock.advance(1)
    browser = await cookie_login(client, user.email)

    listed = await client.get(f"/users/{user.id}/sessions", headers=admins.headers)
    assert listed.status_code == 200
    assert sorted(s["kind"] for s in listed.json()) == ["cookie", "refresh", "refresh"]
    assert not any(s["current"] for s in listed.json())

    first = listed.json()[0]
    ended = await client.delete(f"/users/{user.id}/sessions/{first['id']}", headers=admins.headers)
    assert ended.status_code == 204
    assert await me(client, cookie(browser)) == 401  # the newest: the cookie session
    assert (await refresh(client, phone.refresh_token)).status_code == 200

    assert (
        await client.delete(f"/users/{user.id}/sessions", headers=admins.headers)
    ).status_code == 204
    assert (await refresh(client, laptop.refresh_token)).status_code == 401
    assert (await client.get(f"/users/{user.id}/sessions", headers=admins.headers)).json() == []
    # The superuser's own session is another user's: untouched.
    assert (await refresh(client, admins.refresh_token)).status_code == 200

    unknown = uuid.uuid4()
    assert (
        await client.get(f"/users/{unknown}/sessions", headers=admins.headers)
    ).status_code == 404
    # A plain user may not.
    users = await login(client, user.email)
    for method, path in (
        ("GET", f"/users/{admin.id}/sessions"),
        ("DELETE", f"/users/{admin.id}/sessions"),
        ("DELETE", f"/users/{admin.id}/sessions/{uuid.uuid4()}"),
    ):
        assert (await client.request(method, path, headers=users.headers)).status_code == 403


async def every_session_ended(client: AsyncClient, browser: str, tokens: list[Tokens]) -> bool:
    cookie_refused = await me(client, cookie(browser)) == 401
    refreshes = [await refresh(client, t.refresh_token) for t in tokens]
    return cookie_refused and all(r.status_code == 401 for r in refreshes)


async def test_a_password_change_ends_every_session(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="ola@example.org")
    browser = await cookie_login(client, user.email)
    phone, laptop = await login(client, user.email), await login(client, user.email)
    changed = await client.patch(
        "/users/me",
        headers=laptop.headers,
        json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    assert await every_session_ended(client, browser, [phone, laptop])
    assert (await login(client, user.email, NEW_PASSWORD)).refresh_token


async def test_a_profile_edit_ends_no_session(client: AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(email="pat@example.org")
    phone = await login(client, user.email)
    edited = await client.patch("/users/me", headers=phone.headers, json={"display_name": "Pat"})
    assert edited.status_code == 200
    assert (await refresh(client, phone.refresh_token)).status_code == 200


async def test_a_password_reset_ends_every_session(
    client: AsyncClient, make_user: MakeUser, outbox: OutboxMailer
) -> None:
    user = await make_user(email="quin@example.org")
    browser = await cookie_login(client, user.email)
    phone = await login(client, user.email)
    await client.post("/auth/forgot-password", json={"email": user.email})
    token = outbox.last_token(user.email, MailKind.RESET_PASSWORD)
    reset = await client.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert await every_session_ended(client, browser, [phone])


async def test_a_deactivation_ends_every_session(client: AsyncClient, make_user: MakeUser) -> None:
    admin = await make_user(email="root@example.org", is_superuser=True)
    user = await make_user(email="rae@example.org")
    admins = await login(client, admin.email)
    browser = await cookie_login(client, user.email)
    phone = await login(client, user.email)
    off = await client.patch(f"/users/{user.id}", headers=admins.headers, json={"is_active": False})
    assert off.status_code == 200, off.text
    assert await every_session_ended(client, browser, [phone])
    # Reactivated, the old tokens stay dead.
    on = await client.patch(f"/users/{user.id}", headers=admins.headers, json={"is_active": True})
    assert on.status_code == 200
    assert await every_session_ended(client, browser, [phone])


async def test_a_deletion_ends_every_session(
    client: AsyncClient, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    admin = await make_user(email="root@example.org", is_superuser=True)
    user = await make_user(email="sol@example.org")
    admins = await login(client, admin.email)
    browser = await cookie_login(client, user.email)
    phone = await login(client, user.email)
    assert (await client.delete(f"/users/{user.id}", headers=admins.headers)).status_code == 204
    assert await every_session_ended(client, browser, [phone])
    async with db_sessionmaker() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(RefreshTokenFamily)
            .where(RefreshTokenFamily.__table__.c.user_id == user.id)
        )
    assert left == 0


async def test_a_cookie_sessions_last_use_is_written_at_most_once_per_interval(
    client: AsyncClient, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user(email="tim@example.org")
    browser = await cookie_login(client, user.email)

    async def last_used() -> str:
        listed = await sessions_of(client, cookie(browser))
        return str(listed[0]["last_used_at"])

    created = await last_used()
    clock.advance(TOUCH - 1)
    assert await me(client, cookie(browser)) == 200
    assert await last_used() == created
    clock.advance(2)
    assert await me(client, cookie(browser)) == 200
    touched = await last_used()
    assert touched > created
    clock.advance(1)
    assert await me(client, cookie(browser)) == 200
    assert await last_used() == touched


async def test_pruning_deletes_ended_sessions_only(
    client: AsyncClient,
    make_user: MakeUser,
    clock: Clock,
    auth_config: AuthConfig,
    db_connection: AsyncConnection,
) -> None:
    user = await make_user(email="uri@example.org")
    other = await make_user(email="vic@example.org")
    live = await login(client, user.email)
    browser = await cookie_login(client, user.email)
    others = await login(client, other.email)
    # Logins delete their user's own ended sessions: these are put in by hand.
    async with db_connection.begin_nested():
        await add_ended_sessions(db_connection, user, clock)
        await add_ended_sessions(db_connection, other, clock)
        pruned = await prune_sessions(db_connection, auth_config)
    assert (pruned.cookie_sessions, pruned.refresh_families) == (2, 6)
    digests = set(await db_connection.scalars(select(AccessToken.__table__.c.token)))
    assert digests == {token_digest(browser)}
    family_ids = set(await db_connection.scalars(select(RefreshTokenFamily.__table__.c.id)))
    assert len(family_ids) == 2
    assert (await refresh(client, live.refresh_token)).status_code == 200
    assert (await refresh(client, others.refresh_token)).status_code == 200
    assert await me(client, cookie(browser)) == 200


async def add_ended_sessions(connection: AsyncConnection, user: User, clock: Clock) -> None:
    """An expired cookie session, and a family past its lifetime, one revoked, one idle."""
    now = clock()
    long_ago = now - timedelta(days=365)
    family = {"user_id": user.id, "created_at": now, "last_used_at": now, "revoked_at": None}
    await connection.execute(
        insert(RefreshTokenFamily),
        [
            {**family, "id": uuid.uuid4(), "expires_at": now, "created_at": long_ago},
            {**family, "id": uuid.uuid4(), "expires_at": now + timedelta(1), "revoked_at": now},
            {
                **family,
                "id": uuid.uuid4(),
                "expires_at": now + timedelta(1),
                "last_used_at": now - timedelta(seconds=IDLE),
            },
        ],
    )
    await connection.execute(
        insert(AccessToken),
        {"token": token_digest(f"ancient-{user.id}"), "user_id": user.id, "created_at": long_ago},
    )


async def test_a_login_deletes_the_users_own_ended_sessions(
    client: AsyncClient, make_user: MakeUser, clock: Clock, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="val@example.org")
    other = await make_user(email="wes@example.org")
    await login(client, user.email)
    others = await login(client, other.email)
    clock.advance(IDLE + 1)  # both families idle now
    await login(client, user.email)
    async with db_sessionmaker() as session:
        families = RefreshTokenFamily.__table__
        rows = (await session.execute(select(families.c.user_id))).all()
        tokens = await session.scalar(select(func.count()).select_from(RefreshToken))
    assert sorted(str(row.user_id) for row in rows) == sorted([str(user.id), str(other.id)])
    assert tokens == 2
    assert (await refresh(client, others.refresh_token)).status_code == 401  # idle, not purged


@contextmanager
def recorded_statements(connection: AsyncConnection) -> Iterator[list[str]]:
    executed: list[str] = []

    def record(*args: Any) -> None:
        executed.append(args[2])  # (conn, cursor, statement, parameters, ...)

    sync_connection = connection.sync_connection
    assert sync_connection is not None
    event.listen(sync_connection, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(sync_connection, "before_cursor_execute", record)


def _not_savepoints(executed: list[str]) -> list[str]:
    return [s for s in executed if "SAVEPOINT" not in s.upper()]


async def test_me_with_a_jwt_runs_one_statement_and_reads_no_session_table(
    client: AsyncClient, make_user: MakeUser, db_connection: AsyncConnection
) -> None:
    user = await make_user(email="xavi@example.org")
    tokens = await login(client, user.email)  # a JWT with a `sid`
    with recorded_statements(db_connection) as executed:
        assert await me(client, tokens.headers) == 200
    statements = _not_savepoints(executed)
    assert len(statements) == 1, statements
    assert "refresh_token" not in statements[0]
    assert "accesstoken" not in statements[0]


async def test_me_with_a_cookie_runs_one_statement(
    client: AsyncClient, make_user: MakeUser, db_connection: AsyncConnection, clock: Clock
) -> None:
    user = await make_user(email="yves@example.org")
    browser = await cookie_login(client, user.email)
    clock.advance(TOUCH + 1)  # a request that also writes the last use
    for _ in range(2):
        with recorded_statements(db_connection) as executed:
            assert await me(client, cookie(browser)) == 200
        statements = _not_savepoints(executed)
        assert len(statements) == 1, statements
        assert "refresh_token" not in statements[0]
