"""Refresh tokens: the login's token response, rotation, reuse detection, racing refreshes,
expiry and idle timeout on a clock the tests move, logout, and what a refresh refuses."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import jwt
import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AuthConfig, RefreshToken, RefreshTokenFamily, User, token_digest
from roster_auth.sessions import ROTATE
from roster_auth.testing import ACCESS_TOKEN_SECRET, bearer, create_user

from .sessions_kit import UNAUTHORIZED, Clock, login, refresh, refreshed

Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
LIFETIME = 100
IDLE = 40


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
    )


def claims(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        access_token, ACCESS_TOKEN_SECRET, algorithms=["HS256"], audience="fastapi-users:auth"
    )
    return decoded


async def me(client: AsyncClient, access_token: str) -> int:
    return (await client.get("/users/me", headers=bearer(access_token))).status_code


async def test_login_answers_an_oauth_token_response(
    client: AsyncClient, make_user: MakeUser, auth_config: AuthConfig, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="tina@example.org")
    response = await client.post(
        "/auth/jwt/login", data={"username": user.email, "password": "violet-harbour-tandem-42"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == auth_config.access_token_lifetime_seconds
    assert len(body["refresh_token"]) == 43  # token_urlsafe(32)
    assert response.headers["cache-control"] == "no-store"
    assert await me(client, body["access_token"]) == 200

    async with db_sessionmaker() as session:
        family = (await session.scalars(select(RefreshTokenFamily))).one()
        stored = (await session.scalars(select(RefreshToken))).one()
    # Only the digest is stored; the access token names its family.
    assert stored.token_hash == token_digest(body["refresh_token"])
    assert body["refresh_token"] not in (stored.token_hash, str(family.id))
    assert claims(body["access_token"])["sid"] == str(family.id)
    assert family.user_id == user.id
    assert (family.expires_at - family.created_at).total_seconds() == LIFETIME


async def test_a_refresh_rotates_and_the_old_token_is_refused(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="uma@example.org")
    first = await login(client, user.email)
    second = await refreshed(client, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert claims(second.access_token)["sid"] == claims(first.access_token)["sid"]
    assert await me(client, second.access_token) == 200

    again = await refresh(client, first.refresh_token)
    assert again.status_code == 401
    assert again.json() == UNAUTHORIZED


async def test_a_reused_token_revokes_its_family_and_only_its_family(
    client: AsyncClient, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="vera@example.org")
    stolen = await login(client, user.email)
    other_device = await login(client, user.email)
    # The thief refreshes first; the client then presents the token it still has.
    thief = await refreshed(client, stolen.refresh_token)
    assert (await refresh(client, stolen.refresh_token)).status_code == 401
    # The newest token of the family fails too, whoever holds it.
    assert (await refresh(client, thief.refresh_token)).json() == UNAUTHORIZED
    async with db_sessionmaker() as session:
        revoked = await session.scalar(
            select(func.count()).where(RefreshTokenFamily.revoked_at.is_not(None))
        )
    assert revoked == 1
    # The user's other session is not touched.
    assert (await refresh(client, other_device.refresh_token)).status_code == 200


async def test_racing_refreshes_of_one_token_give_exactly_one_success(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
) -> None:
    async with committing_sessionmaker() as session:
        user = await create_user(session, email="wren@example.org")
    async with serve_with(auth_config, committing_sessionmaker) as client:
        for _ in range(5):
            tokens = await login(client, user.email)
            answers = await asyncio.gather(
                *(refresh(client, tokens.refresh_token) for _ in range(2))
            )
            assert sorted(answer.status_code for answer in answers) == [200, 401]
            loser = next(answer for answer in answers if answer.status_code == 401)
            assert loser.json() == UNAUTHORIZED
            # The loser presented a token already exchanged: the family is revoked, as for
            # a theft (clients must not send two refreshes of one token at once).
            winner = next(answer for answer in answers if answer.status_code == 200)
            assert (await refresh(client, winner.json()["refresh_token"])).status_code == 401
            # The first token and the winner's: never two successors.
            family_id = claims(tokens.access_token)["sid"]
            async with committing_sessionmaker() as session:
                in_family = await session.scalar(
                    select(func.count())
                    .select_from(RefreshToken)
                    .where(RefreshToken.__table__.c.family_id == uuid.UUID(family_id))
                )
            assert in_family == 2


async def test_a_refresh_waiting_on_a_rival_rotation_finds_the_token_used(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
    clock: Clock,
) -> None:
    """Forces the interleaving the race above only makes likely: the request's UPDATE waits
    for a rival transaction that rotated the token and commits meanwhile."""
    async with committing_sessionmaker() as session:
        user = await create_user(session, email="xia@example.org")
    async with serve_with(auth_config, committing_sessionmaker) as client:
        tokens = await login(client, user.email)
        async with committing_sessionmaker() as rival:
            now = clock()
            rotated = await rival.execute(
                ROTATE,
                {
                    "digest": token_digest(tokens.refresh_token),
                    "now": now,
                    "idle_before": now.replace(year=now.year - 1),
                },
            )
            assert rotated.first() is not None  # the row is locked until the commit
            request = asyncio.create_task(refresh(client, tokens.refresh_token))
            await wait_for_a_lock_wait(committing_sessionmaker)
            await rival.commit()
            response = await request
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


async def wait_for_a_lock_wait(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker() as session:
        for _ in range(500):
            if await session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the request never waited on the open transaction")


async def test_a_family_ends_at_its_lifetime_however_often_it_is_refreshed(
    client: AsyncClient, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user(email="yara@example.org")
    tokens = await login(client, user.email)
    for _ in range(3):  # at 30, 60 and 90 seconds: each within the idle timeout
        clock.advance(30)
        tokens = await refreshed(client, tokens.refresh_token)
    clock.advance(LIFETIME - 90)
    response = await refresh(client, tokens.refresh_token)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


async def test_a_token_left_unused_past_the_idle_timeout_is_refused(
    client: AsyncClient, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user(email="zeno@example.org")
    kept_alive = await login(client, user.email)
    idle = await login(client, user.email)
    clock.advance(IDLE - 1)
    kept_alive = await refreshed(client, kept_alive.refresh_token)
    clock.advance(2)
    assert (await refresh(client, idle.refresh_token)).status_code == 401
    # The idle timeout counts from the last refresh.
    assert (await refresh(client, kept_alive.refresh_token)).status_code == 200


async def test_logout_with_the_refresh_token_ends_its_family(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="abel@example.org")
    phone = await login(client, user.email)
    laptop = await login(client, user.email)
    logout = await client.post("/auth/jwt/logout", json={"refresh_token": phone.refresh_token})
    assert logout.status_code == 204
    assert (await refresh(client, phone.refresh_token)).status_code == 401
    assert (await refresh(client, laptop.refresh_token)).status_code == 200
    # Documented: the access tokens it issued live until they expire.
    assert await me(client, phone.access_token) == 200


async def test_logout_with_only_the_access_token_ends_the_session_it_came_from(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="bea@example.org")
    phone = await login(client, user.email)
    laptop = await login(client, user.email)
    logout = await client.post("/auth/jwt/logout", headers=phone.headers)
    assert logout.status_code == 204
    assert (await refresh(client, phone.refresh_token)).status_code == 401
    assert (await refresh(client, laptop.refresh_token)).status_code == 200


async def test_logout_refuses_what_proves_nothing(client: AsyncClient, make_user: MakeUser) -> None:
    alice = await make_user(email="cleo2@example.org")
    bob = await make_user(email="dov@example.org")
    alices = await login(client, alice.email)
    bobs = await login(client, bob.email)
    for headers, body in (
        ({}, None),  # nothing at all
        (bearer("not-a-jwt"), None),
        ({}, {"refresh_token": "forged-" + "x" * 36}),
        # Alice's access token with Bob's refresh token: Bob's session stays.
        (alices.headers, {"refresh_token": bobs.refresh_token}),
    ):
        response = await client.post("/auth/jwt/logout", headers=headers, json=body)
        assert response.status_code == 401, (headers, body)
        assert response.json() == UNAUTHORIZED
    assert (await refresh(client, bobs.refresh_token)).status_code == 200


async def test_forged_truncated_and_foreign_tokens_are_401_with_a_json_body(
    client: AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(email="eli@example.org")
    tokens = await login(client, user.email)
    for token in (
        "A" * 43,  # forged, of the right shape
        tokens.refresh_token[:-1],  # truncated
        tokens.refresh_token + "A",  # extended
        tokens.access_token,  # an access token is no refresh token
        "\u00e9" * 43,  # not even of the alphabet
    ):
        response = await refresh(client, token)
        assert response.status_code == 401, token
        assert response.json() == UNAUTHORIZED
    # None of those touched the real one.
    assert (await refresh(client, tokens.refresh_token)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"refresh_token": ""},
        {"refresh_token": 12},
        {"refresh_token": None},
        {"refresh_token": "x" * 1025},
        {"token": "abc"},
        ["refresh_token"],
    ],
)
async def test_bad_input_is_422(client: AsyncClient, body: Any) -> None:
    response = await client.post("/auth/jwt/refresh", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_a_refresh_for_an_inactive_user_is_refused_in_the_same_statement(
    client: AsyncClient, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    user = await make_user(email="finn@example.org")
    tokens = await login(client, user.email)
    # Deactivated behind the application's back: no revocation ran, the statement still
    # checks the user.
    async with db_sessionmaker() as session:
        await session.execute(
            update(User).where(User.__table__.c.id == user.id).values(is_active=False)
        )
        await session.commit()
    response = await refresh(client, tokens.refresh_token)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


async def test_a_revocation_committed_during_a_refresh_wins(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
) -> None:
    """A password change that revokes the family while a refresh is between its two
    statements: the refresh's second statement waits for the family's row lock, re-reads the
    row, finds it revoked and issues nothing."""
    async with committing_sessionmaker() as session:
        user = await create_user(session, email="gus@example.org")
    async with serve_with(auth_config, committing_sessionmaker) as client:
        tokens = await login(client, user.email)
        family_id = uuid.UUID(claims(tokens.access_token)["sid"])
        async with committing_sessionmaker() as rival:
            # The revocation holds the family's row, uncommitted: the request's first
            # statement (which reads the family without locking it) still sees it live.
            await rival.execute(
                update(RefreshTokenFamily)
                .where(RefreshTokenFamily.__table__.c.id == family_id)
                .values(revoked_at=func.now())
            )
            request = asyncio.create_task(refresh(client, tokens.refresh_token))
            await wait_for_a_lock_wait(committing_sessionmaker)
            await rival.commit()
            response = await request
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED
    async with committing_sessionmaker() as session:
        stored = await session.scalar(select(func.count()).select_from(RefreshToken))
    # Nothing of the refresh was kept: no new token, and the old one is not marked used.
    assert stored == 1
    async with committing_sessionmaker() as session:
        used = await session.scalar(select(RefreshToken.__table__.c.used_at))
    assert used is None
