"""Adding and removing a member read their caller, the caller's role and the group's locks in
one statement (roster-auth's CALLER, see `service.MEMBERSHIP_WRITE_ACCESS`), not through the
current-user dependency: they must refuse exactly whom that dependency refuses, take the
cookie before the bearer token as it does, and keep the locking rules of every other write."""

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth, User
from roster_auth.testing import bearer_headers
from roster_db.audit import AUDIT_EVENTS, AuditAction
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import Person, add_group, make_people, roles, until_waiting_for_locks
from .test_listing_callers import cookie, stored_token

WAIT_LIMIT_SECONDS = 5.0


def add(group_id: int, person: Person, role: str = "member") -> tuple[str, str, object]:
    return "POST", f"/groups/{group_id}/members", {"user_id": str(person.id), "role": role}


def remove(group_id: int, person: Person) -> tuple[str, str, object]:
    return "DELETE", f"/groups/{group_id}/members/{person.id}", None


async def send(
    client: httpx.AsyncClient, request: tuple[str, str, object], headers: dict[str, str]
) -> httpx.Response:
    method, url, body = request
    return await client.request(method, url, json=body, headers=headers)


@pytest.fixture
def lifetime(auth: RosterAuth) -> timedelta:
    return timedelta(seconds=auth.config.cookie_token_lifetime_seconds)


@pytest.mark.parametrize("write", ["add", "remove"])
async def test_member_writes_refuse_whom_the_current_user_refuses(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    lifetime: timedelta,
    write: str,
) -> None:
    people = await make_people(
        auth,
        db_sessionmaker,
        "owner",
        "dormant",
        "target",
        "root",
        inactive={"dormant", "root"},
        superusers={"root"},
    )
    owner, dormant, target = people["owner"], people["dormant"], people["target"]
    start = {owner.id: GroupRole.OWNER, dormant.id: GroupRole.OWNER}
    if write == "remove":
        start[target.id] = GroupRole.MEMBER
    group_id = await add_group(db_sessionmaker, "Guarded", start)
    request = add(group_id, target) if write == "add" else remove(group_id, target)
    stale = await stored_token(db_sessionmaker, owner.id, lifetime + timedelta(minutes=1))
    ghost = User(id=uuid.uuid4(), email="ghost@example.com", hashed_password="!")
    refused = {
        "no credentials": {},
        "an inactive owner's JWT": dormant.headers,
        "an inactive owner's cookie": cookie(
            auth, await stored_token(db_sessionmaker, dormant.id, timedelta(0))
        ),
        "an inactive superuser's JWT": people["root"].headers,
        "a cookie past its lifetime": cookie(auth, stale),
        "an unknown cookie": cookie(auth, "not-a-stored-token"),
        "a JWT for no user": await bearer_headers(auth, ghost),
        "a JWT that is no JWT": {"Authorization": "Bearer not.a.jwt"},
    }
    for label, headers in refused.items():
        response = await send(client, request, headers)
        assert response.status_code == 401, label
        assert response.json() == {"detail": "Unauthorized"}, label
    assert await roles(db_sessionmaker, group_id) == start

    fresh = await stored_token(db_sessionmaker, owner.id, lifetime - timedelta(minutes=1))
    response = await send(client, request, cookie(auth, fresh))
    assert response.status_code == (201 if write == "add" else 204), response.text
    async with db_sessionmaker() as session:
        actors = (await session.exec(select(AUDIT_EVENTS.actor_id))).all()
    assert actors == [owner.id]


async def test_member_writes_take_the_cookie_before_the_bearer_token(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, db_sessionmaker, "owner", "outsider", "target")
    owner, outsider, target = people["owner"], people["outsider"], people["target"]
    group_id = await add_group(db_sessionmaker, "Cookies first", {owner.id: GroupRole.OWNER})
    owner_cookie = cookie(auth, await stored_token(db_sessionmaker, owner.id, timedelta(0)))
    outsider_cookie = cookie(auth, await stored_token(db_sessionmaker, outsider.id, timedelta(0)))

    # The outsider's cookie wins over the owner's JWT: not a member, so "not found".
    for request in (add(group_id, target), remove(group_id, owner)):
        refused = await send(client, request, {**outsider_cookie, **owner.headers})
        assert refused.status_code == 404, refused.text
        assert refused.json() == {"detail": "GROUP_NOT_FOUND"}
    # The owner's cookie wins over the outsider's JWT.
    added = await send(client, add(group_id, target), {**owner_cookie, **outsider.headers})
    assert added.status_code == 201, added.text
    # A cookie that is no stored token gives way to a valid JWT.
    removed = await send(
        client, remove(group_id, target), {**cookie(auth, "unknown"), **owner.headers}
    )
    assert removed.status_code == 204, removed.text
    assert await roles(db_sessionmaker, group_id) == {owner.id: GroupRole.OWNER}


async def test_a_deactivation_counts_from_the_next_member_write_on(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, db_sessionmaker, "owner", "a", "b")
    owner = people["owner"]
    group_id = await add_group(db_sessionmaker, "Then gone", {owner.id: GroupRole.OWNER})
    added = await send(client, add(group_id, people["a"]), owner.headers)
    assert added.status_code == 201, added.text
    async with db_sessionmaker() as session:
        await session.execute(update(User).where(col(User.id) == owner.id).values(is_active=False))
        await session.commit()
    for request in (add(group_id, people["b"]), remove(group_id, people["a"])):
        response = await send(client, request, owner.headers)
        assert response.status_code == 401, response.text


