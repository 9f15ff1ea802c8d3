"""The group side of the audit trail: every change of a group or a membership writes its event
(who, to whom, what changed) in its own transaction; a refused change writes none; the group's
owners and admins read the trail newest first, page by page."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db.audit import AUDIT_EVENTS, AuditAction, audit_event, encode_cursor
from roster_groups.models import GroupRole

from .conftest import World, recorded_statements, spread_joined_at

Event = tuple[str, uuid.UUID | None, int | None, uuid.UUID | None, dict[str, Any]]


async def events(
    sessionmaker: async_sessionmaker[AsyncSession], group_id: int | None = None
) -> list[Event]:
    """(action, actor, group, subject, details) of every event, oldest first."""
    statement = select(
        AUDIT_EVENTS.action,
        AUDIT_EVENTS.actor_id,
        AUDIT_EVENTS.group_id,
        AUDIT_EVENTS.subject_user_id,
        AUDIT_EVENTS.details,
    ).order_by(AUDIT_EVENTS.id)
    if group_id is not None:
        statement = statement.where(AUDIT_EVENTS.group_id == group_id)
    async with sessionmaker() as session:
        rows = (await session.execute(statement)).all()
    return [(row[0].value, row[1], row[2], row[3], row[4]) for row in rows]


async def test_group_creation_update_and_deletion_are_recorded(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    owner = world.owner
    created = await client.post("/groups", json={"name": "Audited"}, headers=owner.headers)
    group_id = created.json()["id"]
    renamed = await client.patch(
        f"/groups/{group_id}",
        json={"name": "Audited II", "description": None},
        headers=owner.headers,
    )
    assert renamed.status_code == 200
    # Nothing changes: nothing is recorded.
    same = await client.patch(
        f"/groups/{group_id}", json={"name": "Audited II"}, headers=owner.headers
    )
    assert same.status_code == 200
    deleted = await client.delete(f"/groups/{group_id}", headers=owner.headers)
    assert deleted.status_code == 204

    assert await events(db_sessionmaker, group_id) == [
        ("group.created", owner.id, group_id, None, {"name": "Audited"}),
        (
            "group.updated",
            owner.id,
            group_id,
            None,
            {"old": {"name": "Audited"}, "new": {"name": "Audited II"}},
        ),
        ("group.deleted", owner.id, group_id, None, {"name": "Audited II"}),
    ]


async def test_membership_changes_are_recorded_with_actor_subject_and_roles(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    group = f"/groups/{world.group_id}"
    newcomer = world.newcomer
    added = await client.post(
        f"{group}/members",
        json={"user_id": str(newcomer.id), "role": "member"},
        headers=world.admin.headers,
    )
    assert added.status_code == 201
    promoted = await client.patch(
        f"{group}/members/{newcomer.id}", json={"role": "admin"}, headers=world.owner.headers
    )
    assert promoted.status_code == 200
    unchanged = await client.patch(
        f"{group}/members/{newcomer.id}", json={"role": "admin"}, headers=world.owner.headers
    )
    assert unchanged.status_code == 200
    removed = await client.delete(
        f"{group}/members/{world.peer_member.id}", headers=world.admin.headers
    )
    assert removed.status_code == 204
    left = await client.delete(f"{group}/members/{newcomer.id}", headers=newcomer.headers)
    assert left.status_code == 204
    # A superuser who is not a member acts too, and is named.
    by_superuser = await client.delete(
        f"{group}/members/{world.peer_admin.id}", headers=world.superuser.headers
    )
    assert by_superuser.status_code == 204

    gid = world.group_id
    assert await events(db_sessionmaker, gid) == [
        ("member.added", world.admin.id, gid, newcomer.id, {"role": "member"}),
        (
            "member.role_changed",
            world.owner.id,
            gid,
            newcomer.id,
            {"old_role": "member", "new_role": "admin"},
        ),
        ("member.removed", world.admin.id, gid, world.peer_member.id, {"role": "member"}),
        ("member.left", newcomer.id, gid, newcomer.id, {"role": "admin"}),
        ("member.removed", world.superuser.id, gid, world.peer_admin.id, {"role": "admin"}),
    ]


async def test_refused_changes_leave_no_event(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Each write fails in the database (a unique or foreign key violation) or in the rules
    after its lock: the change and its event go together."""
    group = f"/groups/{world.group_id}"
    taken = await client.post("/groups", json={"name": "Taken"}, headers=world.outsider.headers)
    assert taken.status_code == 201
    failures = [
        # Already a member: the primary key refuses the insert, and its event with it.
        await client.post(
            f"{group}/members",
            json={"user_id": str(world.member.id), "role": "member"},
            headers=world.owner.headers,
        ),
        # No such account: the foreign key refuses it.
        await client.post(
            f"{group}/members",
            json={"user_id": str(uuid.uuid4()), "role": "member"},
            headers=world.owner.headers,
        ),
        # The last owner cannot leave: the delete removes nothing, so logs nothing.
        await client.delete(f"{group}/members/{world.owner.id}", headers=world.owner.headers),
        await client.patch(
            f"{group}/members/{world.owner.id}",
            json={"role": "member"},
            headers=world.owner.headers,
        ),
        # The name is taken (in another letter case).
        await client.post("/groups", json={"name": "crew"}, headers=world.outsider.headers),
        await client.patch(f"{group}", json={"name": "taken"}, headers=world.owner.headers),
    ]
    assert [response.status_code for response in failures] == [
        409,
        404,
        409,
        409,
        409,
        409,
    ]
    # Only the group "Taken" was created.
    assert [event[0] for event in await events(db_sessionmaker)] == ["group.created"]


