"""The audit trail: an append-only `audit_event` table and the one writer every member uses.

Why here, in roster-db: roster-auth writes account events and roster-groups writes group
events (and, later, invitation events), in the transaction of the change they record. The
writer must sit below both (layers api -> groups -> auth -> db), and it needs nothing but the
shared metadata and a connection, which roster-db already holds. A member of its own would
add a distribution, a pyproject and a CI step for one table and a few statements, and would
still have to sit between roster-auth and roster-db. So the table is a Core `Table` on the
shared metadata, and the writer takes the caller's session or connection, so the event is
part of the caller's transaction: a change that fails leaves no event, an event is never
committed without its change.

Decisions:

- **No foreign keys.** `actor_id` and `subject_user_id` (accounts) and `group_id` are plain
  values. The trail outlives what it names: "what did this account do last week?" must still
  have an answer after the account is deleted, and a deleted group's history stays readable
  by superusers (`GET /events?group_id=`). ON DELETE SET NULL would erase exactly what an
  audit is for; ON DELETE CASCADE would erase the events themselves. It also keeps the writes
  cheap: no key-share lock on the user or group row per event, no scan of this table when a
  user is deleted. `actor_id` is NULL for the system (a trigger, a command line).
- **Actions as a VARCHAR with a named CHECK** (`ck_audit_event_audit_action`), as
  `membership.role` is, not a Postgres enum: a new action is a constraint swap in a
  migration, not an `ALTER TYPE` that cannot run in a transaction on older servers.
- **Append-only**, by a statement-level trigger that refuses every UPDATE, and every DELETE
  and TRUNCATE unless the transaction set `roster.audit_prune` to `on` (`prune_events`, the
  `roster audit prune` command, and the tests' cleanup do). It guards against the
  application's own mistakes, not against the database's owner, who can drop triggers:
  deployments that need more run the service as a role that does not own the table.
- **Time and order**: `occurred_at` is the database's `now()`, the start of the change's
  transaction, so the events of one change share a time; `id` (a bigint identity) orders
  them within it. Listings are newest first by `(occurred_at, id)`, with keyset cursors on
  that pair (see `encode_cursor`), served by an index per filter.
- **`details`** is a JSON object of what the event needs to be understood later: old and new
  role, old and new name, an invitation's id. Never a password, a token, or an email address:
  events name people by id.
"""

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Protocol

from fastapi import Depends, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    Select,
    Table,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB

from roster_db.base import create_with_table, metadata
from roster_db.pagination import (
    CURSOR_MAX_LENGTH,
    CURSOR_PATTERN,
    decode_cursor_position,
    encode_cursor_position,
    in_utc,
)


class AuditAction(enum.StrEnum):
    """Every action the trail knows. A new one needs a migration (the CHECK lists them)."""

    GROUP_CREATED = "group.created"
    GROUP_UPDATED = "group.updated"
    GROUP_DELETED = "group.deleted"
    MEMBER_ADDED = "member.added"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    MEMBER_LEFT = "member.left"
    MEMBER_PROMOTED_ON_OWNER_DELETION = "member.promoted_on_owner_deletion"
    INVITATION_CREATED = "invitation.created"
    INVITATION_ACCEPTED = "invitation.accepted"
    INVITATION_DECLINED = "invitation.declined"
    INVITATION_REVOKED = "invitation.revoked"
    USER_REGISTERED = "user.registered"
    USER_VERIFIED = "user.verified"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105 - an action name
    USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105 - an action name
    USER_EMAIL_CHANGED = "user.email_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_DELETED = "user.deleted"
    USER_MADE_SUPERUSER = "user.made_superuser"
    USER_OAUTH_LINKED = "user.oauth_linked"
    USER_OAUTH_UNLINKED = "user.oauth_unlinked"


ACTION_MAX_LENGTH: Final = 64
# The session setting that lets a transaction delete events (see the module docstring).
PRUNE_SETTING: Final = "roster.audit_prune"

