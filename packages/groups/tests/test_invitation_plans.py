"""The invitation listings read through their indexes: a group's page is a range of
(group_id, created_at, id) read backwards (newest first, no sort of the group's invitations),
and the invitee's list finds the pending invitations to the address by the partial index."""

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_groups.models import GroupInvitation, GroupRole

from .conftest import World, add_group, recorded_statements
from .test_listing_plans import plan_nodes

INVITATIONS = 1000
PAGE = 50


async def explain(connection: AsyncConnection, statement: str, parameters: Any) -> list[Any]:
    await connection.execute(text('ANALYZE group_invitation, membership, user_group, "user"'))
    # Tables this small are cheaper to scan whole: ruling that out shows what serves the query.
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    row = (
        await connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, tuple(parameters)
        )
    ).scalar_one()
    plan = json.loads(row) if isinstance(row, str) else row
    return list(plan_nodes(plan[0]["Plan"]))


def invitation_indexes(nodes: list[Any]) -> set[str]:
    return {
        n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("ix_group_invitation")
    }


def seq_scans_of_invitations(nodes: list[Any]) -> list[Any]:
    return [
        n
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "group_invitation"
    ]


async def test_a_deep_page_of_a_groups_invitations_is_a_range_of_its_index(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    start = datetime.now(UTC) - timedelta(days=1)
    rows = [
        {
            "id": uuid.uuid4(),
            "group_id": world.group_id,
            "email": f"deep-{n}@example.com",
            "role": GroupRole.MEMBER,
            "token_hash": hashlib.sha256(f"deep-{n}".encode()).digest(),
            "status": "pending",
            "created_at": start + timedelta(seconds=n),
            "expires_at": start + timedelta(days=7),
        }
        for n in range(INVITATIONS)
    ]
    await db_connection.execute(insert(GroupInvitation), rows)
    newest_first = [str(row["id"]) for row in reversed(rows)]
    offset = INVITATIONS - PAGE
    with recorded_statements(db_connection) as executed:
        response = await client.get(
            f"/groups/{world.group_id}/invitations?limit={PAGE}&offset={offset}",
            headers=world.admin.headers,
        )
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == newest_first[offset:]
    (page,) = [e for e in executed if "group_invitation" in e.statement]
    nodes = await explain(db_connection, page.statement, page.parameters)
    # The only sort is of the page's own rows (the final ORDER BY), never of the group's.
    assert [n["Actual Rows"] for n in nodes if "Sort" in n["Node Type"]] in ([], [PAGE])
    # The count and the page: both through the group's index, neither a scan of the table.
    assert invitation_indexes(nodes) == {"ix_group_invitation_group_id_created_at"}
    assert not seq_scans_of_invitations(nodes)


async def test_the_invitees_list_uses_the_partial_index_of_pending_addresses(
    client: httpx.AsyncClient,
    world: World,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
) -> None:
    now = datetime.now(UTC)
    other = await add_group(db_sessionmaker, "Elsewhere", {world.owner.id: GroupRole.OWNER})
    rows = [
        {
            "id": uuid.uuid4(),
            "group_id": world.group_id,
            "email": f"someone-{n}@example.com",
            "role": GroupRole.MEMBER,
            "token_hash": hashlib.sha256(f"someone-{n}".encode()).digest(),
            "status": "pending" if n % 2 else "revoked",
            "responded_at": None if n % 2 else now,
            "created_at": now,
            "expires_at": now + timedelta(days=7),
        }
        for n in range(INVITATIONS)
    ]
    rows.append(
        rows[1]
        | {
            "id": uuid.uuid4(),
            "group_id": other,
            "email": world.newcomer.user.email.upper(),
            "token_hash": hashlib.sha256(b"mine").digest(),
        }
    )
    await db_connection.execute(insert(GroupInvitation), rows)
    with recorded_statements(db_connection) as executed:
        response = await client.get("/users/me/invitations", headers=world.newcomer.headers)
    assert response.status_code == 200, response.text
    assert [item["group_id"] for item in response.json()["items"]] == [other]
    (listing,) = [e for e in executed if "group_invitation" in e.statement]
    nodes = await explain(db_connection, listing.statement, listing.parameters)
    scans = [n for n in nodes if n.get("Relation Name") == "group_invitation"]
    assert invitation_indexes(nodes) == {"ix_group_invitation_pending_email"}
    assert not seq_scans_of_invitations(nodes)
    # Only the caller's own invitation is read, for the count and for the page.
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) == 2