async def test_the_successor_trigger_records_its_promotion_and_who_deleted_the_owner(
    client: httpx.AsyncClient, world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order = [world.owner, world.member, world.peer_admin, world.admin, world.peer_member]
    await spread_joined_at(db_sessionmaker, world.group_id, [p.id for p in order])
    solo = await client.post("/groups", json={"name": "Solo"}, headers=world.owner.headers)
    solo_id = solo.json()["id"]

    deleted = await client.delete(f"/users/{world.owner.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204

    assert await events(db_sessionmaker, world.group_id) == [
        (
            "member.promoted_on_owner_deletion",
            world.superuser.id,
            world.group_id,
            world.peer_admin.id,
            {"old_role": "admin", "new_role": "owner", "deleted_owner_id": str(world.owner.id)},
        )
    ]
    # The group left without any member is deleted, and that is recorded too.
    assert (await events(db_sessionmaker, solo_id))[-1] == (
        "group.deleted",
        world.superuser.id,
        solo_id,
        None,
        {"reason": "last_member_deleted", "deleted_owner_id": str(world.owner.id)},
    )
    # The account's deletion itself, by the superuser.
    user_events = [e for e in await events(db_sessionmaker) if e[0] == "user.deleted"]
    assert user_events == [("user.deleted", world.superuser.id, None, world.owner.id, {})]


async def test_the_trigger_outside_the_api_records_the_system_as_actor(
    world: World, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """An account deleted in psql: the promotion is recorded, by no one."""
    async with db_sessionmaker() as session:
        await session.execute(text('DELETE FROM "user" WHERE id = :id'), {"id": world.owner.id})
        await session.commit()
    promotions = await events(db_sessionmaker, world.group_id)
    assert [(e[0], e[1]) for e in promotions] == [("member.promoted_on_owner_deletion", None)]


async def test_adding_and_removing_a_member_write_their_event_in_the_same_statement(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    """The write path keeps its statements: the lock with the caller's role, then the change
    with its event (a data-modifying CTE), and no statement of its own for the event."""
    group = f"/groups/{world.group_id}"
    with recorded_statements(db_connection) as executed:
        added = await client.post(
            f"{group}/members",
            json={"user_id": str(world.newcomer.id), "role": "member"},
            headers=world.owner.headers,
        )
        removed = await client.delete(
            f"{group}/members/{world.newcomer.id}", headers=world.owner.headers
        )
    assert (added.status_code, removed.status_code) == (201, 204)
    statements = [
        e.statement
        for e in executed
        if not e.statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO"))
        and "membership" in e.statement
    ]
    assert len(statements) == 4, statements
    writes = [s for s in statements if "audit_event" in s]
    assert len(writes) == 2
    assert writes[0].lstrip().startswith("WITH inserted AS")
    assert writes[1].lstrip().startswith("WITH removed AS")


# -- reading: GET /groups/{group_id}/events -----------------------------------------------


async def seed_events(
    db_connection: AsyncConnection, group_id: int, count: int, start: datetime
) -> None:
    """`count` events in the group, a minute apart, three of them at each minute (ties that
    the id breaks)."""
    await db_connection.execute(
        insert(audit_event),
        [
            {
                "occurred_at": start + timedelta(minutes=n // 3),
                "action": AuditAction.GROUP_UPDATED,
                "group_id": group_id,
                "details": {"n": n},
            }
            for n in range(count)
        ],
    )


async def test_the_trail_is_read_newest_first_page_by_page(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    await seed_events(db_connection, world.group_id, 11, datetime(2026, 1, 1, tzinfo=UTC))
    url: str | None = f"/groups/{world.group_id}/events?limit=4"
    seen: list[int] = []
    pages = 0
    while url is not None:
        response = await client.get(url, headers=world.admin.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["limit"] == 4
        seen += [item["details"]["n"] for item in body["items"]]
        pages += 1
        # A new event between pages is newer than every page already read: no duplicate, no
        # gap in what the walk returns.
        await client.post(
            "/groups", json={"name": f"Meanwhile {pages}"}, headers=world.admin.headers
        )
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            url = None
        else:
            assert link is not None
            assert body["next_cursor"] in link
            assert 'rel="next"' in link
            url = f"/groups/{world.group_id}/events?limit=4&cursor={body['next_cursor']}"
    assert seen == list(range(10, -1, -1))
    assert pages == 3

    first = (
        await client.get(f"/groups/{world.group_id}/events", headers=world.owner.headers)
    ).json()
    assert first["next_cursor"] is None
    item = first["items"][0]
    assert set(item) == {
        "id",
        "occurred_at",
        "action",
        "actor_id",
        "group_id",
        "subject_user_id",
        "details",
    }
    assert (item["action"], item["group_id"], item["actor_id"]) == (
        "group.updated",
        world.group_id,
        None,
    )


async def test_another_groups_events_are_not_shown(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    await seed_events(db_connection, world.group_id + 1000, 3, datetime(2026, 1, 1, tzinfo=UTC))
    response = await client.get(f"/groups/{world.group_id}/events", headers=world.owner.headers)
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "query",
    [
        "cursor=not-a-cursor",
        "cursor=" + encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 1)[:-3],
        "cursor=bm90IGEgY3Vyc29y",
        "cursor=" + "A" * 200,
        "cursor=%2F%2F",
        "limit=0",
        "limit=101",
    ],
)
async def test_a_malformed_cursor_or_limit_is_a_422(
    client: httpx.AsyncClient, world: World, query: str
) -> None:
    response = await client.get(
        f"/groups/{world.group_id}/events?{query}", headers=world.owner.headers
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"][:2] == ["query", query.split("=")[0]]


async def test_a_page_is_one_statement(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    await seed_events(db_connection, world.group_id, 30, datetime(2026, 1, 1, tzinfo=UTC))
    with recorded_statements(db_connection) as executed:
        response = await client.get(
            f"/groups/{world.group_id}/events?limit=20", headers=world.owner.headers
        )
    assert response.status_code == 200
    statements = [
        e.statement
        for e in executed
        if not e.statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO"))
    ]
    assert len(statements) == 1
    assert len(response.json()["items"]) == 20


async def test_a_member_promoted_to_admin_reads_the_trail(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/groups/{world.group_id}/events"
    assert (await client.get(url, headers=world.member.headers)).status_code == 403
    await client.patch(
        f"/groups/{world.group_id}/members/{world.member.id}",
        json={"role": GroupRole.ADMIN},
        headers=world.owner.headers,
    )
    response = await client.get(url, headers=world.member.headers)
    assert response.status_code == 200
    assert response.json()["items"][0]["action"] == "member.role_changed"


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]


async def test_a_page_after_a_cursor_is_a_range_of_the_groups_index(
    client: httpx.AsyncClient, world: World, db_connection: AsyncConnection
) -> None:
    """However long the trail, a page reads its own rows (and one more, to know whether a next
    page exists) from (group_id, occurred_at, id), backwards: no sort, no other group's rows."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    await seed_events(db_connection, world.group_id, 2000, start)
    await seed_events(db_connection, world.group_id + 1, 2000, start)
    first = await client.get(
        f"/groups/{world.group_id}/events?limit=50", headers=world.owner.headers
    )
    cursor = first.json()["next_cursor"]
    with recorded_statements(db_connection) as executed:
        second = await client.get(
            f"/groups/{world.group_id}/events?limit=50&cursor={cursor}",
            headers=world.owner.headers,
        )
    assert [item["details"]["n"] for item in second.json()["items"]] == list(range(1949, 1899, -1))
    (page,) = [e for e in executed if "audit_event" in e.statement]
    await db_connection.execute(text("ANALYZE audit_event"))
    await db_connection.execute(text("SET LOCAL enable_seqscan = off"))
    plan_row = (
        await db_connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + page.statement, tuple(page.parameters)
        )
    ).scalar_one()
    plan = json.loads(plan_row) if isinstance(plan_row, str) else plan_row
    nodes = plan_nodes(plan[0]["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "audit_event"]
    # The group's own events through its index; whoever joined it by invitation (nobody
    # here) through the partial index of acceptances, then their registrations.
    assert [(n["Alias"], n.get("Index Name")) for n in scans] == [
        ("audit_event", "ix_audit_event_group_id_occurred_at_id"),
        ("accepted", "ix_audit_event_invitation_accepted"),
        ("audit_event_1", "ix_audit_event_subject_user_id_occurred_at_id"),
    ]
    assert scans[0]["Scan Direction"] == "Backward"
    assert scans[0]["Actual Rows"] * scans[0]["Actual Loops"] == 51
    assert scans[1]["Actual Rows"] * scans[1]["Actual Loops"] == 0
    assert [n for n in nodes if n["Node Type"] == "Sort" and n["Actual Rows"] > 51] == []
