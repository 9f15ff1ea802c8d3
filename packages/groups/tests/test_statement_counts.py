"""Query discipline: a listing runs the same statements whatever the group size and page size
(no N+1), counted on the connection the requests use."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups.models import GroupRole

from .conftest import Executed, Person, add_group, make_people, recorded_statements


def about_groups(executed: list[Executed]) -> list[str]:
    """The statements of roster-groups (the rest authenticate the caller or are savepoints)."""
    return [
        e.statement for e in executed if "membership" in e.statement or "user_group" in e.statement
    ]


async def group_of(
    auth: RosterAuth, sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> tuple[int, Person]:
    people = await make_people(auth, sessionmaker, *(f"s{size}m{i}" for i in range(size)))
    owner = people[f"s{size}m0"]
    roles = {person.id: GroupRole.MEMBER for person in people.values()}
    roles[owner.id] = GroupRole.OWNER
    return await add_group(sessionmaker, f"Size {size}", roles), owner


def transaction_control(statement: str) -> bool:
    # The tests' sessions work in savepoints of the test's transaction.
    return statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))


async def count_request(
    client: httpx.AsyncClient, connection: AsyncConnection, url: str, person: Person
) -> tuple[int, int, int]:
    """(statements other than savepoints, roster-groups statements, items returned) for one
    request."""
    with recorded_statements(connection) as executed:
        response = await client.get(url, headers=person.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    items = body if isinstance(body, list) else body["items"]
    statements = [e for e in executed if not transaction_control(e.statement)]
    return len(statements), len(about_groups(executed)), len(items)


@pytest.mark.parametrize(
    ("path", "group_statements"),
    [
        # The caller's row, the access check, the count and the page in one statement.
        ("/groups/{id}/members", 1),
        ("/user-groups/{id}/users", 1),
    ],
)
async def test_listing_members_runs_a_fixed_number_of_statements(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    path: str,
    group_statements: int,
) -> None:
    small_id, small_owner = await group_of(auth, db_sessionmaker, 3)
    large_id, large_owner = await group_of(auth, db_sessionmaker, 60)

    small = await count_request(
        client, db_connection, path.format(id=small_id) + "?limit=5", small_owner
    )
    large = await count_request(
        client, db_connection, path.format(id=large_id) + "?limit=60", large_owner
    )
    assert (small[2], large[2]) == (3, 60)
    assert small[:2] == large[:2]
    assert small[1] == group_statements
    assert small[0] == group_statements


@pytest.mark.parametrize("path", ["/users/me/groups", "/groups"])
async def test_listing_a_users_groups_runs_a_fixed_number_of_statements(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    path: str,
) -> None:
    people = await make_people(auth, db_sessionmaker, "few", "many")
    for index in range(60):
        await add_group(
            db_sessionmaker,
            f"Group {index}",
            {people["many"].id: GroupRole.MEMBER}
            | ({people["few"].id: GroupRole.OWNER} if index < 3 else {}),
        )

    few = await count_request(client, db_connection, f"{path}?limit=5", people["few"])
    many = await count_request(client, db_connection, f"{path}?limit=60", people["many"])
    assert (few[2], many[2]) == (3, 60)
    assert few[:2] == many[:2]
    assert few[1] == 2  # count, page with groups joined
