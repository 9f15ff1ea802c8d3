"""`GET /events`: the whole audit trail, for superusers (operators: "what did this account do
last week?"), filtered by actor, subject, group, action and time, newest first, with keyset
cursors (roster_db.audit).

It lives in roster-auth because reading it is a superuser's right, which roster-auth defines;
it names groups by id only, so it needs nothing of roster-groups (which reads a group's own
trail at `GET /groups/{group_id}/events`). One statement per page: the caller's row
(`CALLER`), the superuser check and the page, as roster-groups' listings do.
"""

import functools
import re
import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from sqlalchemy import ColumnElement, DateTime, Integer, Select, Uuid, bindparam, select, true

from roster_auth.current import CALLER, Credentials, CredentialsDependency, not_authenticated
from roster_auth.errors import SUPERUSER_RESPONSES
from roster_db import ReaderDep, RowsJSONResponse
from roster_db.audit import (
    AUDIT_EVENTS,
    AuditAction,
    EventPageParamsDep,
    EventsPublic,
    event_page_body,
    event_page_of,
    events_page,
    in_utc,
    next_link_headers,
)

# A time with its zone, within the years 1..9999 once in UTC.
_DATE_TIME_START: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def date_time_text(value: Any) -> Any:
    """A time sent as text is a date and a time (the schema's `date-time`), never a number,
    which pydantic would read as seconds since 1970."""
    if isinstance(value, str) and not _DATE_TIME_START.match(value):
        raise ValueError("not a date and time (ISO 8601, with a time zone)")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(date_time_text), AfterValidator(in_utc)]
# Group ids are Postgres INTEGERs.
MAX_GROUP_ID: Final = 2**31 - 1
_CALLER_ACTIVE: Final = "caller_is_active"
_CALLER_SUPERUSER: Final = "caller_is_superuser"

# Each filter's condition, added to the statement only when the filter is given: a statement
# per combination (compiled once each), so the planner sees plain equalities and picks the
# filter's index, rather than `(:x IS NULL OR column = :x)`, which a generic plan cannot.
FILTERS: Final[dict[str, ColumnElement[bool]]] = {
    "actor_id": AUDIT_EVENTS.actor_id == bindparam("actor_id", type_=Uuid),
    "subject_user_id": AUDIT_EVENTS.subject_user_id == bindparam("subject_user_id", type_=Uuid),
    "group_id": AUDIT_EVENTS.group_id == bindparam("group_id", type_=Integer),
    "action": AUDIT_EVENTS.action == bindparam("action", type_=AUDIT_EVENTS.action.type),
    "since": AUDIT_EVENTS.occurred_at >= bindparam("since", type_=DateTime(timezone=True)),
    "until": AUDIT_EVENTS.occurred_at < bindparam("until", type_=DateTime(timezone=True)),
}


@functools.cache
def events_statement(filters: frozenset[str], *, after_cursor: bool) -> Select[Any]:
    """The caller's flags and a page of the events matching `filters`, only for an active
    superuser (an empty page for anyone else, told apart by the flags)."""
    page = events_page(
        CALLER.c.is_active,
        CALLER.c.is_superuser,
        *(FILTERS[name] for name in sorted(filters)),
        after_cursor=after_cursor,
    ).lateral("page")
    return (
        select(
            CALLER.c.is_active.label(_CALLER_ACTIVE),
            CALLER.c.is_superuser.label(_CALLER_SUPERUSER),
            *page.c,
        )
        .select_from(CALLER.outerjoin(page, true()))
        .order_by(page.c.occurred_at.desc(), page.c.id.desc())
    )


def build_events_router(current_credentials: CredentialsDependency) -> APIRouter:
    """`GET /events` (superusers)."""
    router = APIRouter(tags=["audit"])
    CurrentCredentials = Annotated[Credentials, Depends(current_credentials)]  # noqa: N806

    @router.get(
        "/events",
        response_model=EventsPublic,
        name="audit:events",
        responses=SUPERUSER_RESPONSES,
    )
    async def list_events(
        request: Request,
        reader: ReaderDep,
        credentials: CurrentCredentials,
        page: EventPageParamsDep,
        actor_id: Annotated[uuid.UUID | None, Query(description="Done by this user.")] = None,
        subject_user_id: Annotated[
            uuid.UUID | None, Query(description="Done to this user.")
        ] = None,
        group_id: Annotated[
            int | None,
            Query(ge=1, le=MAX_GROUP_ID, description="In this group (deleted ones included)."),
        ] = None,
        action: Annotated[AuditAction | None, Query(description="Of this action.")] = None,
        since: Annotated[
            Moment | None,
            Query(description="At or after this time (ISO 8601, with a time zone)."),
        ] = None,
        until: Annotated[
            Moment | None,
            Query(description="Before this time (ISO 8601, with a time zone)."),
        ] = None,
    ) -> Response:
        """The audit trail, newest first (superusers only): follow `next_cursor`, or the
        `Link` header, for older events."""
        given = {
            name: value
            for name, value in {
                "actor_id": actor_id,
                "subject_user_id": subject_user_id,
                "group_id": group_id,
                "action": action,
                "since": since,
                "until": until,
            }.items()
            if value is not None
        }
        statement = events_statement(frozenset(given), after_cursor=page.cursor is not None)
        rows = await reader.all(
            statement, {**given, **page.parameters(), **credentials.parameters()}
        )
        if not rows or not rows[0]._mapping[_CALLER_ACTIVE]:
            raise not_authenticated()
        if not rows[0]._mapping[_CALLER_SUPERUSER]:
            raise HTTPException(status.HTTP_403_FORBIDDEN)
        events = event_page_of([row._mapping for row in rows], page.limit)
        return RowsJSONResponse(
            event_page_body(events, page.limit),
            headers=next_link_headers(request, events, page.limit),
        )

    return router


__all__ = ["FILTERS", "build_events_router", "events_statement"]
