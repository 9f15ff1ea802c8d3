"""Concurrent writes of the same email, on sessions that really commit: one account, and a
400 (never a 500) for the loser."""

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AuthConfig, User
from roster_auth.testing import DEFAULT_PASSWORD, bearer, create_user

Sessionmaker = async_sessionmaker[AsyncSession]


async def emails_in_database(sessionmaker: Sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(User.__table__.c.email))
        return sorted(rows)


async def wait_for_a_lock_wait(sessionmaker: Sessionmaker) -> None:
    """Until some backend waits on a lock (the request's insert behind our open one)."""
    async with sessionmaker() as session:
        for _ in range(500):
            waiting = await session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the request never waited on the open transaction")


async def test_concurrent_registrations_of_one_email_give_one_account(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
) -> None:
    pairs = [(f"Race{n}@example.org", f"race{n}@EXAMPLE.org") for n in range(4)]
    # Room in the hashing queue for all eight at once: the race is what is tested here.
    config = replace(auth_config, max_waiting_password_hashes=len(pairs) * 2)
    async with serve_with(config, committing_sessionmaker) as client:
        responses = await asyncio.gather(
            *(
                client.post("/auth/register", json={"email": email, "password": DEFAULT_PASSWORD})
                for pair in pairs
                for email in pair
            )
        )
    for first, second in zip(responses[::2], responses[1::2], strict=True):
        assert sorted((first.status_code, second.status_code)) == [201, 400]
        loser = first if first.status_code == 400 else second
        assert loser.json() == {"detail": "REGISTER_USER_ALREADY_EXISTS"}
    stored = await emails_in_database(committing_sessionmaker)
    assert sorted(email.lower() for email in stored) == [f"race{n}@example.org" for n in range(4)]


async def test_a_registration_that_loses_at_the_unique_index_is_400(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
) -> None:
    """Forces the interleaving the gather above only makes likely: the request's look-up
    sees no user, and its insert then collides with one committed meanwhile."""
    async with (
        serve_with(auth_config, committing_sessionmaker) as client,
        committing_sessionmaker() as rival,
    ):
        rival.add(User(email="ZOE@example.org", hashed_password="x"))
        await rival.flush()  # the row exists, uncommitted: invisible to the request
        request = asyncio.create_task(
            client.post(
                "/auth/register", json={"email": "zoe@example.org", "password": DEFAULT_PASSWORD}
            )
        )
        await wait_for_a_lock_wait(committing_sessionmaker)
        await rival.commit()
        response = await request
    assert response.status_code == 400
    assert response.json() == {"detail": "REGISTER_USER_ALREADY_EXISTS"}
    assert await emails_in_database(committing_sessionmaker) == ["ZOE@example.org"]


async def test_an_email_change_that_loses_at_the_unique_index_is_400(
    serve_with: Callable[..., Any],
    auth_config: AuthConfig,
    committing_sessionmaker: Sessionmaker,
) -> None:
    async with committing_sessionmaker() as session:
        await create_user(session, email="amy@example.org")
    async with (
        serve_with(auth_config, committing_sessionmaker) as client,
        committing_sessionmaker() as rival,
    ):
        login = await client.post(
            "/auth/jwt/login", data={"username": "amy@example.org", "password": DEFAULT_PASSWORD}
        )
        headers = bearer(login.json()["access_token"])
        rival.add(User(email="new@example.org", hashed_password="x"))
        await rival.flush()
        request = asyncio.create_task(
            client.patch(
                "/users/me",
                headers=headers,
                json={
                    "email": "NEW@example.org",
                    "display_name": "Amy",
                    "current_password": DEFAULT_PASSWORD,
                },
            )
        )
        await wait_for_a_lock_wait(committing_sessionmaker)
        await rival.commit()
        response = await request
        assert response.status_code == 400
        assert response.json() == {"detail": "UPDATE_USER_EMAIL_ALREADY_EXISTS"}
        me = await client.get("/users/me", headers=headers)
        # Nothing of the refused update was kept.
        assert (me.json()["email"], me.json()["display_name"]) == ("amy@example.org", None)
    async with committing_sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(User))
    assert count == 2
