"""The rules of groups and memberships, and the queries behind them.

Every function takes the request's session and the acting user, checks what that user may do,
and raises a `roster_groups.errors` exception when the answer is no. Queries load what they
return (relationships are `lazy="raise"`), and each listing runs a fixed number of statements
whatever the page size.

Changes to a group's memberships lock the group row first (`FOR NO KEY UPDATE`, which does not
block the foreign-key checks of concurrent inserts), so two owners who leave at the same time
cannot both pass the "another owner remains" check. Only members (and superusers) take that
lock: anyone else is refused before they could queue behind, or hold up, the group's writers.
A member's lock also holds their own membership row, read in the same statement. Adding and
removing a member, the hot writes, read their caller in that statement too (roster-auth's
CALLER, as the listings do: `authorize_membership_write`), so no user row is read before.
Uniqueness is left to the database: the service flushes and maps the SQLSTATE of the
violation, so racing requests get a 409, not a 500.

Every change writes its audit event (`roster_db.audit`) in the same transaction, the caller as
actor: adding and removing a member in the change's own statement (a data-modifying CTE on its
RETURNING, so a refused change writes nothing and the write costs no round trip more), the
ORM's changes with one INSERT after their flush. A group's owners and admins read the trail
(`list_group_events`, one statement per page).
"""

import operator
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Executable,
    FromClause,
    Row,
    RowMapping,
    String,
    Subquery,
    Uuid,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy import Select as SaSelect
from sqlalchemy import delete as sa_delete
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import contains_eager, joinedload
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import CALLER, Credentials, User, UserRead, not_authenticated
from roster_db import (
    Page,
    PageParams,
    Reader,
    decode_cursor_position,
    encode_cursor_position,
    is_foreign_key_violation,
    is_unique_violation,
    with_generic_plan,
)
from roster_db.audit import (
    AUDIT_EVENTS,
    AuditAction,
    EventPage,
    EventPageParams,
    audit_event,
    event_page_of,
    events_page,
    record_event,
)
from roster_groups.errors import (
    GroupNameAlreadyExistsError,
    GroupNotFoundError,
    GroupsError,
    InsufficientGroupRoleError,
    LastOwnerError,
    MemberNotFoundError,
    MembershipAlreadyExistsError,
    SuperuserRequiredError,
    UserNotFoundError,
)
from roster_groups.models import GroupMemberCount, GroupRole, Membership, UserGroup, utc_now
from roster_groups.schemas import (
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    MemberPublic,
    MembershipCreate,
)

# Higher is more powerful; "at least admin" means admin or owner.
ROLE_RANK: Final[dict[GroupRole, int]] = {
    GroupRole.MEMBER: 0,
    GroupRole.ADMIN: 1,
    GroupRole.OWNER: 2,
}


# Through the table's columns: FastAPI Users' mixin types `id` and `email` as plain values.
USER_COLUMNS: Final = User.__table__.c
# The columns `UserRead` (the /users/me schema) reads, named by its fields as
# `UserRead.model_validate(user)` reads a `User`'s attributes: a group's users keep exactly
# that schema if roster-auth changes it (a field that is not a column fails at import).
USER_READ_COLUMNS: Final = tuple(USER_COLUMNS[name] for name in UserRead.model_fields)
USER_READ_FIELDS: Final = tuple(UserRead.model_fields)
MEMBER_FIELDS: Final = tuple(MemberPublic.model_fields)
USERS: Final = User.__table__


def role_at_least(role: GroupRole | None, minimum: GroupRole) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


@dataclass(frozen=True)
class GroupAccess:
    """A group as seen by one user: what `authorize` finds."""

    group: UserGroup
    user: User
    # None for a superuser who is not a member.
    role: GroupRole | None

    @property
    def group_id(self) -> int:
        assert self.group.id is not None  # a loaded row always has one
        return self.group.id

    def allows(self, minimum: GroupRole) -> bool:
        return self.user.is_superuser or role_at_least(self.role, minimum)


def _group_public(group: UserGroup, role: GroupRole | None) -> GroupPublic:
    # The row's columns (relationships are not fields of the dump) and the caller's role.
    return GroupPublic(**group.model_dump(), role=role)


def _member_public(membership: Membership) -> MemberPublic:
    return MemberPublic(
        user_id=membership.user_id,
        email=membership.user.email,
        display_name=membership.user.display_name,
        role=membership.role,
        joined_at=membership.joined_at,
    )


def _role_or_none(value: str | None) -> GroupRole | None:
    # The column's Enum type already returns GroupRole members; this tells the type checker.
    return None if value is None else GroupRole(value)


def _is_member_of(group_id: int, user_id: uuid.UUID) -> ColumnElement[bool]:
    return and_(col(Membership.group_id) == group_id, col(Membership.user_id) == user_id)


