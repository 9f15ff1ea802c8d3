"""The audit trail's table and writer on a real Postgres: events are written in the caller's
transaction, refused when changed or deleted (except by a prune), and read by opaque cursors."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from roster_db import sqlstate_of
from roster_db.audit import (
    AUDIT_EVENTS,
    AuditAction,
    EventCursor,
    audit_event,
    decode_cursor,
    encode_cursor,
    event_page_of,
    events_page,
    prune_events,
    record_event,
)

INSUFFICIENT_PRIVILEGE = "42501"


async def count(connection: AsyncConnection) -> int:
    return int(
        (await connection.execute(select(func.count()).select_from(audit_event))).scalar_one()
    )


async def test_an_event_is_written_in_the_callers_transaction(
    db_connection: AsyncConnection,
) -> None:
    actor, subject = uuid.uuid4(), uuid.uuid4()
    savepoint = await db_connection.begin_nested()
    await record_event(
        db_connection,
        AuditAction.MEMBER_ROLE_CHANGED,
        actor_id=actor,
        group_id=7,
        subject_user_id=subject,
        details={"old_role": "member", "new_role": "admin"},
    )
    row = (await db_connection.execute(select(audit_event))).one()
    assert (row.actor_id, row.action, row.group_id, row.subject_user_id) == (
        actor,
        AuditAction.MEMBER_ROLE_CHANGED,
        7,
        subject,
    )
    assert row.details == {"old_role": "member", "new_role": "admin"}
    # The database's clock: the transaction's start.
    now = (await db_connection.execute(select(func.now()))).scalar_one()
    assert row.occurred_at == now
    # Rolled back with its transaction, it never was.
    await savepoint.rollback()
    assert await count(db_connection) == 0


@pytest.mark.parametrize(
    "action",
    [
        AuditAction.INVITATION_CREATED,
        AuditAction.INVITATION_ACCEPTED,
        AuditAction.INVITATION_DECLINED,
        AuditAction.INVITATION_REVOKED,
    ],
)
async def test_invitation_events_can_be_recorded(
    db_connection: AsyncConnection, action: AuditAction
) -> None:
    """The invitations' actions are known to the table already (roster-groups writes them)."""
    inviter, invitee = uuid.uuid4(), uuid.uuid4()
    await record_event(
        db_connection,
        action,
        actor_id=inviter,
        group_id=3,
        subject_user_id=invitee,
        details={"invitation_id": 41, "role": "admin"},
    )
    row = (await db_connection.execute(select(audit_event))).one()
    assert (row.action, row.details) == (action, {"invitation_id": 41, "role": "admin"})


async def test_a_system_event_has_no_actor(db_connection: AsyncConnection) -> None:
    await record_event(db_connection, AuditAction.USER_MADE_SUPERUSER, actor_id=None)
    row = (await db_connection.execute(select(audit_event))).one()
    assert (row.actor_id, row.group_id, row.subject_user_id, row.details) == (None, None, None, {})


@pytest.mark.parametrize(
    "values",
    ["'user.hacked', '{}'", "'group.created', '[1]'", "'group.created', 'null'"],
)
async def test_the_table_refuses_unknown_actions_and_details_that_are_not_objects(
    db_connection: AsyncConnection, values: str
) -> None:
    with pytest.raises(IntegrityError):
        await db_connection.execute(
            text(f"INSERT INTO audit_event (action, details) VALUES ({values})")  # noqa: S608
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET action = 'group.deleted'",
        "UPDATE audit_event SET details = '{}'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    ],
)
async def test_events_cannot_be_changed_or_deleted(
    db_connection: AsyncConnection, statement: str
) -> None:
    await record_event(db_connection, AuditAction.GROUP_CREATED, actor_id=uuid.uuid4(), group_id=1)
    savepoint = await db_connection.begin_nested()
    with pytest.raises(DBAPIError) as refused:
        await db_connection.execute(text(statement))
    assert sqlstate_of(refused.value) == INSUFFICIENT_PRIVILEGE
    assert "append-only" in str(refused.value)
    await savepoint.rollback()
    assert await count(db_connection) == 1