audit_event: Final = Table(
    "audit_event",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("actor_id", Uuid, nullable=True),
    Column(
        "action",
        Enum(
            AuditAction,
            name="audit_action",
            native_enum=False,
            create_constraint=True,
            length=ACTION_MAX_LENGTH,
            values_callable=lambda actions: [action.value for action in actions],
            validate_strings=True,
        ),
        nullable=False,
    ),
    Column("group_id", Integer, nullable=True),
    Column("subject_user_id", Uuid, nullable=True),
    Column("details", JSONB, server_default=text("'{}'::jsonb"), nullable=False),
    CheckConstraint("jsonb_typeof(details) = 'object'", name="details_is_object"),
    # One index per way of reading, each ending in the listing's order, so that a page is a
    # range of it read backwards (newest first), whatever the table's size.
    Index("ix_audit_event_group_id_occurred_at_id", "group_id", "occurred_at", "id"),
    Index("ix_audit_event_actor_id_occurred_at_id", "actor_id", "occurred_at", "id"),
    Index("ix_audit_event_subject_user_id_occurred_at_id", "subject_user_id", "occurred_at", "id"),
    # The global listing, and the prune's range.
    Index("ix_audit_event_occurred_at_id", "occurred_at", "id"),
    # Who joined a group by invitation: its trail shows their registrations too.
    Index(
        "ix_audit_event_invitation_accepted",
        "group_id",
        "subject_user_id",
        postgresql_where=text("action = 'invitation.accepted'"),
    ),
)
AUDIT_EVENTS: Final = audit_event.c

# Statement-level: one call per UPDATE/DELETE/TRUNCATE, however many rows (a prune of a
# million rows costs one call). One statement per string: asyncpg prepares each statement.
# No percent sign in them: DDL() formats its text with %.
CREATE_APPEND_ONLY_SQL: Final[tuple[str, ...]] = (
    """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
            AND coalesce(current_setting('roster.audit_prune', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING
        MESSAGE = 'audit_event is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege',
        HINT = 'events are removed only by roster audit prune';
END;
$$
""",
    """
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
""",
)
DROP_APPEND_ONLY_SQL: Final[tuple[str, ...]] = (
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
)

# `metadata.create_all` (tests) installs the trigger with the table; the migration runs the
# same statements (autogenerate does not see triggers).
create_with_table(audit_event, CREATE_APPEND_ONLY_SQL, DROP_APPEND_ONLY_SQL)


# -- writing --------------------------------------------------------------------------------


class Executor(Protocol):
    """An `AsyncSession` or an `AsyncConnection`: whatever holds the change's transaction."""

    async def execute(self, statement: Any, parameters: Any = None, /) -> Any: ...


INSERT_EVENT_COLUMNS: Final = ("actor_id", "action", "group_id", "subject_user_id", "details")
# The values `event_parameters` gives, for an INSERT ... SELECT of one's own.
INSERT_EVENT_VALUES: Final = (
    bindparam("actor_id", type_=Uuid),
    bindparam("action", type_=AUDIT_EVENTS.action.type),
    bindparam("group_id", type_=Integer),
    bindparam("subject_user_id", type_=Uuid),
    bindparam("details", type_=JSONB),
)
INSERT_EVENT: Final = insert(audit_event).values(
    dict(zip(INSERT_EVENT_COLUMNS, INSERT_EVENT_VALUES, strict=True))
)