async def test_a_superuser_who_is_no_member_adds_and_removes(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, db_sessionmaker, "owner", "root", "a", superusers={"root"})
    owner, root, a = people["owner"], people["root"], people["a"]
    group_id = await add_group(db_sessionmaker, "Overseen", {owner.id: GroupRole.OWNER})

    added = await send(client, add(group_id, a, "owner"), root.headers)
    assert added.status_code == 201, added.text
    assert added.json()["role"] == "owner"
    # The superuser removes anyone, an owner too; and is no member to remove.
    assert (await send(client, remove(group_id, a), root.headers)).status_code == 204
    missing = await send(client, remove(group_id, root), root.headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "MEMBER_NOT_FOUND"}
    # A group that does not exist is one for superusers too.
    for request in (add(group_id + 1000, a), remove(group_id + 1000, owner)):
        response = await send(client, request, root.headers)
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": "GROUP_NOT_FOUND"}
    async with db_sessionmaker() as session:
        events = (await session.exec(select(AUDIT_EVENTS.actor_id, AUDIT_EVENTS.action))).all()
    assert sorted(tuple(e) for e in events) == sorted(
        [(root.id, AuditAction.MEMBER_ADDED), (root.id, AuditAction.MEMBER_REMOVED)]
    )


async def test_a_superuser_who_is_a_plain_member_acts_as_a_superuser(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, db_sessionmaker, "owner", "root", "a", superusers={"root"})
    owner, root, a = people["owner"], people["root"], people["a"]
    group_id = await add_group(
        db_sessionmaker, "Mixed", {owner.id: GroupRole.OWNER, root.id: GroupRole.MEMBER}
    )
    added = await send(client, add(group_id, a, "owner"), root.headers)
    assert added.status_code == 201, added.text
    assert (await send(client, remove(group_id, owner), root.headers)).status_code == 204
    assert await roles(db_sessionmaker, group_id) == {
        root.id: GroupRole.MEMBER,
        a.id: GroupRole.OWNER,
    }


async def test_a_superuser_who_is_no_member_waits_for_the_groups_row_lock(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The superuser's lateral locks the group row: their write waits behind its holder."""
    people = await make_people(
        auth, committing_sessionmaker, "owner", "root", "joiner", superusers={"root"}
    )
    group_id = await add_group(
        committing_sessionmaker, "Held for root", {people["owner"].id: GroupRole.OWNER}
    )
    async with committing_sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        write = asyncio.ensure_future(
            send(committing_client, add(group_id, people["joiner"]), people["root"].headers)
        )
        try:
            await until_waiting_for_locks(committing_sessionmaker, 1)
            assert not write.done()
        finally:
            await holder.rollback()
    added = await asyncio.wait_for(write, timeout=WAIT_LIMIT_SECONDS)
    assert added.status_code == 201, added.text


async def test_an_add_that_waited_for_the_lock_sees_the_role_the_holder_left(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """An admin's add waits behind a holder of the group's lock that demotes them: once the
    demotion has committed, the add is refused (403) by the role the admin has now."""
    people = await make_people(auth, committing_sessionmaker, "owner", "admin", "joiner")
    admin = people["admin"]
    group_id = await add_group(
        committing_sessionmaker,
        "Demoted while adding",
        {people["owner"].id: GroupRole.OWNER, admin.id: GroupRole.ADMIN},
    )
    async with committing_sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        write = asyncio.ensure_future(
            send(committing_client, add(group_id, people["joiner"]), admin.headers)
        )
        try:
            await until_waiting_for_locks(committing_sessionmaker, 1)
            assert not write.done()
            demoted = await holder.exec(
                select(Membership).where(
                    Membership.group_id == group_id, Membership.user_id == admin.id
                )
            )
            demoted.one().role = GroupRole.MEMBER
            await holder.commit()
        finally:
            await holder.rollback()
    refused = await asyncio.wait_for(write, timeout=WAIT_LIMIT_SECONDS)
    assert refused.status_code == 403, refused.text
    assert refused.json() == {"detail": "INSUFFICIENT_GROUP_ROLE"}
    assert people["joiner"].id not in await roles(committing_sessionmaker, group_id)


async def test_a_removal_that_waited_for_the_lock_sees_the_caller_removed(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """An admin's removal waits behind a holder of the group's lock that removes the admin:
    once that has committed, the admin is no member, and the group is "not found"."""
    people = await make_people(auth, committing_sessionmaker, "owner", "admin", "member")
    admin, member = people["admin"], people["member"]
    group_id = await add_group(
        committing_sessionmaker,
        "Removed while removing",
        {
            people["owner"].id: GroupRole.OWNER,
            admin.id: GroupRole.ADMIN,
            member.id: GroupRole.MEMBER,
        },
    )
    async with committing_sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        write = asyncio.ensure_future(
            send(committing_client, remove(group_id, member), admin.headers)
        )
        try:
            await until_waiting_for_locks(committing_sessionmaker, 1)
            assert not write.done()
            gone = await holder.exec(
                select(Membership).where(
                    Membership.group_id == group_id, Membership.user_id == admin.id
                )
            )
            await holder.delete(gone.one())
            await holder.commit()
        finally:
            await holder.rollback()
    refused = await asyncio.wait_for(write, timeout=WAIT_LIMIT_SECONDS)
    assert refused.status_code == 404, refused.text
    assert refused.json() == {"detail": "GROUP_NOT_FOUND"}
    assert member.id in await roles(committing_sessionmaker, group_id)
