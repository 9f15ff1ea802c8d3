"""Listings stay fast as a group grows: a page of members is a range of the
(group_id, joined_at, user_id) index, and only that page is joined to "user" (a deferred join),
so a deep page neither sorts the group nor reads every member's account; the total is read
from the group's counts, not counted."""

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth, User
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import (
    UNUSABLE_PASSWORD_HASH,
    Executed,
    World,
    make_people,
    recorded_statements,
)

GROUP_SIZE = 1000
PAGE = 50


async def large_group(connection: AsyncConnection) -> tuple[int, list[uuid.UUID]]:
    """A group of GROUP_SIZE members, three joining at each hour (ties are broken by user id);
    their ids in listing order."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    user_ids = [uuid.uuid4() for _ in range(GROUP_SIZE)]
    joined_at = {user_id: start + timedelta(hours=i // 3) for i, user_id in enumerate(user_ids)}
    await connection.execute(
        insert(User),
        [
            {
                "id": user_id,
                "email": f"deep-{user_id.hex}@example.com",
                "hashed_password": UNUSABLE_PASSWORD_HASH,
                "display_name": f"Deep {i}",
            }
            for i, user_id in enumerate(user_ids)
        ],
    )
    group_id = (
        await connection.execute(insert(UserGroup).values(name="Deep").returning(col(UserGroup.id)))
    ).scalar_one()
    assert group_id is not None
    await connection.execute(
        insert(Membership),
        [
            {"group_id": group_id, "user_id": user_id, "role": "member", "joined_at": joined}
            for user_id, joined in joined_at.items()
        ],
    )
    return group_id, sorted(user_ids, key=lambda user_id: (joined_at[user_id], user_id))


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


# The two ways Postgres plans a prepared statement: for its parameters' values, on every
# execution (its default), or once without them (as the service's reader runs the listings,
# roster_db.with_generic_plan). A listing's plan must be as good either way.
PLANS = ("custom", "generic")


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


async def page_plan(
    connection: AsyncConnection, executed: list[Executed], plan: str
) -> list[dict[str, Any]]:
    """The nodes of the page statement's plan, run again under EXPLAIN ANALYZE."""
    (page,) = [e for e in executed if "membership" in e.statement and "LIMIT" in e.statement]
    # Statistics, as autovacuum keeps them; and tables this small are cheaper to scan whole:
    # ruling that out shows what serves the order.
    await connection.execute(text('ANALYZE membership, "user"'))
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    if plan == "custom":
        explained = "EXPLAIN (ANALYZE, FORMAT JSON) " + page.statement
    else:
        await connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        await connection.exec_driver_sql("PREPARE listing AS " + page.statement)
        # EXECUTE takes no parameters of its own: each value as a literal of unknown type,
        # which takes the prepared statement's type for it.
        arguments = ", ".join(sql_literal(value) for value in page.parameters)
        explained = f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE listing({arguments})"
    try:
        plan_row = (
            await connection.exec_driver_sql(
                explained, tuple(page.parameters) if plan == "custom" else ()
            )
        ).scalar_one()
    finally:
        if plan == "generic":
            # Prepared statements outlive the test's transaction.
            await connection.exec_driver_sql("DEALLOCATE listing")
    nodes = json.loads(plan_row) if isinstance(plan_row, str) else plan_row
    return list(plan_nodes(nodes[0]["Plan"]))


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize(
    ("path", "id_key"),
    [("/groups/{id}/members", "user_id"), ("/user-groups/{id}/users", "id")],
)
async def test_a_deep_page_reads_its_own_rows_in_index_order(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    path: str,
    id_key: str,
    plan: str,
) -> None:
    group_id, in_order = await large_group(db_connection)
    reader = (await make_people(auth, db_sessionmaker, "reader", superusers={"reader"}))["reader"]
    offset = GROUP_SIZE - PAGE

    with recorded_statements(db_connection) as executed:
        response = await client.get(
            path.format(id=group_id) + f"?limit={PAGE}&offset={offset}", headers=reader.headers
        )
    assert response.status_code == 200, response.text
    body = response.json()
    items = body if isinstance(body, list) else body["items"]
    assert [item[id_key] for item in items] == [str(user_id) for user_id in in_order[offset:]]

    nodes = await page_plan(db_connection, executed, plan)

    # One statement reads the caller, checks access, counts and pages: the only sort is of
    # the page's own rows (its final ORDER BY), never of the group.
    assert [n["Actual Rows"] for n in nodes if "Sort" in n["Node Type"]] in ([], [PAGE])
    # The page is a range of the index, read without the table.
    page_scans = [
        n
        for n in nodes
        if n.get("Relation Name") == "membership" and n["Node Type"] == "Index Only Scan"
    ]
    assert [n["Index Name"] for n in page_scans] == ["ix_membership_group_id_joined_at"]
    assert [n["Node Type"] for n in nodes if n.get("Relation Name") == "membership"].count(
        "Seq Scan"
    ) == 0
    # The total is the group's counts per role (roster_groups.models.GroupMemberCount), not a
    # count of its memberships: the only memberships read are the page's walk through the
    # index (the offset and the page) and the caller's own.
    count_reads = [n for n in nodes if n.get("Relation Name") == "group_member_count"]
    assert count_reads
    assert all(n["Actual Rows"] <= len(GroupRole) for n in count_reads)
    membership_rows_read = sum(
        n["Actual Rows"] * n["Actual Loops"]
        for n in nodes
        if n.get("Relation Name") == "membership"
    )
    assert membership_rows_read <= GROUP_SIZE + 1
    user_rows_read = sum(
        n["Actual Rows"] * n["Actual Loops"] for n in nodes if n.get("Relation Name") == "user"
    )
    # The page's users, and the caller's own row (the statement checks who calls, too).
    assert user_rows_read == PAGE + 1


