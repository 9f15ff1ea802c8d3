"""The account side of the audit trail: each account change writes its event in the
transaction of the change (FastAPI Users' adapter commits: the event is in the session before
that commit), with who acted; and `GET /events`, the whole trail for superusers."""

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi_users.exceptions import UserAlreadyExists
from httpx import AsyncClient
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import MailKind, OutboxMailer, RosterAuth, User
from roster_auth.testing import DEFAULT_PASSWORD, bearer, bearer_headers
from roster_db.audit import AUDIT_EVENTS, AuditAction, audit_event

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]
Sessionmaker = async_sessionmaker[AsyncSession]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"
Event = tuple[str, uuid.UUID | None, uuid.UUID | None, dict[str, Any]]


async def events(sessionmaker: Sessionmaker) -> list[Event]:
    """(action, actor, subject, details) of every event, oldest first."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    AUDIT_EVENTS.action,
                    AUDIT_EVENTS.actor_id,
                    AUDIT_EVENTS.subject_user_id,
                    AUDIT_EVENTS.details,
                ).order_by(AUDIT_EVENTS.id)
            )
        ).all()
    return [(row[0].value, row[1], row[2], row[3]) for row in rows]


async def test_registering_verifying_and_resetting_are_the_accounts_own_acts(
    client: AsyncClient, outbox: OutboxMailer, db_sessionmaker: Sessionmaker
) -> None:
    registered = await client.post(
        "/auth/register", json={"email": "ann@example.org", "password": DEFAULT_PASSWORD}
    )
    assert registered.status_code == 201
    ann = uuid.UUID(registered.json()["id"])
    token = outbox.last_token("ann@example.org", MailKind.VERIFY)
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 200
    await client.post("/auth/forgot-password", json={"email": "ann@example.org"})
    reset_token = outbox.last_token("ann@example.org", MailKind.RESET_PASSWORD)
    reset = await client.post(
        "/auth/reset-password", json={"token": reset_token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 200

    assert await events(db_sessionmaker) == [
        ("user.registered", ann, ann, {}),
        ("user.verified", ann, ann, {}),
        ("user.password_reset", ann, ann, {}),
    ]


async def test_a_users_own_changes_name_them_and_no_address(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    bea = await make_user(email="bea@example.org")
    headers = bearer(await jwt_login("bea@example.org"))
    changed = await client.patch(
        "/users/me",
        json={
            "password": NEW_PASSWORD,
            "email": "bea.new@example.org",
            "current_password": DEFAULT_PASSWORD,
        },
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    # A profile change is not an audited action.
    await client.patch("/users/me", json={"display_name": "Bea"}, headers=headers)

    recorded = await events(db_sessionmaker)
    assert recorded == [
        ("user.password_changed", bea.id, bea.id, {}),
        ("user.email_changed", bea.id, bea.id, {}),
    ]
    assert "example.org" not in repr(recorded)


async def test_a_superusers_changes_name_the_superuser(
    client: AsyncClient, make_user: MakeUser, db_sessionmaker: Sessionmaker, auth: RosterAuth
) -> None:
    admin = await make_user(email="admin@example.org", is_superuser=True)
    cal = await make_user(email="cal@example.org", is_verified=False)
    headers = await bearer_headers(auth, admin)
    patched = await client.patch(
        f"/users/{cal.id}",
        json={"is_superuser": True, "is_verified": True, "is_active": False},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    created = await client.post(
        "/users", json={"email": "dee@example.org", "password": DEFAULT_PASSWORD}, headers=headers
    )
    dee = uuid.UUID(created.json()["id"])
    deleted = await client.delete(f"/users/{dee}", headers=headers)
    assert deleted.status_code == 204

    assert await events(db_sessionmaker) == [
        ("user.verified", admin.id, cal.id, {}),
        ("user.deactivated", admin.id, cal.id, {}),
        ("user.made_superuser", admin.id, cal.id, {}),
        ("user.registered", admin.id, dee, {}),
        ("user.deleted", admin.id, dee, {}),
    ]


async def test_a_refused_account_change_leaves_no_event(
    client: AsyncClient, make_user: MakeUser, jwt_login: Login, db_sessionmaker: Sessionmaker
) -> None:
    """The database refuses the write in the adapter's commit (the email is taken): the
    event, written before that commit in the same transaction, is rolled back with it."""
    await make_user(email="taken@example.org")
    await make_user(email="eve@example.org")
    headers = bearer(await jwt_login("eve@example.org"))
    moved = await client.patch(
        "/users/me",
        json={"email": "TAKEN@example.org", "current_password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert moved.status_code == 400
    again = await client.post(
        "/auth/register", json={"email": "Taken@Example.org", "password": DEFAULT_PASSWORD}
    )
    assert again.status_code == 400
    assert await events(db_sessionmaker) == []


async def test_an_event_is_rolled_back_with_a_commit_that_fails(
    auth: RosterAuth, committing_sessionmaker: Sessionmaker
) -> None:
    """Straight to the adapter, past the manager's own look-up of the address, so that the
    unique index refuses the write in the adapter's commit: the event written before it in the
    same transaction goes too (for a creation and for an update)."""
    async with committing_sessionmaker() as session:
        users = auth.user_manager(session).user_db
        await users.create({"email": "race@example.org", "hashed_password": "!"})
        other = await users.create({"email": "other@example.org", "hashed_password": "!"})
    async with committing_sessionmaker() as session:
        users = auth.user_manager(session).user_db
        with pytest.raises(UserAlreadyExists):
            await users.create({"email": "RACE@example.org", "hashed_password": "!"})
        with pytest.raises(UserAlreadyExists):
            await users.update(other, {"email": "Race@example.org"})
    assert [event[0] for event in await events(committing_sessionmaker)] == [
        "user.registered",
        "user.registered",
    ]


# -- GET /events ----------------------------------------------------------------------------


@pytest.fixture
async def trail(db_connection: AsyncConnection) -> dict[str, Any]:
    """Events of two actors, two subjects and two groups, over three days."""
    alice, bob, carl = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        (0, alice, AuditAction.GROUP_CREATED, 1, None),
        (1, alice, AuditAction.MEMBER_ADDED, 1, bob),
        (2, bob, AuditAction.MEMBER_LEFT, 1, bob),
        (3, alice, AuditAction.MEMBER_ADDED, 2, carl),
        (4, None, AuditAction.USER_MADE_SUPERUSER, None, carl),
        (5, carl, AuditAction.GROUP_DELETED, 2, None),
    ]
    await db_connection.execute(
        insert(audit_event),
        [
            {
                "occurred_at": start + timedelta(hours=12 * n),
                "actor_id": actor,
                "action": action,
                "group_id": group,
                "subject_user_id": subject,
                "details": {"n": n},
            }
            for n, actor, action, group, subject in rows
        ],
    )
    return {"alice": alice, "bob": bob, "carl": carl, "start": start}


async def superuser_headers(make_user: MakeUser, auth: RosterAuth) -> dict[str, str]:
    admin = await make_user(email="ops@example.org", is_superuser=True)
    return await bearer_headers(auth, admin)


def numbers(body: dict[str, Any]) -> list[int]:
    return [item["details"]["n"] for item in body["items"]]


async def test_events_are_filtered_and_newest_first(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, trail: dict[str, Any]
) -> None:
    headers = await superuser_headers(make_user, auth)
    day = trail["start"] + timedelta(days=1)

    async def listed(query: str) -> list[int]:
        response = await client.get(f"/events?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return numbers(response.json())

    # Making `ops` a superuser wrote no event: a test helper inserts the row directly.
    assert await listed("") == [5, 4, 3, 2, 1, 0]
    assert await listed(f"actor_id={trail['alice']}") == [3, 1, 0]
    assert await listed(f"subject_user_id={trail['bob']}") == [2, 1]
    assert await listed("group_id=2") == [5, 3]
    assert await listed("action=member.added") == [3, 1]
    assert await listed(f"since={day.isoformat()}".replace("+", "%2B")) == [5, 4, 3, 2]
    assert await listed(f"until={day.isoformat()}".replace("+", "%2B")) == [1, 0]
    both = f"actor_id={trail['alice']}&group_id=1&action=member.added"
    assert await listed(both) == [1]


async def test_events_are_paged_by_cursor(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, trail: dict[str, Any]
) -> None:
    headers = await superuser_headers(make_user, auth)
    first = (await client.get("/events?limit=4", headers=headers)).json()
    assert numbers(first) == [5, 4, 3, 2]
    second_response = await client.get(
        f"/events?limit=4&cursor={first['next_cursor']}", headers=headers
    )
    second = second_response.json()
    assert numbers(second) == [1, 0]
    assert second["next_cursor"] is None
    # The filters stay with the cursor in the Link header.
    filtered = await client.get(f"/events?limit=1&actor_id={trail['alice']}", headers=headers)
    link = filtered.headers["link"]
    assert f"actor_id={trail['alice']}" in link
    assert link.endswith('rel="next"')


@pytest.mark.parametrize(
    "query",
    [
        "cursor=garbage!",
        "cursor=bm90IGEgY3Vyc29y",
        "action=user.hacked",
        "since=2026-03-01T00:00:00",  # no time zone
        "until=yesterday",
        "until=0.5",  # a number, which pydantic alone reads as seconds since 1970
        "since=1764662400",
        "until=9999-12-31T23:59:59-23:00",  # past year 9999 in UTC
        "since=0001-01-01T00:00:00%2B01:00",
        "group_id=0",
        "actor_id=42",
        "limit=1000",
    ],
)
async def test_bad_filters_are_422(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, query: str
) -> None:
    headers = await superuser_headers(make_user, auth)
    response = await client.get(f"/events?{query}", headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", query.split("=")[0]]


async def test_events_are_for_active_superusers_only(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, trail: dict[str, Any]
) -> None:
    plain = await make_user(email="plain@example.org")
    retired = await make_user(email="retired@example.org", is_superuser=True, is_active=False)
    assert (await client.get("/events")).status_code == 401
    forbidden = await client.get("/events", headers=await bearer_headers(auth, plain))
    assert (forbidden.status_code, forbidden.json()) == (403, {"detail": "Forbidden"})
    inactive = await client.get("/events", headers=await bearer_headers(auth, retired))
    assert inactive.status_code == 401


async def test_a_filtered_page_is_a_range_of_that_filters_index(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, db_connection: AsyncConnection
) -> None:
    """Each filter has its index, ending in the listing's order: a page of one actor's events
    reads that page (and one more row), backwards, whatever else the trail holds."""
    headers = await superuser_headers(make_user, auth)
    actors = [uuid.uuid4() for _ in range(20)]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    await db_connection.execute(
        insert(audit_event),
        [
            {
                "occurred_at": start + timedelta(minutes=n),
                "actor_id": actors[n % 20],
                "action": AuditAction.MEMBER_ADDED,
                "details": {"n": n},
            }
            for n in range(4000)
        ],
    )
    executed: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        executed.append((args[2], args[3]))

    sync_connection = db_connection.sync_connection
    assert sync_connection is not None
    event.listen(sync_connection, "before_cursor_execute", record)
    try:
        response = await client.get(f"/events?limit=30&actor_id={actors[7]}", headers=headers)
    finally:
        event.remove(sync_connection, "before_cursor_execute", record)
    assert [item["details"]["n"] for item in response.json()["items"]] == list(
        range(3987, 3987 - 30 * 20, -20)
    )
    (statement, parameters) = next(e for e in executed if "audit_event" in e[0])
    await db_connection.execute(text("ANALYZE audit_event"))
    await db_connection.execute(text("SET LOCAL enable_seqscan = off"))
    plan_row = (
        await db_connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, tuple(parameters)
        )
    ).scalar_one()
    plan = json.loads(plan_row) if isinstance(plan_row, str) else plan_row

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    scans = [n for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == "audit_event"]
    assert [(n["Index Name"], n["Scan Direction"]) for n in scans] == [
        ("ix_audit_event_actor_id_occurred_at_id", "Backward")
    ]
    assert scans[0]["Actual Rows"] == 31
