"""Groups through the API: creating, reading, renaming, deleting, listing; and what bad input
gets back."""

from datetime import datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import World, add_group, make_people


async def test_creating_a_group_makes_the_caller_its_owner(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post(
        "/groups",
        json={"name": "  Night Shift \t", "description": "Who works late"},
        headers=world.outsider.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Night Shift"
    assert body["description"] == "Who works late"
    assert body["role"] == "owner"
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert response.headers["Location"] == f"/groups/{body['id']}"

    async with db_sessionmaker() as session:
        memberships = (
            await session.exec(select(Membership).where(Membership.group_id == body["id"]))
        ).all()
    assert [(m.user_id, m.role) for m in memberships] == [(world.outsider.id, GroupRole.OWNER)]

    fetched = await client.get(f"/groups/{body['id']}", headers=world.outsider.headers)
    assert fetched.json() == body


@pytest.mark.parametrize("name", ["Crew", "crew", "CREW", "  cReW  "])
async def test_group_names_are_unique_ignoring_case(
    client: httpx.AsyncClient, world: World, name: str
) -> None:
    response = await client.post("/groups", json={"name": name}, headers=world.member.headers)
    assert response.status_code == 409
    assert response.json() == {"detail": "GROUP_NAME_ALREADY_EXISTS"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
        ({"name": None}, "name"),
        ({"name": "nul\x00byte"}, "name"),
        ({"name": "line\nbreak"}, "name"),
        ({"name": "ok", "description": "d" * 1001}, "description"),
        ({"name": "ok", "description": "nul\x00byte"}, "description"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_bad_group_input_is_a_clear_422(
    client: httpx.AsyncClient,
    world: World,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, object],
    field: str,
) -> None:
    response = await client.post("/groups", json=body, headers=world.owner.headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][:2] == ["body", field]
    async with db_sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(UserGroup))).one() == 1


async def test_a_name_of_exactly_100_characters_and_a_multiline_description_are_fine(
    client: httpx.AsyncClient, world: World
) -> None:
    name = "é" * 100
    response = await client.post(
        "/groups",
        json={"name": name, "description": "line one\nline two\ttabbed"},
        headers=world.owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


async def test_renaming_and_describing(client: httpx.AsyncClient, world: World) -> None:
    path = f"/groups/{world.group_id}"
    renamed = await client.patch(path, json={"name": " Deck Crew "}, headers=world.admin.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Deck Crew"
    assert renamed.json()["role"] == "admin"

    described = await client.patch(
        path, json={"description": "All hands"}, headers=world.owner.headers
    )
    assert described.json()["name"] == "Deck Crew"
    assert described.json()["description"] == "All hands"

    unchanged = await client.patch(path, json={}, headers=world.owner.headers)
    assert unchanged.json() == described.json()

    cleared = await client.patch(path, json={"description": None}, headers=world.owner.headers)
    assert cleared.json()["description"] is None

    # A group may take another spelling of its own name.
    recased = await client.patch(path, json={"name": "DECK CREW"}, headers=world.owner.headers)
    assert recased.json()["name"] == "DECK CREW"


async def test_renaming_onto_another_groups_name_is_a_conflict(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_group(db_sessionmaker, "Bridge", {world.owner.id: GroupRole.OWNER})
    response = await client.patch(
        f"/groups/{world.group_id}", json={"name": "bridge"}, headers=world.owner.headers
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "GROUP_NAME_ALREADY_EXISTS"}
    fetched = await client.get(f"/groups/{world.group_id}", headers=world.owner.headers)
    assert fetched.json()["name"] == "Crew"


@pytest.mark.parametrize(
    "body", [{"name": None}, {"name": ""}, {"name": "x" * 101}, {"owner": "me"}]
)
async def test_bad_updates_are_422(
    client: httpx.AsyncClient, world: World, body: dict[str, object]
) -> None:
    response = await client.patch(
        f"/groups/{world.group_id}", json=body, headers=world.owner.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"]


async def test_deleting_a_group_deletes_its_memberships_and_keeps_the_users(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.delete(f"/groups/{world.group_id}", headers=world.owner.headers)
    assert response.status_code == 204
    assert response.content == b""
    async with db_sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(Membership))).one() == 0
    assert (await client.get(f"/groups/{world.group_id}", headers=world.owner.headers)).json() == {
        "detail": "GROUP_NOT_FOUND"
    }
    assert (await client.get("/users/me", headers=world.member.headers)).status_code == 200


@pytest.mark.parametrize("group_id", ["0", "-1", "abc", "1.5", str(2**31), str(10**30)])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_malformed_group_ids_are_422(
    client: httpx.AsyncClient, world: World, group_id: str, method: str
) -> None:
    response = await client.request(
        method, f"/groups/{group_id}", json={}, headers=world.superuser.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "group_id"]


async def test_an_unknown_group_is_404_even_for_a_superuser(
    client: httpx.AsyncClient, world: World
) -> None:
    for path in (f"/groups/{2**31 - 1}", f"/groups/{world.group_id + 1000}/members"):
        response = await client.get(path, headers=world.superuser.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "GROUP_NOT_FOUND"}


async def test_an_inactive_user_is_refused(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, db_sessionmaker, "dormant", inactive={"dormant"})
    response = await client.post("/groups", json={"name": "X"}, headers=people["dormant"].headers)
    assert response.status_code == 401


async def test_listing_my_groups_with_my_role_by_name(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    me = world.member.id
    await add_group(db_sessionmaker, "alpha", {me: GroupRole.ADMIN})
    await add_group(db_sessionmaker, "Zulu", {me: GroupRole.OWNER})
    await add_group(db_sessionmaker, "Not mine", {world.owner.id: GroupRole.OWNER})

    for path in ("/groups", "/users/me/groups"):
        response = await client.get(path, headers=world.member.headers)
        assert response.status_code == 200
        page = response.json()
        assert [(g["name"], g["role"]) for g in page["items"]] == [
            ("alpha", "admin"),
            ("Crew", "member"),
            ("Zulu", "owner"),
        ]
        assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)

    second = await client.get("/groups?limit=2&offset=2", headers=world.member.headers)
    assert [g["name"] for g in second.json()["items"]] == ["Zulu"]
    assert second.json()["total"] == 3


async def test_superusers_list_every_group(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_group(db_sessionmaker, "Admins", {world.superuser.id: GroupRole.MEMBER})
    response = await client.get("/groups?all=true", headers=world.superuser.headers)
    page = response.json()
    assert [(g["name"], g["role"]) for g in page["items"]] == [
        ("Admins", "member"),
        ("Crew", None),
    ]
    assert page["total"] == 2
    # Without ?all, a superuser sees their own groups like anyone else.
    own = await client.get("/groups", headers=world.superuser.headers)
    assert [g["name"] for g in own.json()["items"]] == ["Admins"]