def event_parameters(
    action: AuditAction,
    *,
    actor_id: uuid.UUID | None,
    group_id: int | None = None,
    subject_user_id: uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`INSERT_EVENT`'s parameters."""
    return {
        "actor_id": actor_id,
        "action": AuditAction(action),
        "group_id": group_id,
        "subject_user_id": subject_user_id,
        "details": dict(details or {}),
    }


async def record_event(
    executor: Executor,
    action: AuditAction,
    *,
    actor_id: uuid.UUID | None,
    group_id: int | None = None,
    subject_user_id: uuid.UUID | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Write one event in `executor`'s transaction (a session or a connection), so that it
    commits or rolls back with the change it records. One statement.

    `actor_id` is who did it (None: the system); `subject_user_id` the account it was done to
    (the member added, the invitee); `details` a JSON object (ids, roles, names; never a
    password, a token or an address). Where the change is itself one Core statement, write
    the event in that statement instead (`INSERT ... SELECT` from a data-modifying CTE, as
    roster-groups does for members): no round trip of its own."""
    await executor.execute(
        INSERT_EVENT,
        event_parameters(
            action,
            actor_id=actor_id,
            group_id=group_id,
            subject_user_id=subject_user_id,
            details=details,
        ),
    )


# -- pruning --------------------------------------------------------------------------------

ALLOW_PRUNE: Final = select(func.set_config(PRUNE_SETTING, "on", True))
PRUNE_BEFORE: Final = delete(audit_event).where(
    AUDIT_EVENTS.occurred_at < bindparam("before", type_=DateTime(timezone=True))
)


async def prune_events(executor: Executor, before: datetime) -> int:
    """Delete the events that occurred before `before`, in `executor`'s transaction (the
    setting that lets it is local to that transaction); the number deleted. Two statements."""
    await executor.execute(ALLOW_PRUNE)
    result = await executor.execute(PRUNE_BEFORE, {"before": before})
    return int(result.rowcount)


# -- reading --------------------------------------------------------------------------------

DEFAULT_EVENT_LIMIT: Final = 50
MAX_EVENT_LIMIT: Final = 100


class EventPublic(BaseModel):
    """One event of the audit trail."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    action: AuditAction
    actor_id: uuid.UUID | None
    group_id: int | None
    subject_user_id: uuid.UUID | None
    details: dict[str, Any]


# What a page item holds, in this order.
EVENT_FIELDS: Final = tuple(EventPublic.model_fields)


@dataclass(frozen=True)
class EventCursor:
    """Where a page starts: just after (older than) the event at (`occurred_at`, `id`)."""

    occurred_at: datetime
    id: int


def encode_cursor(occurred_at: datetime, event_id: int) -> str:
    """An opaque cursor for the page after this event (see `encode_cursor_position`)."""
    return encode_cursor_position(occurred_at, event_id)


def decode_cursor(value: str) -> EventCursor:
    """The cursor's position; ValueError for anything `encode_cursor` did not write."""
    occurred_at, number = decode_cursor_position(value)
    if not number.isdigit() or not 0 < int(number) < 2**63:
        raise ValueError("not a cursor of this listing")
    return EventCursor(occurred_at, int(number))


def check_cursor(value: str) -> str:
    """A pydantic validator for a `cursor` query parameter: a malformed one is a 422."""
    decode_cursor(value)
    return value


NEWEST_FIRST: Final = (AUDIT_EVENTS.occurred_at.desc(), AUDIT_EVENTS.id.desc())
# The keyset condition: a row comparison Postgres reads as a range of the (..., occurred_at,
# id) indexes.
AFTER_CURSOR: Final = tuple_(AUDIT_EVENTS.occurred_at, AUDIT_EVENTS.id) < tuple_(
    bindparam("cursor_occurred_at", type_=DateTime(timezone=True)),
    bindparam("cursor_id", type_=BigInteger),
)


def events_page(*conditions: ColumnElement[bool], after_cursor: bool) -> Select[Any]:
    """Events matching `conditions`, newest first, at most `:limit` rows (ask for one more
    than the page's size to learn whether a next page exists), after the cursor's event when
    `after_cursor` (parameters `cursor_parameters` gives)."""
    where = [*conditions, AFTER_CURSOR] if after_cursor else list(conditions)
    return (
        select(*(AUDIT_EVENTS[name] for name in EVENT_FIELDS))
        .where(*where)
        .order_by(*NEWEST_FIRST)
        .limit(bindparam("limit"))
    )


def cursor_parameters(cursor: EventCursor | None) -> dict[str, Any]:
    if cursor is None:
        return {}
    return {"cursor_occurred_at": cursor.occurred_at, "cursor_id": cursor.id}


@dataclass(frozen=True)
class EventPage:
    """A page as the database returned it: items keyed by `EVENT_FIELDS`, and the cursor of
    the next page (None on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def event_page_of(rows: Sequence[Mapping[Any, Any]], limit: int) -> EventPage:
    """A page from up to `limit + 1` rows of `events_page` (those without an id are the
    outer join's empty side and are skipped)."""
    items = [{name: row[name] for name in EVENT_FIELDS} for row in rows if row["id"] is not None]
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        last = items[-1]
        next_cursor = encode_cursor(last["occurred_at"], last["id"])
    return EventPage(items, next_cursor)


class EventsPublic(BaseModel):
    """A page of events, newest first. `next_cursor` (also in the `Link` header, as
    `rel="next"`) reads the next, older page; null on the last page."""

    items: list[EventPublic]
    limit: int
    next_cursor: str | None


@dataclass(frozen=True)
class EventPageParams:
    limit: int
    cursor: EventCursor | None

    def parameters(self) -> dict[str, Any]:
        """`events_page`'s parameters: one row more than the page, to learn whether a next
        page exists, and the cursor's position."""
        return {"limit": self.limit + 1, **cursor_parameters(self.cursor)}


# async: a plain `def` dependency would be sent through a worker thread on every request.
async def event_page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_EVENT_LIMIT, description=f"Page size, at most {MAX_EVENT_LIMIT}.")
    ] = DEFAULT_EVENT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=CURSOR_MAX_LENGTH,
            pattern=CURSOR_PATTERN,
            description="The previous page's `next_cursor`; omit for the newest events.",
        ),
        AfterValidator(lambda value: None if value is None else check_cursor(value)),
    ] = None,
) -> EventPageParams:
    return EventPageParams(limit, None if cursor is None else decode_cursor(cursor))