async def test_the_role_filter_pages_through_the_same_order(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
) -> None:
    group_id, in_order = await large_group(db_connection)
    admins = in_order[::7]
    await db_connection.execute(
        update(Membership).where(col(Membership.user_id).in_(admins)).values(role=GroupRole.ADMIN)
    )
    reader = (await make_people(auth, db_sessionmaker, "reader", superusers={"reader"}))["reader"]

    response = await client.get(
        f"/groups/{group_id}/members?role=admin&limit={PAGE}&offset=100", headers=reader.headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(admins)
    assert [item["user_id"] for item in page["items"]] == [str(u) for u in admins[100 : 100 + PAGE]]
    assert {item["role"] for item in page["items"]} == {"admin"}

    # By cursor, every admin once, in the same order, with the same total.
    seen, pages = await members_by_cursor(client, group_id, reader.headers, "&role=admin")
    assert seen == [str(user_id) for user_id in admins]
    assert {page["total"] for page in pages} == {len(admins)}


async def members_by_cursor(
    client: httpx.AsyncClient, group_id: int, headers: dict[str, str], query: str = ""
) -> tuple[list[str], list[dict[str, Any]]]:
    """Every member, page after page by `next_cursor`; the ids and each page's body."""
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        response = await client.get(
            f"/groups/{group_id}/members?limit={PAGE}{query}{after}", headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body)
        seen.extend(item["user_id"] for item in body["items"])
        if body["next_cursor"] is None:
            return seen, pages
        after = f"&after={body['next_cursor']}"


async def test_pages_by_cursor_read_every_member_once_in_order(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
) -> None:
    # Three members join at each hour: the cursor breaks the ties by user id, as the order does.
    group_id, in_order = await large_group(db_connection)
    reader = (await make_people(auth, db_sessionmaker, "reader", superusers={"reader"}))["reader"]

    seen, pages = await members_by_cursor(client, group_id, reader.headers)
    assert seen == [str(user_id) for user_id in in_order]
    assert len(pages) == GROUP_SIZE // PAGE
    assert {page["total"] for page in pages} == {GROUP_SIZE}

    # An offset page's cursor leads to the page an offset would have given.
    by_offset = await client.get(
        f"/groups/{group_id}/members?limit={PAGE}&offset=300", headers=reader.headers
    )
    after = by_offset.json()["next_cursor"]
    following = await client.get(
        f"/groups/{group_id}/members?limit={PAGE}&after={after}", headers=reader.headers
    )
    assert [item["user_id"] for item in following.json()["items"]] == [
        str(user_id) for user_id in in_order[350 : 350 + PAGE]
    ]
    # `offset` counts from the cursor.
    skipping = await client.get(
        f"/groups/{group_id}/members?limit={PAGE}&after={after}&offset=10", headers=reader.headers
    )
    assert skipping.json()["items"][0]["user_id"] == str(in_order[360])
    # The last page by offset has no next page.
    last = await client.get(
        f"/groups/{group_id}/members?limit={PAGE}&offset={GROUP_SIZE - PAGE}",
        headers=reader.headers,
    )
    assert last.json()["next_cursor"] is None


@pytest.mark.parametrize("plan", PLANS)
async def test_a_page_after_a_cursor_reads_only_its_own_rows(
    client: httpx.AsyncClient,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    plan: str,
) -> None:
    """The deep page by cursor starts at the cursor in the index: it reads the page (and one
    member more, to know whether a next page exists), never the members before it."""
    group_id, in_order = await large_group(db_connection)
    reader = (await make_people(auth, db_sessionmaker, "reader", superusers={"reader"}))["reader"]
    before_last = await client.get(
        f"/groups/{group_id}/members?limit={PAGE}&offset={GROUP_SIZE - 2 * PAGE}",
        headers=reader.headers,
    )
    after = before_last.json()["next_cursor"]

    with recorded_statements(db_connection) as executed:
        response = await client.get(
            f"/groups/{group_id}/members?limit={PAGE}&after={after}", headers=reader.headers
        )
    assert response.status_code == 200, response.text
    assert [item["user_id"] for item in response.json()["items"]] == [
        str(user_id) for user_id in in_order[GROUP_SIZE - PAGE :]
    ]
    nodes = await page_plan(db_connection, executed, plan)
    # Whatever the plan (an ordered range of the index, or a bitmap of it when few members
    # follow the cursor), no node reads more memberships than the page and one more.
    membership_nodes = [
        n
        for n in nodes
        if n.get("Relation Name") == "membership"
        or n.get("Index Name", "").startswith(("ix_membership", "pk_membership"))
    ]
    assert membership_nodes
    assert max(n["Actual Rows"] * n["Actual Loops"] for n in membership_nodes) <= PAGE + 1


@pytest.mark.parametrize(
    "after",
    [
        "not base64!",
        "QUJD",  # "ABC": no separator
        # A time without its zone, and a key that is not a user id.
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00|x").decode().rstrip("="),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|42").decode().rstrip("="),
        "A" * 200,
    ],
)
async def test_a_cursor_this_listing_did_not_write_is_a_422(
    client: httpx.AsyncClient, world: World, after: str
) -> None:
    response = await client.get(
        f"/groups/{world.group_id}/members", params={"after": after}, headers=world.member.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "after"]


async def test_a_cursor_does_not_open_a_group_to_an_outsider(
    client: httpx.AsyncClient, world: World
) -> None:
    first = await client.get(
        f"/groups/{world.group_id}/members?limit=1", headers=world.member.headers
    )
    after = first.json()["next_cursor"]
    assert after is not None
    response = await client.get(
        f"/groups/{world.group_id}/members?limit=1&after={after}", headers=world.outsider.headers
    )
    assert response.status_code == 404