async def authorize(
    session: AsyncSession,
    user: User,
    group_id: int,
    minimum: GroupRole = GroupRole.MEMBER,
    *,
    lock: bool = False,
) -> GroupAccess:
    """The group and the user's role in it, if the user holds at least `minimum` (superusers
    always do). A non-member learns nothing: the group is "not found". One statement.

    `lock` also takes the group's row lock for the rest of the transaction, and, for a member,
    the row of their own membership, in the same statement: Postgres locks only the rows a
    query returns, so a non-member gets no row, takes no lock and never waits behind the
    group's writers. A request that waited for the lock sees the role as the previous holder
    left it: when a locked row changed while the statement waited, Postgres re-reads the
    latest version of every row it locks (here the caller's membership) and checks the
    conditions again, so a demotion or a removal that just committed counts. Superusers, who
    may act on any group without being members, lock the group row alone and then read their
    role (an outer join's missing side cannot be locked): two statements."""
    if lock and user.is_superuser:
        locked = await session.exec(
            select(UserGroup.id)
            .where(UserGroup.id == group_id)
            .with_for_update(key_share=True, of=UserGroup)
        )
        if locked.first() is None:
            raise GroupNotFoundError
    caller_is_member = and_(
        col(Membership.group_id) == UserGroup.id, col(Membership.user_id) == user.id
    )
    statement = select(UserGroup, Membership.role).where(UserGroup.id == group_id)
    if lock and not user.is_superuser:
        # FOR NO KEY UPDATE: it does not block the foreign-key checks of concurrent inserts.
        statement = statement.join(Membership, caller_is_member).with_for_update(
            key_share=True, of=[UserGroup, Membership]
        )
    else:
        statement = statement.outerjoin(Membership, caller_is_member)
    row = (await session.exec(statement)).first()
    if row is None:
        raise GroupNotFoundError
    group, role = row
    access = GroupAccess(group=group, user=user, role=_role_or_none(role))
    if role is None and not user.is_superuser:
        raise GroupNotFoundError
    if not access.allows(minimum):
        raise InsufficientGroupRoleError
    return access


async def _flush(
    session: AsyncSession,
    *,
    on_unique: type[GroupsError] | None = None,
    on_foreign_key: type[GroupsError] | None = None,
) -> None:
    """Write pending changes now, so that the database's verdict on a constraint becomes a
    domain error here (and the router's 409/404) rather than a failed commit later."""
    try:
        await session.flush()
    except IntegrityError as error:
        if on_unique is not None and is_unique_violation(error):
            raise on_unique from error
        if on_foreign_key is not None and is_foreign_key_violation(error):
            raise on_foreign_key from error
        raise


async def _record_group_event(
    session: AsyncSession,
    action: AuditAction,
    user: User,
    group_id: int,
    details: Mapping[str, Any],
    *,
    subject_user_id: uuid.UUID | None = None,
) -> None:
    """The audit event of a flushed ORM change that `user` made to a group: one INSERT on the
    session's connection, in the change's transaction (no autoflush: the change is written)."""
    await record_event(
        await session.connection(),
        action,
        actor_id=user.id,
        group_id=group_id,
        subject_user_id=subject_user_id,
        details=details,
    )


async def create_group(session: AsyncSession, user: User, data: GroupCreate) -> GroupPublic:
    """A new group, owned by its creator."""
    group = UserGroup(name=data.name, description=data.description)
    session.add(group)
    await _flush(session, on_unique=GroupNameAlreadyExistsError)
    assert group.id is not None
    session.add(Membership(group_id=group.id, user_id=user.id, role=GroupRole.OWNER))
    # A foreign-key violation: the creator's account was deleted meanwhile.
    await _flush(session, on_foreign_key=UserNotFoundError)
    await _record_group_event(
        session, AuditAction.GROUP_CREATED, user, group.id, {"name": group.name}
    )
    return _group_public(group, GroupRole.OWNER)