EventPageParamsDep = Annotated[EventPageParams, Depends(event_page_params)]


def event_page_body(page: EventPage, limit: int) -> dict[str, Any]:
    """`EventsPublic`'s fields, for a `RowsJSONResponse`."""
    return {"items": page.items, "limit": limit, "next_cursor": page.next_cursor}


def next_link_headers(request: Request, page: EventPage, limit: int) -> dict[str, str]:
    """An RFC 8288 `Link` to the next page on the request's own URL (its filters kept)."""
    if page.next_cursor is None:
        return {}
    next_url = request.url.include_query_params(limit=limit, cursor=page.next_cursor)
    return {"Link": f'<{next_url}>; rel="next"'}


__all__ = [
    "ACTION_MAX_LENGTH",
    "ALLOW_PRUNE",
    "AUDIT_EVENTS",
    "CREATE_APPEND_ONLY_SQL",
    "CURSOR_MAX_LENGTH",
    "CURSOR_PATTERN",
    "DEFAULT_EVENT_LIMIT",
    "DROP_APPEND_ONLY_SQL",
    "EVENT_FIELDS",
    "INSERT_EVENT",
    "INSERT_EVENT_COLUMNS",
    "INSERT_EVENT_VALUES",
    "MAX_EVENT_LIMIT",
    "PRUNE_SETTING",
    "AuditAction",
    "EventCursor",
    "EventPage",
    "EventPageParams",
    "EventPageParamsDep",
    "EventPublic",
    "EventsPublic",
    "Executor",
    "audit_event",
    "check_cursor",
    "cursor_parameters",
    "decode_cursor",
    "encode_cursor",
    "event_page_body",
    "event_page_of",
    "event_page_params",
    "event_parameters",
    "events_page",
    "in_utc",
    "next_link_headers",
    "prune_events",
    "record_event",
]
