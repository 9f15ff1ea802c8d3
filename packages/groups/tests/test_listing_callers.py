"""The listings of a group read their caller in their own statement (roster-auth's CALLER), not
through the current-user dependency: they must refuse exactly whom that dependency refuses, and
take the cookie before the bearer token as it does."""

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AccessToken, RosterAuth, User, token_digest
from roster_auth.testing import bearer_headers
from roster_groups.models import GroupRole

from .conftest import add_group, make_people

LISTINGS = ("/groups/{id}/members", "/user-groups/{id}/users")


async def stored_token(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID, age: timedelta
) -> str:
    """A cookie's database token for the user, created `age` ago."""
    token = secrets.token_urlsafe(32)
    async with sessionmaker() as session:
        await session.execute(
            insert(AccessToken).values(
                token=token_digest(token), user_id=user_id, created_at=datetime.now(UTC) - age
            )
        )
        await session.commit()
    return token


def cookie(auth: RosterAuth, token: str) -> dict[str, str]:
    return {"Cookie": f"{auth.config.cookie_name}={token}"}


@pytest.fixture
def lifetime(auth: RosterAuth) -> timedelta:
    return timedelta(seconds=auth.config.cookie_token_lifetime_seconds)


@pytest.mark.parametrize("path", LISTINGS)
async def test_the_listings_refuse_whom_the_current_user_refuses(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    lifetime: timedelta,
    path: str,
) -> None:
    people = await make_people(auth, db_sessionmaker, "member", "dormant", inactive={"dormant"})
    member, dormant = people["member"], people["dormant"]
    group_id = await add_group(
        db_sessionmaker, "Listed", {member.id: GroupRole.OWNER, dormant.id: GroupRole.MEMBER}
    )
    url = path.format(id=group_id)
    stale = await stored_token(db_sessionmaker, member.id, lifetime + timedelta(minutes=1))
    ghost = User(id=uuid.uuid4(), email="ghost@example.com", hashed_password="!")
    refused = {
        "no credentials": {},
        "an inactive member's JWT": dormant.headers,
        "an inactive member's cookie": cookie(
            auth, await stored_token(db_sessionmaker, dormant.id, timedelta(0))
        ),
        "a cookie past its lifetime": cookie(auth, stale),
        "an unknown cookie": cookie(auth, "not-a-stored-token"),
        "a JWT for no user": await bearer_headers(auth, ghost),
        "a JWT that is no JWT": {"Authorization": "Bearer not.a.jwt"},
    }
    for label, headers in refused.items():
        response = await client.get(url, headers=headers)
        assert response.status_code == 401, label
        assert response.json() == {"detail": "Unauthorized"}, label

    fresh = await stored_token(db_sessionmaker, member.id, lifetime - timedelta(minutes=1))
    assert (await client.get(url, headers=cookie(auth, fresh))).status_code == 200
    assert (await client.get(url, headers=member.headers)).status_code == 200


@pytest.mark.parametrize("path", LISTINGS)
async def test_the_cookie_counts_before_the_bearer_token(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    path: str,
) -> None:
    people = await make_people(auth, db_sessionmaker, "member", "outsider")
    member, outsider = people["member"], people["outsider"]
    group_id = await add_group(db_sessionmaker, "Cookies first", {member.id: GroupRole.OWNER})
    url = path.format(id=group_id)
    member_cookie = cookie(auth, await stored_token(db_sessionmaker, member.id, timedelta(0)))
    outsider_cookie = cookie(auth, await stored_token(db_sessionmaker, outsider.id, timedelta(0)))

    # The outsider's cookie wins over the member's JWT: not a member, so "not found".
    both = await client.get(url, headers={**outsider_cookie, **member.headers})
    assert both.status_code == 404, both.text
    # The member's cookie wins over the outsider's JWT.
    both = await client.get(url, headers={**member_cookie, **outsider.headers})
    assert both.status_code == 200, both.text
    # A cookie that is no stored token gives way to a valid JWT.
    fallback = await client.get(url, headers={**cookie(auth, "unknown"), **member.headers})
    assert fallback.status_code == 200, fallback.text


@pytest.mark.parametrize("path", LISTINGS)
async def test_a_deactivation_counts_from_the_next_listing_on(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    path: str,
) -> None:
    member = (await make_people(auth, db_sessionmaker, "member"))["member"]
    group_id = await add_group(db_sessionmaker, "Then gone", {member.id: GroupRole.OWNER})
    url = path.format(id=group_id)
    assert (await client.get(url, headers=member.headers)).status_code == 200
    async with db_sessionmaker() as session:
        await session.execute(update(User).where(col(User.id) == member.id).values(is_active=False))
        await session.commit()
    assert (await client.get(url, headers=member.headers)).status_code == 401
