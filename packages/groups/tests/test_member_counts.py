"""`group_member_count` follows the memberships through every path that changes them: the API,
the cascades of a group's and an account's deletion, the successor trigger, bulk statements,
TRUNCATE, and concurrent requests. The listings' totals are read from it."""

import asyncio
import uuid

import httpx
from sqlalchemy import delete, insert, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import World, add_group, make_people

Counts = dict[tuple[int, str], int]

KEPT = text("SELECT group_id, role, member_count FROM group_member_count WHERE member_count <> 0")
COUNTED = text("SELECT group_id, role, count(*) FROM membership GROUP BY group_id, role")


async def kept_and_counted(connection: AsyncConnection) -> tuple[Counts, Counts]:
    kept = {(g, r): n for g, r, n in (await connection.execute(KEPT)).all()}
    counted = {(g, r): n for g, r, n in (await connection.execute(COUNTED)).all()}
    return kept, counted


async def assert_counts_follow(sessionmaker: async_sessionmaker[AsyncSession]) -> Counts:
    async with sessionmaker() as session:
        kept, counted = await kept_and_counted(await session.connection())
    assert kept == counted
    return kept


async def test_the_api_s_changes_are_counted(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    group = world.group_id
    before = await assert_counts_follow(db_sessionmaker)
    added = await client.post(
        f"/groups/{group}/members",
        json={"user_id": str(world.newcomer.id), "role": "admin"},
        headers=world.owner.headers,
    )
    assert added.status_code == 201, added.text
    promoted = await client.patch(
        f"/groups/{group}/members/{world.member.id}",
        json={"role": "owner"},
        headers=world.owner.headers,
    )
    assert promoted.status_code == 200, promoted.text
    removed = await client.delete(
        f"/groups/{group}/members/{world.peer_member.id}", headers=world.owner.headers
    )
    assert removed.status_code == 204, removed.text
    # A refused change counts nothing.
    again = await client.post(
        f"/groups/{group}/members",
        json={"user_id": str(world.newcomer.id), "role": "member"},
        headers=world.owner.headers,
    )
    assert again.status_code == 409

    after = await assert_counts_follow(db_sessionmaker)
    assert after[group, "admin"] == before[group, "admin"] + 1
    assert after[group, "owner"] == before[group, "owner"] + 1
    assert after.get((group, "member"), 0) == before[group, "member"] - 2

    listed = await client.get(f"/groups/{group}/members?limit=1", headers=world.member.headers)
    assert listed.json()["total"] == sum(n for (g, _), n in after.items() if g == group)
    admins = await client.get(
        f"/groups/{group}/members?limit=1&role=admin", headers=world.member.headers
    )
    assert admins.json()["total"] == after[group, "admin"]
    members = await client.get(
        f"/groups/{group}/members?limit=1&role=member", headers=world.member.headers
    )
    assert members.json()["total"] == 0


async def test_an_account_s_deletion_is_counted_in_each_of_its_groups(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # The owner owns a second group alone with a member: the successor trigger promotes there
    # too, and a third group that they own alone disappears.
    second = await add_group(
        db_sessionmaker,
        "Second",
        {world.owner.id: GroupRole.OWNER, world.member.id: GroupRole.MEMBER},
    )
    solo = await add_group(db_sessionmaker, "Solo", {world.owner.id: GroupRole.OWNER})
    await assert_counts_follow(db_sessionmaker)

    deleted = await client.delete(f"/users/{world.owner.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204, deleted.text

    after = await assert_counts_follow(db_sessionmaker)
    assert after[second, "owner"] == 1
    assert (second, "member") not in after
    assert not [key for key in after if key[0] == solo]


async def test_a_group_s_deletion_takes_its_counts(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    deleted = await client.delete(f"/groups/{world.group_id}", headers=world.owner.headers)
    assert deleted.status_code == 204, deleted.text
    async with db_sessionmaker() as session:
        left = await session.execute(
            text("SELECT count(*) FROM group_member_count WHERE group_id = :id"),
            {"id": world.group_id},
        )
    assert left.scalar_one() == 0
    await assert_counts_follow(db_sessionmaker)


async def test_bulk_statements_and_truncate_are_counted(
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
) -> None:
    people = await make_people(auth, db_sessionmaker, "a", "b", "c")
    ids = [person.id for person in people.values()]
    groups = (
        await db_connection.execute(
            insert(UserGroup).returning(col(UserGroup.id)),
            [{"name": f"Bulk {n}"} for n in range(3)],
        )
    ).scalars()
    group_ids = [group_id for group_id in groups if group_id is not None]
    assert len(group_ids) == 3
    # One statement, nine memberships in three groups.
    await db_connection.execute(
        insert(Membership),
        [
            {"group_id": group_id, "user_id": user_id, "role": GroupRole.MEMBER}
            for group_id in group_ids
            for user_id in ids
        ],
    )
    kept, counted = await kept_and_counted(db_connection)
    assert kept == counted
    assert {kept[group_id, "member"] for group_id in group_ids} == {3}

    # One statement changes roles across groups; another deletes across groups.
    await db_connection.execute(
        update(Membership).where(col(Membership.user_id) == ids[0]).values(role=GroupRole.OWNER)
    )
    await db_connection.execute(
        delete(Membership).where(
            col(Membership.user_id).in_(ids[1:]), col(Membership.group_id) != group_ids[0]
        )
    )
    kept, counted = await kept_and_counted(db_connection)
    assert kept == counted
    assert kept[group_ids[0], "member"] == 2

    await db_connection.execute(text("TRUNCATE membership"))
    assert await kept_and_counted(db_connection) == ({}, {})


async def test_concurrent_adds_and_removes_are_all_counted(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    labels = ["owner"] + [f"joiner{n}" for n in range(8)]
    people = await make_people(auth, committing_sessionmaker, *labels)
    owner = people["owner"]
    group = await add_group(committing_sessionmaker, "Busy", {owner.id: GroupRole.OWNER})
    joiners: list[uuid.UUID] = [people[label].id for label in labels[1:]]

    async def add(user_id: uuid.UUID) -> int:
        response = await committing_client.post(
            f"/groups/{group}/members",
            json={"user_id": str(user_id), "role": "member"},
            headers=owner.headers,
        )
        return response.status_code

    async def remove(user_id: uuid.UUID) -> int:
        response = await committing_client.delete(
            f"/groups/{group}/members/{user_id}", headers=owner.headers
        )
        return response.status_code

    assert set(await asyncio.gather(*(add(user_id) for user_id in joiners))) == {201}
    assert set(await asyncio.gather(*(remove(user_id) for user_id in joiners[:5]))) == {204}
    kept = await assert_counts_follow(committing_sessionmaker)
    assert kept[group, "member"] == 3
    assert kept[group, "owner"] == 1