async def test_an_update_is_refused_even_while_pruning(db_connection: AsyncConnection) -> None:
    await record_event(db_connection, AuditAction.GROUP_CREATED, actor_id=None, group_id=1)
    await db_connection.execute(text("SELECT set_config('roster.audit_prune', 'on', true)"))
    savepoint = await db_connection.begin_nested()
    with pytest.raises(DBAPIError):
        await db_connection.execute(text("UPDATE audit_event SET group_id = 2"))
    await savepoint.rollback()


async def test_prune_deletes_only_older_events(db_connection: AsyncConnection) -> None:
    now = datetime.now(UTC)
    ages = [timedelta(days=400), timedelta(days=91), timedelta(days=89), timedelta(0)]
    await db_connection.execute(
        insert(audit_event),
        [
            {"occurred_at": now - age, "action": AuditAction.GROUP_UPDATED, "group_id": 1}
            for age in ages
        ],
    )
    deleted = await prune_events(db_connection, now - timedelta(days=90))
    assert deleted == 2
    kept = (await db_connection.execute(select(AUDIT_EVENTS.occurred_at))).scalars().all()
    assert sorted(kept) == [now - timedelta(days=89), now]


async def test_the_prune_permission_ends_with_its_transaction(
    db_connection: AsyncConnection,
) -> None:
    savepoint = await db_connection.begin_nested()
    await prune_events(db_connection, datetime.now(UTC))
    assert (
        await db_connection.execute(text("SELECT current_setting('roster.audit_prune', true)"))
    ).scalar_one() == "on"
    await savepoint.rollback()
    await db_connection.commit()
    assert (
        await db_connection.execute(text("SELECT current_setting('roster.audit_prune', true)"))
    ).scalar_one() in ("", None)


def test_a_cursor_is_opaque_and_round_trips() -> None:
    moment = datetime(2026, 12, 1, 22, 0, 0, 123456, tzinfo=UTC)
    cursor = encode_cursor(moment, 1234)
    assert "2026" not in cursor
    assert "=" not in cursor
    assert decode_cursor(cursor) == EventCursor(moment, 1234)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-base64!",
        "bm90IGEgY3Vyc29y",  # "not a cursor"
        encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 1).replace("A", "B") + "x",
        "MjAyNi0wMS0wMVQwMDowMDowMHwx",  # "2026-01-01T00:00:00|1": no time zone
        encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 1)[:-2],
    ],
)
def test_malformed_cursors_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(value)


def test_a_cursor_past_year_9999_in_utc_is_refused() -> None:
    forged = encode_cursor(datetime.fromisoformat("9999-12-31T23:00:00-05:00"), 1)
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(forged)


@pytest.mark.parametrize("event_id", [0, -1, 2**63])
def test_cursors_out_of_range_are_refused(event_id: int) -> None:
    forged = encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), event_id)
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(forged)


async def test_pages_are_newest_first_without_duplicates_or_gaps(
    db_connection: AsyncConnection,
) -> None:
    """Events of one transaction share a time: the id orders them. Walking the cursors gives
    every event once, newest first, even with new events written between pages."""
    same_time = datetime(2026, 6, 1, tzinfo=UTC)
    await db_connection.execute(
        insert(audit_event),
        [
            {"occurred_at": same_time - timedelta(minutes=n // 3), "action": "group.updated"}
            for n in range(10)
        ],
    )
    expected = (
        (
            await db_connection.execute(
                select(AUDIT_EVENTS.id).order_by(
                    AUDIT_EVENTS.occurred_at.desc(), AUDIT_EVENTS.id.desc()
                )
            )
        )
        .scalars()
        .all()
    )
    first = events_page(after_cursor=False)
    after = events_page(after_cursor=True)
    seen: list[int] = []
    cursor: EventCursor | None = None
    while True:
        if cursor is None:
            rows = (await db_connection.execute(first, {"limit": 4})).mappings().all()
        else:
            rows = (
                (
                    await db_connection.execute(
                        after,
                        {
                            "limit": 4,
                            "cursor_occurred_at": cursor.occurred_at,
                            "cursor_id": cursor.id,
                        },
                    )
                )
                .mappings()
                .all()
            )
        page = event_page_of(rows, 3)
        seen += [item["id"] for item in page.items]
        # A newer event arrives meanwhile: it belongs before the first page, not in the walk.
        await record_event(db_connection, AuditAction.GROUP_CREATED, actor_id=None)
        if page.next_cursor is None:
            break
        cursor = decode_cursor(page.next_cursor)
    assert seen == list(expected)
