"""The database strategy's tokens die at logout, on a password change or reset; nothing else
ends them (a profile edit, a login that upgrades the stored hash)."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi_users.password import PasswordHelper
from httpx import AsyncClient
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AccessToken, AuthConfig, MailKind, OutboxMailer, User, token_digest
from roster_auth.testing import DEFAULT_PASSWORD, bearer

Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"


async def token_count(sessionmaker: Sessionmaker, user: User) -> int:
    async with sessionmaker() as session:
        tokens = await session.scalars(
            select(AccessToken.__table__.c.token).where(AccessToken.__table__.c.user_id == user.id)
        )
        return len(list(tokens))


async def me_with_cookie(client: AsyncClient, token: str) -> int:
    client.cookies.clear()
    client.cookies.set("roster_auth", token)
    try:
        return (await client.get("/users/me")).status_code
    finally:
        client.cookies.clear()


async def test_cookie_logout_revokes_the_stored_token(
    client: AsyncClient, make_user: MakeUser, cookie_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="mia@example.org")
    token = await cookie_login(user.email)
    other_session = await cookie_login(user.email)
    assert await token_count(db_sessionmaker, user) == 2

    client.cookies.set("roster_auth", token)
    logout = await client.post("/auth/cookie/logout")
    assert logout.status_code == 204
    # The browser is told to drop the cookie.
    assert 'roster_auth=""' in logout.headers["set-cookie"]
    assert "max-age=0" in logout.headers["set-cookie"].lower()

    assert await me_with_cookie(client, token) == 401
    assert await me_with_cookie(client, other_session) == 200
    assert await token_count(db_sessionmaker, user) == 1


async def test_cookie_logout_with_a_bearer_token_too_still_revokes_the_cookie(
    client: AsyncClient,
    make_user: MakeUser,
    jwt_login: Login,
    cookie_login: Login,
    db_sessionmaker: Sessionmaker,
) -> None:
    user = await make_user(email="nia@example.org")
    access = await jwt_login(user.email)
    token = await cookie_login(user.email)
    client.cookies.set("roster_auth", token)
    assert (await client.post("/auth/cookie/logout", headers=bearer(access))).status_code == 204
    assert await me_with_cookie(client, token) == 401
    assert await token_count(db_sessionmaker, user) == 0


async def test_jwt_logout_is_stateless(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login
) -> None:
    user = await make_user(email="omar@example.org")
    token = await jwt_login(user.email)
    assert (await client.post("/auth/jwt/logout", headers=bearer(token))).status_code == 204
    # Documented: a JWT cannot be revoked; it lives until its (short) expiry.
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200


async def test_a_password_change_revokes_every_stored_token(
    client: AsyncClient, make_user: MakeUser, cookie_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="pia@example.org")
    laptop = await cookie_login(user.email)
    phone = await cookie_login(user.email)
    client.cookies.set("roster_auth", phone)
    changed = await client.patch(
        "/users/me", json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD}
    )
    assert changed.status_code == 200, changed.text

    assert await me_with_cookie(client, laptop) == 401
    assert await me_with_cookie(client, phone) == 401
    assert await token_count(db_sessionmaker, user) == 0
    old = await client.post(
        "/auth/cookie/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 400
    assert await cookie_login(user.email, NEW_PASSWORD)


async def test_a_password_reset_revokes_every_stored_token(
    client: AsyncClient,
    make_user: MakeUser,
    cookie_login: Login,
    db_sessionmaker: Sessionmaker,
    outbox: OutboxMailer,
) -> None:
    user = await make_user(email="quinn@example.org")
    session_token = await cookie_login(user.email)
    client.cookies.clear()
    await client.post("/auth/forgot-password", json={"email": user.email})
    reset_token = outbox.last_token(user.email, MailKind.RESET_PASSWORD)
    reset = await client.post(
        "/auth/reset-password", json={"token": reset_token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert await me_with_cookie(client, session_token) == 401
    assert await token_count(db_sessionmaker, user) == 0


async def test_a_profile_edit_keeps_the_sessions(
    client: AsyncClient, make_user: MakeUser, cookie_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="ruth@example.org")
    token = await cookie_login(user.email)
    edited = await client.patch("/users/me", json={"display_name": "Ruth"})
    assert edited.status_code == 200
    assert await me_with_cookie(client, token) == 200
    assert await token_count(db_sessionmaker, user) == 1


async def test_a_login_that_upgrades_the_hash_keeps_the_other_sessions(
    client: AsyncClient, make_user: MakeUser, cookie_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    # Hashed with other Argon2 parameters than the app's: the next login stores a new hash.
    older = PasswordHelper(
        PasswordHash((Argon2Hasher(time_cost=2, memory_cost=1024, parallelism=1),))
    )
    user = await make_user(email="sam@example.org", password_helper=older)
    first = await cookie_login(user.email)
    client.cookies.clear()
    await cookie_login(user.email)
    async with db_sessionmaker() as session:
        stored = await session.get_one(User, user.id)
        assert stored.hashed_password != user.hashed_password
        assert ",t=1," in stored.hashed_password
    assert await me_with_cookie(client, first) == 200
    assert await token_count(db_sessionmaker, user) == 2


async def test_expired_stored_tokens_are_refused_and_purged_at_the_next_login(
    client: AsyncClient,
    make_user: MakeUser,
    cookie_login: Login,
    db_sessionmaker: Sessionmaker,
    auth_config: AuthConfig,
) -> None:
    user = await make_user(email="tara@example.org")
    expired_at = datetime.now(UTC) - timedelta(seconds=auth_config.cookie_token_lifetime_seconds)
    async with db_sessionmaker() as session:
        session.add(
            AccessToken(token=token_digest("expired-token"), user_id=user.id, created_at=expired_at)
        )
        session.add(AccessToken(token=token_digest("fresh-token"), user_id=user.id))
        await session.commit()
    assert await me_with_cookie(client, "expired-token") == 401
    assert await me_with_cookie(client, "fresh-token") == 200

    new = await cookie_login(user.email)
    async with db_sessionmaker() as session:
        owner = AccessToken.__table__.c.user_id
        left = set(
            await session.scalars(select(AccessToken.__table__.c.token).where(owner == user.id))
        )
    assert left == {token_digest("fresh-token"), token_digest(new)}