async def list_groups_of(session: AsyncSession, user: User, page: PageParams) -> Page[GroupPublic]:
    """The user's groups with their role in each, by name. Two statements."""
    total = (
        await session.exec(
            select(func.count()).select_from(Membership).where(Membership.user_id == user.id)
        )
    ).one()
    memberships = (
        await session.exec(
            select(Membership)
            .join(Membership.group)  # type: ignore[arg-type]
            .options(contains_eager(Membership.group))  # type: ignore[arg-type]
            .where(Membership.user_id == user.id)
            .order_by(func.lower(UserGroup.name), col(UserGroup.id))
            .limit(page.limit)
            .offset(page.offset)
        )
    ).all()
    return Page(
        items=[_group_public(m.group, m.role) for m in memberships],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


async def list_all_groups(session: AsyncSession, user: User, page: PageParams) -> Page[GroupPublic]:
    """Every group, with the (superuser) caller's role where they are a member."""
    if not user.is_superuser:
        raise SuperuserRequiredError
    total = (await session.exec(select(func.count()).select_from(UserGroup))).one()
    rows = (
        await session.exec(
            select(UserGroup, Membership.role)
            .outerjoin(Membership, _is_member_of(UserGroup.id, user.id))  # type: ignore[arg-type]
            .order_by(func.lower(UserGroup.name), col(UserGroup.id))
            .limit(page.limit)
            .offset(page.offset)
        )
    ).all()
    return Page(
        items=[_group_public(group, _role_or_none(role)) for group, role in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


async def get_group(session: AsyncSession, user: User, group_id: int) -> GroupPublic:
    access = await authorize(session, user, group_id)
    return _group_public(access.group, access.role)


async def update_group(
    session: AsyncSession, user: User, group_id: int, data: GroupUpdate
) -> GroupPublic:
    """Rename or redescribe a group (owner, admin)."""
    access = await authorize(session, user, group_id, GroupRole.ADMIN, lock=True)
    group = access.group
    changes = {
        field: value
        for field, value in data.model_dump(exclude_unset=True).items()
        if getattr(group, field) != value
    }
    old = {field: getattr(group, field) for field in changes}
    for field, value in changes.items():
        setattr(group, field, value)
    if changes:
        await _flush(session, on_unique=GroupNameAlreadyExistsError)
        # Only what changed, before and after: a PATCH that changes nothing records nothing.
        await _record_group_event(
            session, AuditAction.GROUP_UPDATED, user, access.group_id, {"old": old, "new": changes}
        )
    return _group_public(group, access.role)


async def delete_group(session: AsyncSession, user: User, group_id: int) -> None:
    """Delete a group and, through ON DELETE CASCADE, its memberships (owner)."""
    access = await authorize(session, user, group_id, GroupRole.OWNER, lock=True)
    await session.delete(access.group)
    await session.flush()
    await _record_group_event(
        session, AuditAction.GROUP_DELETED, user, access.group_id, {"name": access.group.name}
    )


# -- the listings: one statement each, built once ------------------------------------------
#
# Who calls (roster-auth's CALLER: the cookie's stored token or the JWT's subject, an active
# user), whether they may see the group (a member, or a superuser), the total and the page, in
# one statement: a row per item of the page, each carrying the caller's flags, the caller's
# role and the total (one row with NULL items for an empty page); a NULL group for a caller who
# may not see it (or a group that does not exist); no row at all for no caller. The subqueries
# are LATERAL and filtered on the access check, so they run only for a caller who passed it: a
# non-member costs the check's index lookups and nothing more. The page is a range of
# ix_membership_group_id_joined_at read without the table, and only its rows meet "user" (a
# deferred join): joining first would join and sort every member of the group for any page.
# The final ORDER BY sorts the page's rows only.

GROUPS: Final = UserGroup.__table__  # type: ignore[attr-defined]
MEMBERSHIPS: Final = Membership.__table__  # type: ignore[attr-defined]
MEMBER_COUNTS: Final = GroupMemberCount.__table__  # type: ignore[attr-defined]
LISTING_CALLER_ACTIVE: Final = "caller_is_active"
LISTING_CALLER_SUPERUSER: Final = "caller_is_superuser"
LISTING_GROUP_ID: Final = "allowed_group_id"
LISTING_CALLER_ROLE: Final = "caller_role"
LISTING_TOTAL: Final = "total"
# The page's order, labelled apart from the items' own columns.
_PAGE_JOINED_AT: Final = "page_joined_at"
_PAGE_USER_ID: Final = "page_user_id"


def listing_access(group_id: ColumnElement[Any]) -> FromClause:
    """The access check of a group's listings, LATERAL to CALLER: one row (the group's id and
    the caller's role, NULL for a superuser who is not a member) when the group exists and the
    caller, active, is a member of it or a superuser; no row otherwise."""
    access = MEMBERSHIPS.alias("access")
    return (
        sa_select(GROUPS.c.id.label("group_id"), access.c.role.label("role"))
        .select_from(
            GROUPS.outerjoin(
                access,
                and_(access.c.group_id == GROUPS.c.id, access.c.user_id == CALLER.c.id),
            )
        )
        .where(
            GROUPS.c.id == group_id,
            CALLER.c.is_active,
            or_(access.c.user_id.is_not(None), CALLER.c.is_superuser),
        )
        .lateral("allowed")
    )


def listing_caller_columns(
    allowed: FromClause, *, with_superuser: bool
) -> list[ColumnElement[Any]]:
    """The columns that open each row of a listing: whether the caller is active (and a
    superuser), and what `listing_access` found: the group, the caller's role in it."""
    columns = [CALLER.c.is_active.label(LISTING_CALLER_ACTIVE)]
    if with_superuser:
        columns.append(CALLER.c.is_superuser.label(LISTING_CALLER_SUPERUSER))
    return [
        *columns,
        allowed.c.group_id.label(LISTING_GROUP_ID),
        allowed.c.role.label(LISTING_CALLER_ROLE),
    ]


def listing_caller_row(
    rows: Sequence[Row[Any]], *, roles: Collection[GroupRole] | None = None
) -> RowMapping:
    """The first row of a listing opened by `listing_caller_columns`, once it shows the caller
    may read the page: active (else 401), a member of the group or a superuser (else 404)
    and, when `roles` are given, in one of them or a superuser (else 403; the statement's
    columns must then include the superuser flag)."""
    if not rows or not rows[0]._mapping[LISTING_CALLER_ACTIVE]:
        # Neither the cookie's token nor the JWT's subject is a user, or not an active one.
        raise not_authenticated()
    first = rows[0]._mapping
    if first[LISTING_GROUP_ID] is None:
        # No such group, or the caller is neither a member nor a superuser.
        raise GroupNotFoundError
    if (
        roles is not None
        and not first[LISTING_CALLER_SUPERUSER]
        and first[LISTING_CALLER_ROLE] not in roles
    ):
        raise InsufficientGroupRoleError
    return first


@dataclass(frozen=True)
class Listing:
    """A page of a listing as the database returned it: items keyed by the response schema's
    field names, ready to be written as JSON without a model per row."""

    items: list[dict[str, Any]]
    total: int
    role: GroupRole | None
    # Where the next page starts (members only); None on the last page.
    next_cursor: str | None = None


@dataclass(frozen=True)
class MemberCursor:
    """Where a page of members starts: just after the member at (`joined_at`, `user_id`), the
    listing's order."""

    joined_at: datetime
    user_id: uuid.UUID

    @classmethod
    def decode(cls, value: str) -> "MemberCursor":
        """The cursor's position; ValueError for anything `encode` did not write."""
        joined_at, key = decode_cursor_position(value)
        try:
            user_id = uuid.UUID(key)
        except ValueError as error:
            raise ValueError("not a cursor of this listing") from error
        return cls(joined_at, user_id)

    @staticmethod
    def encode(member: Mapping[str, Any]) -> str:
        return encode_cursor_position(member["joined_at"], member["user_id"])

    def parameters(self) -> dict[str, object]:
        return {"after_joined_at": self.joined_at, "after_user_id": self.user_id}


def check_member_cursor(value: str | None) -> str | None:
    """A pydantic validator for the members listing's `after`: a malformed one is a 422."""
    if value is not None:
        MemberCursor.decode(value)
    return value


def _listing_statement(
    item_columns: Callable[[Subquery, FromClause], Sequence[ColumnElement[Any]]],
    *,
    by_role: bool,
    after_cursor: bool = False,
) -> SaSelect[Any]:
    allowed = listing_access(bindparam("group_id"))
    in_group: list[ColumnElement[bool]] = [MEMBERSHIPS.c.group_id == bindparam("group_id")]
    if by_role:
        in_group.append(MEMBERSHIPS.c.role == bindparam("role", type_=MEMBERSHIPS.c.role.type))
    in_page = list(in_group)
    if after_cursor:
        # A row comparison: Postgres reads it as a range of ix_membership_group_id_joined_at,
        # so the page starts at the cursor without walking the members before it.
        in_page.append(
            tuple_(MEMBERSHIPS.c.joined_at, MEMBERSHIPS.c.user_id)
            > tuple_(
                bindparam("after_joined_at", type_=MEMBERSHIPS.c.joined_at.type),
                bindparam("after_user_id", type_=MEMBERSHIPS.c.user_id.type),
            )
        )
    # The total from the group's counts per role (at most three rows), not a count of its
    # memberships: the same cost for 10 members as for 10,000.
    counted_roles = [MEMBER_COUNTS.c.group_id == bindparam("group_id")]
    if by_role:
        counted_roles.append(
            MEMBER_COUNTS.c.role == bindparam("role", type_=MEMBERSHIPS.c.role.type)
        )
    counted = (
        sa_select(func.coalesce(func.sum(MEMBER_COUNTS.c.member_count), 0).label(LISTING_TOTAL))
        .where(*counted_roles, allowed.c.group_id.is_not(None))
        .lateral("counted")
    )
    memberships = (
        sa_select(MEMBERSHIPS.c.user_id, MEMBERSHIPS.c.role, MEMBERSHIPS.c.joined_at)
        .where(*in_page)
        # user_id breaks ties, so pages never overlap or skip.
        .order_by(MEMBERSHIPS.c.joined_at, MEMBERSHIPS.c.user_id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("memberships")
    )
    # Each member's account by its primary key, in a LATERAL with a LIMIT: the planner cannot
    # flatten that into a join, so the plan stays this nested loop over the page's rows even
    # when it is planned without the parameters' values (a generic plan, see the end), which
    # assumes an average group and would otherwise hash-join the page with every user.
    account = (
        sa_select(*USER_READ_COLUMNS)
        .where(USERS.c.id == memberships.c.user_id)
        .limit(literal_column("1"))
        .lateral("account")
    )
    page = (
        sa_select(
            memberships.c.joined_at.label(_PAGE_JOINED_AT),
            memberships.c.user_id.label(_PAGE_USER_ID),
            *item_columns(memberships, account),
        )
        .select_from(memberships.join(account, true()))
        .where(allowed.c.group_id.is_not(None))
        .lateral("page")
    )
    # Planned once per connection (roster_db.with_generic_plan): planning this statement
    # afresh took three times as long as running it, and every part of its plan is the same
    # for any group, caller and page (the tests check it).
    return with_generic_plan(
        sa_select(
            *listing_caller_columns(allowed, with_superuser=False),
            counted.c[LISTING_TOTAL],
            *(column for column in page.c if column.key not in (_PAGE_JOINED_AT, _PAGE_USER_ID)),
            page.c[_PAGE_USER_ID],
        )
        .select_from(
            CALLER.outerjoin(allowed, true()).outerjoin(counted, true()).outerjoin(page, true())
        )
        .order_by(page.c[_PAGE_JOINED_AT], page.c[_PAGE_USER_ID])
    )


def _member_columns(memberships: Subquery, account: FromClause) -> Sequence[ColumnElement[Any]]:
    # Named as MemberPublic's fields (a field that is not a column fails at import).
    columns = {
        "user_id": memberships.c.user_id,
        "email": account.c.email,
        "display_name": account.c.display_name,
        # The stored string as it is, written to the JSON unchanged: a `GroupRole` per row
        # would cost its conversion, and pydantic-core writes an enum member ten times more
        # slowly than a string (a third of the 10,000-member page's serialisation).
        "role": type_coerce(memberships.c.role, String()),
        "joined_at": memberships.c.joined_at,
    }
    return [columns[name].label(name) for name in MemberPublic.model_fields]


def _user_columns(_memberships: Subquery, account: FromClause) -> Sequence[ColumnElement[Any]]:
    return [account.c[column.key].label(column.key) for column in USER_READ_COLUMNS]


@dataclass(frozen=True)
class _ListingQuery:
    """A listing's statement, and where its item fields stand in each row (read by position:
    a row's mapping looks each name up again, per field and per row)."""

    statement: SaSelect[Any]
    item_fields: tuple[str, ...]
    item_values: Callable[[Row[Any]], tuple[Any, ...]]

    @classmethod
    def of(cls, statement: SaSelect[Any], item_fields: tuple[str, ...]) -> "_ListingQuery":
        keys = list(statement.selected_columns.keys())
        positions = [keys.index(name) for name in item_fields]
        # itemgetter answers a bare value for one position: every listing has several.
        assert len(positions) > 1
        return cls(statement, item_fields, operator.itemgetter(*positions))

    def items(self, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
        fields, values = self.item_fields, self.item_values
        return [dict(zip(fields, values(row), strict=True)) for row in rows]


MEMBERS_PAGE: Final = _ListingQuery.of(
    _listing_statement(_member_columns, by_role=False), MEMBER_FIELDS
)
MEMBERS_PAGE_BY_ROLE: Final = _ListingQuery.of(
    _listing_statement(_member_columns, by_role=True), MEMBER_FIELDS
)
MEMBERS_PAGE_AFTER: Final = _ListingQuery.of(
    _listing_statement(_member_columns, by_role=False, after_cursor=True), MEMBER_FIELDS
)
MEMBERS_PAGE_BY_ROLE_AFTER: Final = _ListingQuery.of(
    _listing_statement(_member_columns, by_role=True, after_cursor=True), MEMBER_FIELDS
)
USERS_PAGE: Final = _ListingQuery.of(
    _listing_statement(_user_columns, by_role=False), USER_READ_FIELDS
)


async def _listing(
    reader: Reader,
    query: _ListingQuery,
    credentials: Credentials,
    group_id: int,
    limit: int,
    offset: int,
    **parameters: object,
) -> Listing:
    rows = await reader.all(
        query.statement,
        {
            "group_id": group_id,
            "limit": limit,
            "offset": offset,
            **credentials.parameters(),
            **parameters,
        },
    )
    first = listing_caller_row(rows)
    # An empty page is one row with no item (the LEFT JOIN LATERAL's NULLs).
    return Listing(
        items=query.items([] if first[_PAGE_USER_ID] is None else rows),
        total=first[LISTING_TOTAL],
        role=_role_or_none(first[LISTING_CALLER_ROLE]),
    )


async def list_members(
    reader: Reader,
    credentials: Credentials,
    group_id: int,
    page: PageParams,
    role: GroupRole | None = None,
    after: MemberCursor | None = None,
) -> Listing:
    """A group's members (as MemberPublic's fields), longest-standing first, for any member
    (and superusers): the page `offset` members after the start, or after the cursor's member
    (`after`), and the cursor of the next page. One statement, the caller's row included,
    whatever the group, the page size and the page's depth."""
    filters: dict[str, object] = {} if role is None else {"role": role}
    if after is None:
        query = MEMBERS_PAGE if role is None else MEMBERS_PAGE_BY_ROLE
        listing = await _listing(
            reader, query, credentials, group_id, page.limit, page.offset, **filters
        )
        more = page.offset + len(listing.items) < listing.total
    else:
        # One member more than the page: whether a next page exists (a cursor knows no
        # position to compare with the total).
        query = MEMBERS_PAGE_AFTER if role is None else MEMBERS_PAGE_BY_ROLE_AFTER
        listing = await _listing(
            reader,
            query,
            credentials,
            group_id,
            page.limit + 1,
            page.offset,
            **filters,
            **after.parameters(),
        )
        more = len(listing.items) > page.limit
        if more:
            listing = replace(listing, items=listing.items[: page.limit])
    if not more or not listing.items:
        return listing
    return replace(listing, next_cursor=MemberCursor.encode(listing.items[-1]))


async def list_users(
    reader: Reader, credentials: Credentials, group_id: int, page: PageParams
) -> Listing:
    """A group's users (as UserRead's fields; longest-standing members first) and how many
    there are in all, for any member (and superusers). One statement, the caller's row
    included, whatever the group and the page size."""
    return await _listing(reader, USERS_PAGE, credentials, group_id, page.limit, page.offset)


# -- the group's audit trail: one statement per page ----------------------------------------
#
# As the listings above: the caller, whether they may see the group's events (an owner or an
# admin, or a superuser), and the page, in one statement. The page is a range of
# ix_audit_event_group_id_occurred_at_id read backwards, after the cursor; its lateral runs
# only for a caller who passed the check.
EVENT_READER_ROLES: Final = (GroupRole.OWNER, GroupRole.ADMIN)


def _group_events_statement(*, after_cursor: bool) -> SaSelect[Any]:
    allowed = listing_access(bindparam("group_id"))
    may_read = (
        allowed.c.group_id.is_not(None),
        or_(CALLER.c.is_superuser, allowed.c.role.in_(EVENT_READER_ROLES)),
    )
    own = events_page(
        AUDIT_EVENTS.group_id == bindparam("group_id"), after_cursor=after_cursor
    ).subquery("own")
    # The registrations of the accounts that joined by invitation (the story of an
    # invitation: created, the invitee registered, accepted, added), read through the
    # subject's index; a page of each, merged.
    accepted = audit_event.alias("accepted")
    joined = events_page(
        AUDIT_EVENTS.action == AuditAction.USER_REGISTERED.value,
        AUDIT_EVENTS.subject_user_id.in_(
            sa_select(accepted.c.subject_user_id).where(
                accepted.c.group_id == bindparam("group_id"),
                accepted.c.action == AuditAction.INVITATION_ACCEPTED.value,
            )
        ),
        after_cursor=after_cursor,
    ).subquery("joined")
    both = union_all(sa_select(*own.c), sa_select(*joined.c)).subquery("both_pages")
    page = (
        sa_select(*both.c)
        .where(*may_read)
        .order_by(both.c.occurred_at.desc(), both.c.id.desc())
        .limit(bindparam("limit"))
        .lateral("page")
    )
    return (
        sa_select(
            *listing_caller_columns(allowed, with_superuser=True),
            *page.c,
        )
        .select_from(CALLER.outerjoin(allowed, true()).outerjoin(page, true()))
        .order_by(page.c.occurred_at.desc(), page.c.id.desc())
    )


GROUP_EVENTS_PAGE: Final = _group_events_statement(after_cursor=False)
GROUP_EVENTS_PAGE_AFTER: Final = _group_events_statement(after_cursor=True)


async def list_group_events(
    reader: Reader, credentials: Credentials, group_id: int, page: EventPageParams
) -> EventPage:
    """A group's audit trail, newest first, for its owners and admins (and superusers); a
    plain member is refused (403), anyone else learns nothing (404). One statement."""
    statement = GROUP_EVENTS_PAGE if page.cursor is None else GROUP_EVENTS_PAGE_AFTER
    rows = await reader.all(
        statement, {"group_id": group_id, **page.parameters(), **credentials.parameters()}
    )
    listing_caller_row(rows, roles=EVENT_READER_ROLES)
    return event_page_of([row._mapping for row in rows], page.limit)


async def _membership(session: AsyncSession, group_id: int, user_id: uuid.UUID) -> Membership:
    membership = (
        await session.exec(
            select(Membership)
            .options(joinedload(Membership.user))  # type: ignore[arg-type]
            .where(_is_member_of(group_id, user_id))
        )
    ).first()
    if membership is None:
        raise MemberNotFoundError
    return membership


async def _other_owner_exists(session: AsyncSession, group_id: int, user_id: uuid.UUID) -> bool:
    other = (
        await session.exec(
            select(Membership.user_id)
            .where(
                Membership.group_id == group_id,
                Membership.role == GroupRole.OWNER,
                Membership.user_id != user_id,
            )
            .limit(1)
        )
    ).first()
    return other is not None


# -- adding and removing a member: one statement each, built once ----------------------------

# The membership and the new member's address, as the response shows them. No prior look-up of
# the user: the foreign key refuses one that does not exist (UserNotFoundError), the primary
# key a second membership (MembershipAlreadyExistsError).
_INSERTED: Final = (
    sa_insert(MEMBERSHIPS)
    .values(
        group_id=bindparam("group_id"),
        user_id=bindparam("user_id"),
        role=bindparam("role"),
        joined_at=bindparam("joined_at"),
    )
    .returning(
        MEMBERSHIPS.c.group_id, MEMBERSHIPS.c.user_id, MEMBERSHIPS.c.role, MEMBERSHIPS.c.joined_at
    )
    .cte("inserted")
)
_EVENT_COLUMNS: Final = ("actor_id", "action", "group_id", "subject_user_id", "details")


def _member_event(changed: Any, action: ColumnElement[Any]) -> Any:
    """The audit event of a membership change, written from the change's own RETURNING in the
    same statement (a data-modifying CTE runs whether or not the query reads it): no round
    trip of its own, and a change that fails (a unique violation, no row) writes nothing."""
    return (
        sa_insert(audit_event)
        .from_select(
            list(_EVENT_COLUMNS),
            sa_select(
                bindparam("actor_id", type_=Uuid),
                action,
                changed.c.group_id,
                changed.c.user_id,
                func.jsonb_build_object(literal_column("'role'"), changed.c.role),
            ),
        )
        .cte(f"{changed.name}_event")
    )


ADD_MEMBER: Final = (
    sa_select(
        _INSERTED.c.user_id,
        USERS.c.email,
        USERS.c.display_name,
        _INSERTED.c.role,
        _INSERTED.c.joined_at,
    )
    .join_from(_INSERTED, USERS, USERS.c.id == _INSERTED.c.user_id)
    .add_cte(
        _member_event(
            _INSERTED, literal(AuditAction.MEMBER_ADDED.value, type_=AUDIT_EVENTS.action.type)
        )
    )
)

# Removes the member only where the caller may: a plain member, or anyone when the caller may
# remove anyone (an owner, a superuser, or the member leaving), and never the last owner. No
# row: the reason is read afterwards (see _refusal), under the same lock.
_OTHER_OWNERS: Final = MEMBERSHIPS.alias("other_owner")
_REMOVED: Final = (
    sa_delete(MEMBERSHIPS)
    .where(
        MEMBERSHIPS.c.group_id == bindparam("group_id"),
        MEMBERSHIPS.c.user_id == bindparam("member_id"),
        or_(
            MEMBERSHIPS.c.role == GroupRole.MEMBER,
            bindparam("may_remove_anyone", type_=Boolean),
        ),
        or_(
            MEMBERSHIPS.c.role != GroupRole.OWNER,
            sa_select(_OTHER_OWNERS.c.user_id)
            .where(
                _OTHER_OWNERS.c.group_id == MEMBERSHIPS.c.group_id,
                _OTHER_OWNERS.c.role == GroupRole.OWNER,
                _OTHER_OWNERS.c.user_id != MEMBERSHIPS.c.user_id,
            )
            .exists(),
        ),
    )
    .returning(MEMBERSHIPS.c.group_id, MEMBERSHIPS.c.user_id, MEMBERSHIPS.c.role)
    .cte("removed")
)
# `member.left` when the member removes themselves, else `member.removed` (`:action`).
REMOVE_MEMBER: Final = sa_select(_REMOVED.c.role).add_cte(
    _member_event(_REMOVED, bindparam("action", type_=AUDIT_EVENTS.action.type))
)
MEMBER_ROLE: Final = sa_select(MEMBERSHIPS.c.role).where(
    MEMBERSHIPS.c.group_id == bindparam("group_id"),
    MEMBERSHIPS.c.user_id == bindparam("member_id"),
)


# -- who may add or remove a member: one statement, built once -------------------------------
#
# Who calls (CALLER), whether they may change the group's memberships, and the locks, in one
# statement. A member's lateral locks the group row and the caller's own membership row
# (`FOR NO KEY UPDATE`: it does not block the foreign-key checks of concurrent inserts); it
# returns, so locks, no row for a non-member, who never waits behind the group's writers. A
# request that waited for the group's lock sees the role as the previous holder left it:
# Postgres re-reads the latest version of every row it locks (the caller's membership) and
# checks the conditions again, so a demotion or a removal that just committed counts. Postgres
# refuses to lock the nullable side of an outer join, so the superuser who is not a member has
# a lateral of their own, which locks the group row alone, only when the member's found none.
# Every lateral is filtered on an active caller: an inactive one locks nothing.
_OWN_MEMBERSHIP: Final = MEMBERSHIPS.alias("own_membership")
_AS_MEMBER: Final = (
    sa_select(GROUPS.c.id.label("group_id"), _OWN_MEMBERSHIP.c.role.label("role"))
    .join_from(
        GROUPS,
        _OWN_MEMBERSHIP,
        and_(_OWN_MEMBERSHIP.c.group_id == GROUPS.c.id, _OWN_MEMBERSHIP.c.user_id == CALLER.c.id),
    )
    .where(GROUPS.c.id == bindparam("group_id"), CALLER.c.is_active)
    .with_for_update(key_share=True, of=[GROUPS, _OWN_MEMBERSHIP])
    .lateral("as_member")
)
_AS_SUPERUSER: Final = (
    sa_select(GROUPS.c.id.label("group_id"))
    .where(
        GROUPS.c.id == bindparam("group_id"),
        CALLER.c.is_active,
        CALLER.c.is_superuser,
        _AS_MEMBER.c.group_id.is_(None),
    )
    .with_for_update(key_share=True, of=GROUPS)
    .lateral("as_superuser")
)
MEMBERSHIP_WRITE_ACCESS: Final = sa_select(
    CALLER.c.id,
    CALLER.c.is_active,
    CALLER.c.is_superuser,
    func.coalesce(_AS_MEMBER.c.group_id, _AS_SUPERUSER.c.group_id).label("group_id"),
    _AS_MEMBER.c.role,
).select_from(CALLER.outerjoin(_AS_MEMBER, true()).outerjoin(_AS_SUPERUSER, true()))


@dataclass(frozen=True)
class WriteAccess:
    """The caller of a membership write, as `MEMBERSHIP_WRITE_ACCESS` found them."""

    user_id: uuid.UUID
    is_superuser: bool
    # None for a superuser who is not a member.
    role: GroupRole | None

    def allows(self, minimum: GroupRole) -> bool:
        return self.is_superuser or role_at_least(self.role, minimum)


async def authorize_membership_write(
    connection: AsyncConnection,
    credentials: Credentials,
    group_id: int,
    minimum: GroupRole = GroupRole.MEMBER,
) -> WriteAccess:
    """The caller and their role in the group, if they hold at least `minimum` (superusers
    always do), with the group's row lock (and a member's own membership row) taken for the
    rest of the transaction. 401 without an active caller; a non-member learns nothing (the
    group is "not found") and takes no lock. One statement."""
    row = (
        await connection.execute(
            MEMBERSHIP_WRITE_ACCESS, {"group_id": group_id, **credentials.parameters()}
        )
    ).first()
    if row is None or not row.is_active:
        # Neither the cookie's token nor the JWT's subject is a user, or not an active one.
        raise not_authenticated()
    if row.group_id is None:
        raise GroupNotFoundError
    access = WriteAccess(
        user_id=row.id, is_superuser=row.is_superuser, role=_role_or_none(row.role)
    )
    if not access.allows(minimum):
        raise InsufficientGroupRoleError
    return access


async def insert_membership(
    connection: AsyncConnection,
    statement: Executable,
    parameters: Mapping[str, Any],
    *,
    missing: type[GroupsError],
) -> Row[Any]:
    """Run a statement that inserts a membership and return its one row. An existing
    membership is MembershipAlreadyExistsError; a row the membership refers to that is not
    there (a foreign key violation) is `missing`."""
    try:
        return (await connection.execute(statement, parameters)).one()
    except IntegrityError as error:
        if is_unique_violation(error):
            raise MembershipAlreadyExistsError from error
        if is_foreign_key_violation(error):
            raise missing from error
        raise


async def add_member(
    session: AsyncSession, credentials: Credentials, group_id: int, data: MembershipCreate
) -> MemberPublic:
    """Add a user with a role (owner, admin; only an owner grants owner). Two statements: the
    caller with their role and the lock, then the insert, which also reads the new member's
    address."""
    connection = await session.connection()
    access = await authorize_membership_write(connection, credentials, group_id, GroupRole.ADMIN)
    if data.role is GroupRole.OWNER and not access.allows(GroupRole.OWNER):
        raise InsufficientGroupRoleError
    row = await insert_membership(
        connection,
        ADD_MEMBER,
        {
            "group_id": group_id,
            "user_id": data.user_id,
            "role": data.role,
            "joined_at": utc_now(),
            "actor_id": access.user_id,
        },
        # No such account (or it was deleted meanwhile).
        missing=UserNotFoundError,
    )
    return MemberPublic.model_validate(row._mapping)


async def change_role(
    session: AsyncSession, user: User, group_id: int, member_id: uuid.UUID, role: GroupRole
) -> MemberPublic:
    """Give a member another role (owner). The last owner cannot be demoted."""
    await authorize(session, user, group_id, GroupRole.OWNER, lock=True)
    membership = await _membership(session, group_id, member_id)
    if (
        membership.role is GroupRole.OWNER
        and role is not GroupRole.OWNER
        and not await _other_owner_exists(session, group_id, member_id)
    ):
        raise LastOwnerError
    old_role = membership.role
    if role is old_role:
        return _member_public(membership)
    membership.role = role
    await session.flush()
    await _record_group_event(
        session,
        AuditAction.MEMBER_ROLE_CHANGED,
        user,
        group_id,
        {"old_role": old_role.value, "new_role": role.value},
        subject_user_id=member_id,
    )
    return _member_public(membership)


async def remove_member(
    session: AsyncSession, credentials: Credentials, group_id: int, member_id: uuid.UUID
) -> None:
    """Remove a member: an owner removes anyone, an admin removes plain members, and anyone
    may leave. The last owner cannot go. Two statements: the caller with their role and the
    lock, then the delete (and, when it deletes nothing, a third that says why)."""
    connection = await session.connection()
    access = await authorize_membership_write(connection, credentials, group_id)
    leaving = member_id == access.user_id
    if not leaving and not access.allows(GroupRole.ADMIN):
        raise InsufficientGroupRoleError
    # Admins remove plain members only; owners (and superusers) remove anyone.
    may_remove_anyone = leaving or access.allows(GroupRole.OWNER)
    parameters = {
        "group_id": group_id,
        "member_id": member_id,
        "may_remove_anyone": may_remove_anyone,
        "actor_id": access.user_id,
        "action": AuditAction.MEMBER_LEFT if leaving else AuditAction.MEMBER_REMOVED,
    }
    removed = (await connection.execute(REMOVE_MEMBER, parameters)).first()
    if removed is not None:
        return
    role = (await connection.execute(MEMBER_ROLE, parameters)).scalar_one_or_none()
    if role is None:
        raise MemberNotFoundError
    if role is not GroupRole.MEMBER and not may_remove_anyone:
        raise InsufficientGroupRoleError
    # The only row the delete keeps that the caller may remove: the last owner.
    raise LastOwnerError


__all__ = [
    "MEMBERSHIP_WRITE_ACCESS",
    "ROLE_RANK",
    "GroupAccess",
    "Listing",
    "MemberCursor",
    "WriteAccess",
    "add_member",
    "authorize",
    "authorize_membership_write",
    "change_role",
    "check_member_cursor",
    "create_group",
    "delete_group",
    "get_group",
    "insert_membership",
    "list_all_groups",
    "list_group_events",
    "list_groups_of",
    "list_members",
    "list_users",
    "listing_access",
    "listing_caller_columns",
    "listing_caller_row",
    "remove_member",
    "role_at_least",
    "update_group",
]
