"""`GET /user-groups/{group_id}/users`, the original example's endpoint: a bare JSON array of
users (the `/users/me` schema), now authenticated and paginated with an RFC 8288 `Link`."""

import re
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import update
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups.models import GroupRole, Membership

from .conftest import World, add_group, make_people


def links(response: httpx.Response) -> dict[str, str]:
    """rel -> URL, from a `Link` header."""
    header = response.headers.get("Link")
    if header is None:
        return {}
    return {rel: url for url, rel in re.findall(r'<([^>]*)>;\s*rel="([^"]*)"', header)}


async def big_group(
    auth: RosterAuth, sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> tuple[int, list[str]]:
    """A group of `size` members; their ids in the order the endpoint lists them."""
    people = await make_people(auth, sessionmaker, *(f"m{i:03}" for i in range(size)))
    roles = {person.id: GroupRole.MEMBER for person in people.values()}
    roles[people["m000"].id] = GroupRole.OWNER
    group_id = await add_group(sessionmaker, "Big", roles)
    # All joined at the same moment: the order is then by user id.
    async with sessionmaker() as session:
        await session.exec(
            update(Membership)
            .where(Membership.group_id == group_id)  # type: ignore[arg-type]
            .values(joined_at=datetime(2024, 1, 1, tzinfo=UTC))
        )
        await session.commit()
    return group_id, sorted(str(person.id) for person in people.values())


async def test_users_come_as_a_bare_array_with_the_users_me_schema(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get(
        f"/user-groups/{world.group_id}/users", headers=world.member.headers
    )
    assert response.status_code == 200
    users = response.json()
    assert isinstance(users, list)
    assert response.headers["X-Total-Count"] == "5"
    assert "Link" not in response.headers
    me = (await client.get("/users/me", headers=world.member.headers)).json()
    assert me in users
    assert all(set(user) == set(me) for user in users)
    assert {user["email"] for user in users} == {
        p.user.email
        for p in (world.owner, world.admin, world.member, world.peer_admin, world.peer_member)
    }


async def test_pages_follow_the_link_header_to_the_end(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    group_id, expected = await big_group(auth, db_sessionmaker, 7)
    owner_headers = (await make_people(auth, db_sessionmaker, "reader", superusers={"reader"}))[
        "reader"
    ].headers

    url: str | None = f"/user-groups/{group_id}/users?limit=3"
    seen: list[str] = []
    pages = 0
    while url is not None:
        response = await client.get(url, headers=owner_headers)
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == "7"
        seen += [user["id"] for user in response.json()]
        pages += 1
        url = links(response).get("next")
    assert pages == 3
    assert seen == expected

    first = await client.get(f"/user-groups/{group_id}/users?limit=3", headers=owner_headers)
    assert links(first) == {
        "next": f"http://roster.test/user-groups/{group_id}/users?limit=3&offset=3"
    }
    middle = await client.get(
        f"/user-groups/{group_id}/users?limit=3&offset=3", headers=owner_headers
    )
    assert links(middle) == {
        "next": f"http://roster.test/user-groups/{group_id}/users?limit=3&offset=6",
        "prev": f"http://roster.test/user-groups/{group_id}/users?limit=3&offset=0",
    }
    past_the_end = await client.get(
        f"/user-groups/{group_id}/users?offset=100", headers=owner_headers
    )
    assert past_the_end.json() == []
    assert "next" not in links(past_the_end)


async def test_the_default_page_is_50_and_the_maximum_100(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    group_id, expected = await big_group(auth, db_sessionmaker, 101)
    reader = (await make_people(auth, db_sessionmaker, "su", superusers={"su"}))["su"]

    default = await client.get(f"/user-groups/{group_id}/users", headers=reader.headers)
    assert [user["id"] for user in default.json()] == expected[:50]
    assert links(default)["next"].endswith("?limit=50&offset=50")

    largest = await client.get(f"/user-groups/{group_id}/users?limit=100", headers=reader.headers)
    assert len(largest.json()) == 100
    assert links(largest)["next"].endswith("?limit=100&offset=100")

    too_large = await client.get(f"/user-groups/{group_id}/users?limit=101", headers=reader.headers)
    assert too_large.status_code == 422
    assert too_large.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
        # Past Postgres' BIGINT, where OFFSET would fail in the database.
        (f"offset={2**63}", "offset"),
        (f"offset={10**30}", "offset"),
    ],
)
async def test_bad_page_parameters_are_422(
    client: httpx.AsyncClient, world: World, query: str, field: str
) -> None:
    response = await client.get(
        f"/user-groups/{world.group_id}/users?{query}", headers=world.owner.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_an_unknown_group_is_404_not_an_empty_list(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.get(
        f"/user-groups/{world.group_id + 1000}/users", headers=world.superuser.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "GROUP_NOT_FOUND"}
    # Nor is a group someone does not belong to an empty list.
    other = await add_group(db_sessionmaker, "Other", {world.owner.id: GroupRole.OWNER})
    hidden = await client.get(f"/user-groups/{other}/users", headers=world.member.headers)
    assert hidden.status_code == 404


async def test_anonymous_callers_are_refused(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get(f"/user-groups/{world.group_id}/users")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "path",
    ["/user-groups/{id}/users", "/groups/{id}/members", "/groups", "/groups?all=true"],
)
async def test_the_largest_offset_is_an_empty_page_and_one_more_is_422(
    client: httpx.AsyncClient, world: World, path: str
) -> None:
    url = path.format(id=world.group_id)
    separator = "&" if "?" in url else "?"
    largest = await client.get(
        f"{url}{separator}offset={2**63 - 1}", headers=world.superuser.headers
    )
    assert largest.status_code == 200
    body = largest.json()
    assert (body if isinstance(body, list) else body["items"]) == []
    beyond = await client.get(f"{url}{separator}offset={2**63}", headers=world.superuser.headers)
    assert beyond.status_code == 422
