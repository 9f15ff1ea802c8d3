"""Memberships through the API: listing, adding, changing roles, removing, and the rule that a
group always keeps an owner."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import update
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_groups.models import GroupRole, Membership

from .conftest import World, roles, spread_joined_at


async def test_members_are_listed_longest_standing_first_with_their_details(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order = [world.member, world.owner, world.peer_member, world.admin, world.peer_admin]
    await spread_joined_at(db_sessionmaker, world.group_id, [p.id for p in order])

    response = await client.get(f"/groups/{world.group_id}/members", headers=world.member.headers)
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 50, 0)
    assert [item["user_id"] for item in page["items"]] == [str(p.id) for p in order]
    # Every row carries its own user's account, not a neighbour's.
    assert [(item["email"], item["display_name"]) for item in page["items"]] == [
        (p.user.email, p.user.display_name) for p in order
    ]
    first = page["items"][0]
    assert first == {
        "user_id": str(world.member.id),
        "email": world.member.user.email,
        "display_name": "Member",
        "role": "member",
        "joined_at": "2024-01-01T00:00:00Z",
    }

    admins = await client.get(
        f"/groups/{world.group_id}/members?role=admin&limit=1&offset=1",
        headers=world.owner.headers,
    )
    assert admins.json()["total"] == 2
    assert [item["user_id"] for item in admins.json()["items"]] == [str(world.peer_admin.id)]


async def test_members_with_the_same_joining_time_keep_a_stable_order(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Written in one transaction, every membership has the same joined_at: ties are broken by
    # user id, so consecutive pages neither repeat nor skip anyone.
    same_time = datetime(2024, 6, 1, tzinfo=UTC)
    async with db_sessionmaker() as session:
        await session.exec(update(Membership).values(joined_at=same_time))
        await session.commit()
    seen: list[str] = []
    for offset in range(5):
        response = await client.get(
            f"/groups/{world.group_id}/members?limit=1&offset={offset}",
            headers=world.owner.headers,
        )
        seen += [item["user_id"] for item in response.json()["items"]]
    assert seen == sorted(seen)
    assert len(set(seen)) == 5


@pytest.mark.parametrize(
    "query",
    ["role=king", "role=", "limit=0", "limit=101", "limit=-1", "offset=-1", "limit=ten"],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient, world: World, query: str
) -> None:
    response = await client.get(
        f"/groups/{world.group_id}/members?{query}", headers=world.owner.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


async def test_an_owner_adds_a_member_with_a_role(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(world.newcomer.id), "role": "admin"},
        headers=world.owner.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == str(world.newcomer.id)
    assert body["email"] == world.newcomer.user.email
    assert body["role"] == "admin"

    # The role defaults to member.
    response = await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(world.outsider.id)},
        headers=world.admin.headers,
    )
    assert response.json()["role"] == "member"
    # The new member now sees the group.
    mine = await client.get("/users/me/groups", headers=world.outsider.headers)
    assert [(g["name"], g["role"]) for g in mine.json()["items"]] == [("Crew", "member")]


async def test_adding_someone_twice_is_a_conflict(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    before = await roles(db_sessionmaker, world.group_id)
    response = await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(world.member.id), "role": "admin"},
        headers=world.owner.headers,
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "MEMBERSHIP_ALREADY_EXISTS"}
    assert await roles(db_sessionmaker, world.group_id) == before


async def test_adding_an_unknown_user_is_404(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(uuid.uuid4())},
        headers=world.owner.headers,
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "USER_NOT_FOUND"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": "not-a-uuid"},
        {"user_id": 7},
        {"user_id": "00000000-0000-0000-0000-000000000000", "role": "king"},
        {"user_id": "00000000-0000-0000-0000-000000000000", "role": None},
        {"user_id": "00000000-0000-0000-0000-000000000000", "admin": True},
    ],
)
async def test_bad_membership_input_is_422(
    client: httpx.AsyncClient, world: World, body: dict[str, object]
) -> None:
    response = await client.post(
        f"/groups/{world.group_id}/members", json=body, headers=world.owner.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_malformed_member_id_is_422(
    client: httpx.AsyncClient, world: World, method: str
) -> None:
    response = await client.request(
        method,
        f"/groups/{world.group_id}/members/42",
        json={"role": "admin"},
        headers=world.owner.headers,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_changing_someone_who_is_not_a_member_is_404(
    client: httpx.AsyncClient, world: World, method: str
) -> None:
    for user_id in (world.outsider.id, uuid.uuid4()):
        response = await client.request(
            method,
            f"/groups/{world.group_id}/members/{user_id}",
            json={"role": "admin"},
            headers=world.owner.headers,
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "MEMBER_NOT_FOUND"}


async def test_an_owner_changes_roles(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    path = f"/groups/{world.group_id}/members/{world.member.id}"
    promoted = await client.patch(path, json={"role": "owner"}, headers=world.owner.headers)
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "owner"
    # With a second owner, the first may step down.
    stepped_down = await client.patch(
        f"/groups/{world.group_id}/members/{world.owner.id}",
        json={"role": "member"},
        headers=world.owner.headers,
    )
    assert stepped_down.status_code == 200
    current = await roles(db_sessionmaker, world.group_id)
    assert current[world.member.id] is GroupRole.OWNER
    assert current[world.owner.id] is GroupRole.MEMBER
    # And now they are a plain member, they can no longer change roles.
    refused = await client.patch(path, json={"role": "member"}, headers=world.owner.headers)
    assert refused.status_code == 403


async def test_the_last_owner_cannot_be_demoted(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for actor in (world.owner, world.superuser):
        response = await client.patch(
            f"/groups/{world.group_id}/members/{world.owner.id}",
            json={"role": "admin"},
            headers=actor.headers,
        )
        assert response.status_code == 409
        assert response.json() == {"detail": "LAST_OWNER"}
    assert (await roles(db_sessionmaker, world.group_id))[world.owner.id] is GroupRole.OWNER
    # Confirming the role is not a demotion.
    same = await client.patch(
        f"/groups/{world.group_id}/members/{world.owner.id}",
        json={"role": "owner"},
        headers=world.owner.headers,
    )
    assert same.status_code == 200


async def test_the_last_owner_cannot_be_removed_nor_leave(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    path = f"/groups/{world.group_id}/members/{world.owner.id}"
    for actor in (world.owner, world.superuser):
        response = await client.delete(path, headers=actor.headers)
        assert response.status_code == 409
        assert response.json() == {"detail": "LAST_OWNER"}
    assert world.owner.id in await roles(db_sessionmaker, world.group_id)


async def test_an_owner_may_leave_when_another_owner_remains(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await client.patch(
        f"/groups/{world.group_id}/members/{world.admin.id}",
        json={"role": "owner"},
        headers=world.owner.headers,
    )
    left = await client.delete(
        f"/groups/{world.group_id}/members/{world.owner.id}", headers=world.owner.headers
    )
    assert left.status_code == 204
    current = await roles(db_sessionmaker, world.group_id)
    assert world.owner.id not in current
    assert current[world.admin.id] is GroupRole.OWNER
    # The one who left no longer sees the group.
    gone = await client.get(f"/groups/{world.group_id}", headers=world.owner.headers)
    assert gone.status_code == 404
    # The remaining owner is now the last one.
    last = await client.delete(
        f"/groups/{world.group_id}/members/{world.admin.id}", headers=world.admin.headers
    )
    assert last.status_code == 409


async def test_an_owner_removes_another_owner(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(world.newcomer.id), "role": "owner"},
        headers=world.owner.headers,
    )
    # An admin may not remove an owner...
    refused = await client.delete(
        f"/groups/{world.group_id}/members/{world.newcomer.id}", headers=world.admin.headers
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": "INSUFFICIENT_GROUP_ROLE"}
    # ...an owner may.
    removed = await client.delete(
        f"/groups/{world.group_id}/members/{world.newcomer.id}", headers=world.owner.headers
    )
    assert removed.status_code == 204
    assert world.newcomer.id not in await roles(db_sessionmaker, world.group_id)
