"""Deleting an account through roster-auth's own route (FastAPI Users' `DELETE /users/{id}`):
its memberships go (ON DELETE CASCADE), and every group it owned alone keeps an owner."""

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import World, add_group, roles, spread_joined_at


async def test_the_longest_standing_admin_inherits_a_deleted_owners_group(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # The peer admin joined before the admin; a plain member before both.
    order = [world.owner, world.member, world.peer_admin, world.admin, world.peer_member]
    await spread_joined_at(db_sessionmaker, world.group_id, [p.id for p in order])

    deleted = await client.delete(f"/users/{world.owner.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204, deleted.text

    assert await roles(db_sessionmaker, world.group_id) == {
        world.member.id: GroupRole.MEMBER,
        world.peer_admin.id: GroupRole.OWNER,
        world.admin.id: GroupRole.ADMIN,
        world.peer_member.id: GroupRole.MEMBER,
    }
    seen_by_heir = await client.get(f"/groups/{world.group_id}", headers=world.peer_admin.headers)
    assert seen_by_heir.json()["role"] == "owner"
    # The heir can now do what owners do.
    renamed = await client.patch(
        f"/groups/{world.group_id}", json={"name": "Crew II"}, headers=world.peer_admin.headers
    )
    assert renamed.status_code == 200


async def test_a_deleted_users_memberships_all_go(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_group(
        db_sessionmaker,
        "Second",
        {world.owner.id: GroupRole.OWNER, world.member.id: GroupRole.ADMIN},
    )
    deleted = await client.delete(f"/users/{world.member.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204
    async with db_sessionmaker() as session:
        left = await session.exec(select(Membership).where(Membership.user_id == world.member.id))
        assert left.all() == []
    # Groups where they were not the last owner are otherwise untouched.
    assert (await roles(db_sessionmaker, world.group_id))[world.owner.id] is GroupRole.OWNER


async def test_a_group_whose_only_member_is_deleted_disappears(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    solo = await add_group(db_sessionmaker, "Solo", {world.outsider.id: GroupRole.OWNER})
    deleted = await client.delete(f"/users/{world.outsider.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204
    async with db_sessionmaker() as session:
        names = (await session.exec(select(UserGroup.name))).all()
    assert "Solo" not in names
    assert "Crew" in names
    gone = await client.get(f"/groups/{solo}", headers=world.superuser.headers)
    assert gone.status_code == 404
