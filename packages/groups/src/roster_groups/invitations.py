"""Invitations by email: the rules and the statements behind them.

Who may do what:

- owners and admins invite members and admins, and only owners (and superusers) invite
  owners; they list the group's invitations and revoke them (an owner's invitation, only an
  owner or a superuser);
- the invitee, signed in with the invited address (letter case ignored, as the user table's
  unique index ignores it), accepts or declines with the mail's token, and lists the pending
  invitations to their address once it is verified.

The token is `secrets.token_urlsafe(32)`; only its SHA-256 digest is stored. An invitation
lasts `InvitationConfig.lifetime_seconds`; "expired" is read from `expires_at` against the
configured clock, never stored.

A repeat invitation is refused (409 `INVITATION_ALREADY_PENDING`) while one is pending and
unexpired, rather than refreshing it: the first mail's link keeps working as announced, and an
owner who wants to send another revokes the pending one and invites again (an expired one does
not count, so inviting again after expiry needs nothing).

Accepting verifies the account's address when it is not verified yet: the token reached that
inbox, which is what a verification mail proves. Listing the invitations to one's address needs
a verified address (403 `EMAIL_NOT_VERIFIED`), so an account registered with someone else's
address learns nothing of their invitations.

Races. Creating and revoking take the group's row lock, as every write of a group's owners and
admins does, so the check for a member or a pending invitation with that address and the
insert that follows see the same group. Accepting takes no such lock (the invitee is no member
yet, and non-members never wait for a group's writers): it takes the group row in KEY SHARE
mode, the lock the membership's foreign key takes anyway (so it waits only for a group being
deleted, and the lock order is the deletion's: group, then invitation), then one conditional
`UPDATE ... WHERE status = 'pending' ... RETURNING` on the invitation and the membership's
insert in the same transaction. Two accepts of one token, or an accept and a revoke, meet on
the invitation's row lock: the second re-reads the row once the first commits, finds it no
longer pending, and is refused. An accept and the group's deletion end with neither
(`INVITATION_NOT_FOUND`) or both (the membership deleted with the group); the inviter's
deletion only sets `invited_by` NULL, and the accept goes on.
"""

import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    true,
)
from sqlalchemy import Select as SaSelect
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import CALLER, Credentials, MailKind, MailMessage, User, not_authenticated
from roster_auth.mail import link_with_token
from roster_db import PageParams, Reader
from roster_db.audit import INSERT_EVENT, AuditAction, event_parameters, record_event
from roster_groups.config import InvitationConfig
from roster_groups.errors import (
    EmailNotVerifiedError,
    InsufficientGroupRoleError,
    InvitationAlreadyPendingError,
    InvitationAlreadyUsedError,
    InvitationEmailMismatchError,
    InvitationExpiredError,
    InvitationNotFoundError,
    InvitationNotPendingError,
    InvitationRevokedError,
    MembershipAlreadyExistsError,
    UnknownInvitationTokenError,
)
from roster_groups.models import GroupInvitation, GroupRole, InvitationStatus, Membership, UserGroup
from roster_groups.schemas import (
    GroupPublic,
    InvitationCreate,
    InvitationPublic,
    MyInvitationPublic,
)
from roster_groups.service import (
    LISTING_CALLER_ACTIVE,
    LISTING_TOTAL,
    authorize,
    insert_membership,
    listing_access,
    listing_caller_columns,
    listing_caller_row,
)

INVITATIONS: Final = GroupInvitation.__table__  # type: ignore[attr-defined]
GROUPS: Final = UserGroup.__table__  # type: ignore[attr-defined]
MEMBERSHIPS: Final = Membership.__table__  # type: ignore[attr-defined]
USERS: Final = cast(Table, User.__table__)

PENDING: Final = InvitationStatus.PENDING.value
# Written into the statement, not bound: the planner matches it against the partial index
# ix_group_invitation_pending_email (WHERE status = 'pending'), which a parameter cannot be.
_IS_PENDING: Final = INVITATIONS.c.status == literal_column(f"'{PENDING}'")
TOKEN_BYTES: Final = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    """What is stored of a token, and looked up by."""
    return hashlib.sha256(token.encode("ascii")).digest()


def _status_at(now: ColumnElement[Any]) -> ColumnElement[str]:
    """The status a client sees: a pending invitation past its expiry reads as expired."""
    return case(
        (
            and_(_IS_PENDING, INVITATIONS.c.expires_at <= now),
            InvitationStatus.EXPIRED.value,
        ),
        else_=INVITATIONS.c.status,
    )


def _is_live(now: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(_IS_PENDING, INVITATIONS.c.expires_at > now)


_NOW: Final = bindparam("now", type_=INVITATIONS.c.expires_at.type)
_EMAIL: Final = bindparam("email", type_=INVITATIONS.c.email.type)
# Not named as columns: an UPDATE reserves its table's column names for its SET clause.
_GROUP_ID: Final = bindparam("group", type_=INVITATIONS.c.group_id.type)
_TOKEN_HASH: Final = bindparam("digest", type_=INVITATIONS.c.token_hash.type)
_USER_ID: Final = bindparam("user_id", type_=USERS.c.id.type)
_INVITATION_ID: Final = bindparam("invitation_id", type_=INVITATIONS.c.id.type)

INVITATION_FIELDS: Final = tuple(InvitationPublic.model_fields)


def _invitation_columns(now: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    # Named as InvitationPublic's fields (a field that is not a column fails at import).
    columns: dict[str, ColumnElement[Any]] = {
        name: INVITATIONS.c[name] for name in INVITATION_FIELDS if name != "status"
    }
    columns["status"] = _status_at(now)
    return [columns[name].label(name) for name in INVITATION_FIELDS]


# -- creating --------------------------------------------------------------------------------

_member_with_email: Final = (
    sa_select(MEMBERSHIPS.c.user_id)
    .join(USERS, USERS.c.id == MEMBERSHIPS.c.user_id)
    .where(MEMBERSHIPS.c.group_id == _GROUP_ID, func.lower(USERS.c.email) == func.lower(_EMAIL))
    .exists()
)
_pending_for_email: Final = (
    sa_select(INVITATIONS.c.id)
    .where(
        func.lower(INVITATIONS.c.email) == func.lower(_EMAIL),
        INVITATIONS.c.group_id == _GROUP_ID,
        _is_live(_NOW),
    )
    .exists()
)
_INSERTED_COLUMNS: Final = (
    "id",
    "group_id",
    "email",
    "role",
    "token_hash",
    "invited_by",
    "status",
    "created_at",
    "expires_at",
)
# The invitation, unless the address is a member's or has a live invitation to the group: one
# statement under the group's lock; no row, and a second statement says which (see
# CREATE_REFUSAL). The same statements run whether or not an account has the address.
CREATE_INVITATION: Final = (
    sa_insert(INVITATIONS)
    .from_select(
        list(_INSERTED_COLUMNS),
        sa_select(
            *(
                bindparam(name, type_=INVITATIONS.c[name].type).label(name)
                if name not in ("group_id", "email", "created_at")
                else {"group_id": _GROUP_ID, "email": _EMAIL, "created_at": _NOW}[name].label(name)
                for name in _INSERTED_COLUMNS
            )
        ).where(~_member_with_email, ~_pending_for_email),
    )
    .returning(*_invitation_columns(_NOW))
)
CREATE_REFUSAL: Final = sa_select(_member_with_email.label("member"))


@dataclass(frozen=True)
class CreatedInvitation:
    invitation: InvitationPublic
    # To send once the transaction has committed.
    mail: MailMessage


async def create_invitation(
    session: AsyncSession,
    user: User,
    group_id: int,
    data: InvitationCreate,
    config: InvitationConfig,
) -> CreatedInvitation:
    """Invite an address into a group with a role (owner, admin; only an owner invites an
    owner). Three statements: the lock with the caller's role (and the group's name, for the
    mail), the insert, its audit event; a refusal reads its reason instead of the event. The
    mail is returned, to be sent once the transaction has committed."""
    access = await authorize(session, user, group_id, GroupRole.ADMIN, lock=True)
    if data.role is GroupRole.OWNER and not access.allows(GroupRole.OWNER):
        raise InsufficientGroupRoleError
    now = config.clock()
    token = new_token()
    parameters: dict[str, object] = {
        "id": uuid.uuid4(),
        "group": group_id,
        "email": data.email,
        "role": data.role,
        "token_hash": token_digest(token),
        "invited_by": user.id,
        "status": PENDING,
        "now": now,
        "expires_at": now + config.lifetime,
    }
    connection = await session.connection()
    row = (await connection.execute(CREATE_INVITATION, parameters)).first()
    if row is None:
        member = (await connection.execute(CREATE_REFUSAL, parameters)).scalar_one()
        raise MembershipAlreadyExistsError if member else InvitationAlreadyPendingError
    invitation = InvitationPublic.model_validate(row._mapping)
    # The invitee has no id in the trail until they accept: never their address.
    await record_event(
        connection,
        AuditAction.INVITATION_CREATED,
        actor_id=user.id,
        group_id=group_id,
        details={"invitation_id": str(invitation.id), "role": invitation.role.value},
    )
    return CreatedInvitation(
        invitation=invitation,
        mail=invitation_mail(config, invitation, access.group.name, user, token),
    )


def invitation_mail(
    config: InvitationConfig,
    invitation: InvitationPublic,
    group_name: str,
    inviter: User,
    token: str,
) -> MailMessage:
    link = link_with_token(config.public_base_url, config.accept_path, token)
    product = config.product_name
    inviter_name = (
        f"{inviter.display_name} ({inviter.email})" if inviter.display_name else inviter.email
    )
    expires = invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return MailMessage(
        to=invitation.email,
        subject=f'{product}: you are invited to join "{group_name}"',
        kind=MailKind.INVITATION,
        link=link,
        body=(
            f'{inviter_name} invites you to join the group "{group_name}" on {product} as '
            f"{invitation.role.value}.\n\nTo accept or decline, open this link (valid until "
            f"{expires}):\n\n{link}\n\nSign in with this address, {invitation.email}, or "
            "create an account with it first. If you do not want to join, ignore this mail: "
            "the invitation expires by itself."
        ),
    )


# -- revoking --------------------------------------------------------------------------------

_in_group: Final = and_(INVITATIONS.c.id == _INVITATION_ID, INVITATIONS.c.group_id == _GROUP_ID)
REVOKE_INVITATION: Final = (
    sa_update(INVITATIONS)
    .where(
        _in_group,
        _is_live(_NOW),
        or_(
            INVITATIONS.c.role != GroupRole.OWNER,
            bindparam("may_revoke_owners", type_=Boolean),
        ),
    )
    .values(status=InvitationStatus.REVOKED.value, responded_at=_NOW)
    .returning(INVITATIONS.c.id, INVITATIONS.c.role)
)
REVOKE_REFUSAL: Final = sa_select(
    _is_live(_NOW).label("live"), INVITATIONS.c.role.label("role")
).where(_in_group)


async def revoke_invitation(
    session: AsyncSession,
    user: User,
    group_id: int,
    invitation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Revoke a pending invitation (owner, admin; an owner's invitation, owners only). One
    that is no longer pending (answered, revoked or expired) is a 409."""
    access = await authorize(session, user, group_id, GroupRole.ADMIN, lock=True)
    parameters = {
        "group": group_id,
        "invitation_id": invitation_id,
        "now": now,
        "may_revoke_owners": access.allows(GroupRole.OWNER),
    }
    connection = await session.connection()
    revoked = (await connection.execute(REVOKE_INVITATION, parameters)).first()
    if revoked is not None:
        await record_event(
            connection,
            AuditAction.INVITATION_REVOKED,
            actor_id=user.id,
            group_id=group_id,
            details={"invitation_id": str(invitation_id), "role": revoked.role},
        )
        return
    refusal = (await connection.execute(REVOKE_REFUSAL, parameters)).first()
    if refusal is None:
        raise InvitationNotFoundError
    if not refusal.live:
        raise InvitationNotPendingError
    raise InsufficientGroupRoleError


# -- accepting and declining -----------------------------------------------------------------

# The group row in KEY SHARE mode, through the token: what the membership's foreign key would
# take anyway, taken first so that the lock order is a group deletion's (group, invitation).
LOCK_GROUP_OF_TOKEN: Final = (
    sa_select(*(GROUPS.c[name] for name in GroupPublic.model_fields if name != "role"))
    .where(
        GROUPS.c.id
        == sa_select(INVITATIONS.c.group_id)
        .where(INVITATIONS.c.token_hash == _TOKEN_HASH)
        .scalar_subquery()
    )
    .with_for_update(key_share=True, read=True)
)
_callers_email: Final = (
    sa_select(func.lower(USERS.c.email)).where(USERS.c.id == _USER_ID).scalar_subquery()
)
_answerable: Final = and_(
    INVITATIONS.c.token_hash == _TOKEN_HASH,
    _is_live(_NOW),
    func.lower(INVITATIONS.c.email) == _callers_email,
)


def _answer(status: InvitationStatus) -> Any:
    return (
        sa_update(INVITATIONS)
        .where(_answerable)
        .values(status=status.value, responded_at=_NOW)
        .returning(INVITATIONS.c.id, INVITATIONS.c.group_id, INVITATIONS.c.role)
    )


ACCEPT_INVITATION: Final = _answer(InvitationStatus.ACCEPTED)
DECLINE_INVITATION: Final = _answer(InvitationStatus.DECLINED)
ADD_INVITED_MEMBER: Final = (
    sa_insert(MEMBERSHIPS)
    .values(
        group_id=_GROUP_ID,
        user_id=_USER_ID,
        role=bindparam("role", type_=MEMBERSHIPS.c.role.type),
        joined_at=_NOW,
    )
    .returning(MEMBERSHIPS.c.user_id, MEMBERSHIPS.c.role, MEMBERSHIPS.c.joined_at)
)
# The token proved the inbox: the account's address is verified from now on.
VERIFY_ACCOUNT: Final = (
    sa_update(USERS)
    .where(USERS.c.id == _USER_ID, USERS.c.is_verified.is_(False))
    .values(is_verified=True)
)
# Why a token was refused, read only when the answer changed nothing.
TOKEN_REFUSAL: Final = sa_select(
    INVITATIONS.c.status.label("status"),
    (INVITATIONS.c.expires_at > _NOW).label("unexpired"),
    (func.lower(INVITATIONS.c.email) == _callers_email).label("mine"),
).where(INVITATIONS.c.token_hash == _TOKEN_HASH)


async def _refuse_token(connection: AsyncConnection, parameters: Mapping[str, object]) -> None:
    row = (await connection.execute(TOKEN_REFUSAL, parameters)).first()
    if row is None:
        raise UnknownInvitationTokenError
    if row.status in (InvitationStatus.ACCEPTED.value, InvitationStatus.DECLINED.value):
        raise InvitationAlreadyUsedError
    if row.status == InvitationStatus.REVOKED.value:
        raise InvitationRevokedError
    if not row.unexpired:
        raise InvitationExpiredError
    if not row.mine:
        raise InvitationEmailMismatchError
    # Pending, unexpired and the caller's, yet not updated: it changed between the two
    # statements (its group deleted, say). Nothing was written.
    raise UnknownInvitationTokenError


async def accept_invitation(
    session: AsyncSession, user: User, token: str, now: datetime
) -> GroupPublic:
    """Make the caller a member with the invited role, once, and return the group joined.
    The invitation must be pending, unexpired and for the caller's address; the address
    becomes verified. Four statements (the group's KEY SHARE lock, the invitation's update,
    the membership's insert, the audit events: `invitation.accepted`, `member.added`, and
    `user.verified` with the verification's update when the address was not verified); a
    refusal reads its reason instead."""
    parameters: dict[str, object] = {
        "digest": token_digest(token),
        "user_id": user.id,
        "now": now,
    }
    connection = await session.connection()
    locked = (await connection.execute(LOCK_GROUP_OF_TOKEN, parameters)).first()
    accepted = (
        (await connection.execute(ACCEPT_INVITATION, parameters)).first()
        if locked is not None
        else None
    )
    if accepted is None:
        await _refuse_token(connection, parameters)
    assert accepted is not None
    # On an error the session rolls back: the invitation stays pending.
    member = await insert_membership(
        connection,
        ADD_INVITED_MEMBER,
        {**parameters, "group": accepted.group_id, "role": accepted.role},
        missing=UnknownInvitationTokenError,
    )
    invited = {"invitation_id": str(accepted.id), "role": accepted.role}
    events = [
        event_parameters(
            action,
            actor_id=user.id,
            group_id=accepted.group_id,
            subject_user_id=user.id,
            details=invited,
        )
        for action in (AuditAction.INVITATION_ACCEPTED, AuditAction.MEMBER_ADDED)
    ]
    if not user.is_verified:
        await connection.execute(VERIFY_ACCOUNT, parameters)
        events.append(
            event_parameters(
                AuditAction.USER_VERIFIED,
                actor_id=user.id,
                subject_user_id=user.id,
                details={"by": "invitation", "invitation_id": str(accepted.id)},
            )
        )
    await connection.execute(INSERT_EVENT, events)
    assert locked is not None
    # The group joined, with the caller's new role.
    return GroupPublic(**locked._mapping, role=member.role)


async def decline_invitation(session: AsyncSession, user: User, token: str, now: datetime) -> None:
    """Decline an invitation to the caller's address: it can no longer be accepted. Two
    statements, the update and its audit event; a refusal reads its reason instead."""
    parameters = {"digest": token_digest(token), "user_id": user.id, "now": now}
    connection = await session.connection()
    declined = (await connection.execute(DECLINE_INVITATION, parameters)).first()
    if declined is None:
        await _refuse_token(connection, parameters)
    assert declined is not None
    await record_event(
        connection,
        AuditAction.INVITATION_DECLINED,
        actor_id=user.id,
        group_id=declined.group_id,
        subject_user_id=user.id,
        details={"invitation_id": str(declined.id), "role": declined.role},
    )


# -- the listings: one statement each, built once --------------------------------------------
#
# As roster_groups.service's listings: the caller's row (roster-auth's CALLER), whether they
# may see the group's invitations, the total and the page in one statement, the subqueries
# LATERAL and filtered on the access check so that they run only for a caller who passed it.

LISTING_CALLER_VERIFIED: Final = "caller_is_verified"
# Who reads a group's invitations, besides superusers: the roles that may invite.
INVITATION_READER_ROLES: Final = (GroupRole.OWNER, GroupRole.ADMIN)
_PAGE_CREATED_AT: Final = "page_created_at"
_PAGE_ID: Final = "page_id"


def _status_filter(status: InvitationStatus | None) -> ColumnElement[bool]:
    if status is None:
        return true()
    if status is InvitationStatus.PENDING:
        return _is_live(_NOW)
    if status is InvitationStatus.EXPIRED:
        return and_(_IS_PENDING, INVITATIONS.c.expires_at <= _NOW)
    is_status: ColumnElement[bool] = INVITATIONS.c.status == status.value
    return is_status


def _page_of(invitations: SaSelect[Any]) -> FromClause:
    """A page of the selected invitations, newest first; the id breaks ties, so pages never
    overlap or skip."""
    return (
        invitations.order_by(INVITATIONS.c.created_at.desc(), INVITATIONS.c.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .lateral("page")
    )


def _group_invitations_statement(status: InvitationStatus | None) -> SaSelect[Any]:
    allowed = listing_access(_GROUP_ID)
    may_see = and_(
        allowed.c.group_id.is_not(None),
        or_(
            allowed.c.role.in_(INVITATION_READER_ROLES),
            CALLER.c.is_superuser,
        ),
    )
    selected = and_(INVITATIONS.c.group_id == _GROUP_ID, _status_filter(status))
    counted = (
        sa_select(func.count().label(LISTING_TOTAL))
        .select_from(INVITATIONS)
        .where(selected, may_see)
        .lateral("counted")
    )
    page = _page_of(
        sa_select(
            INVITATIONS.c.created_at.label(_PAGE_CREATED_AT),
            INVITATIONS.c.id.label(_PAGE_ID),
            *_invitation_columns(_NOW),
        ).where(selected, may_see)
    )
    return (
        sa_select(
            *listing_caller_columns(allowed, with_superuser=True),
            counted.c[LISTING_TOTAL],
            *(column for column in page.c if column.key not in (_PAGE_CREATED_AT,)),
        )
        .select_from(
            CALLER.outerjoin(allowed, true()).outerjoin(counted, true()).outerjoin(page, true())
        )
        .order_by(page.c[_PAGE_CREATED_AT].desc(), page.c[_PAGE_ID].desc())
    )


GROUP_INVITATIONS_PAGE: Final = {
    status: _group_invitations_statement(status) for status in (None, *InvitationStatus)
}


@dataclass(frozen=True)
class InvitationListing:
    """A page as the database returned it: items keyed by the response schema's fields."""

    items: list[dict[str, Any]]
    total: int


async def list_group_invitations(
    reader: Reader,
    credentials: Credentials,
    group_id: int,
    page: PageParams,
    now: datetime,
    status: InvitationStatus | None = None,
) -> InvitationListing:
    """A group's invitations (as InvitationPublic's fields), newest first, for its owners
    and admins (and superusers); `status` filters, `expired` included. One statement, the
    caller's row included, whatever the group and the page size."""
    rows = await reader.all(
        GROUP_INVITATIONS_PAGE[status],
        {
            "group": group_id,
            "limit": page.limit,
            "offset": page.offset,
            "now": now,
            **credentials.parameters(),
        },
    )
    first = listing_caller_row(rows, roles=INVITATION_READER_ROLES)
    return InvitationListing(items=_items(rows, INVITATION_FIELDS), total=first[LISTING_TOTAL])


def _items(rows: Sequence[Any], fields: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {name: mapping[name] for name in fields}
        for mapping in (row._mapping for row in rows)
        if mapping[_PAGE_ID] is not None
    ]


MY_INVITATION_FIELDS: Final = tuple(MyInvitationPublic.model_fields)


def _my_invitations_statement() -> SaSelect[Any]:
    me = USERS.alias("me")
    caller = (
        sa_select(
            CALLER.c.is_active,
            me.c.is_verified,
            func.lower(me.c.email).label("email"),
        )
        .select_from(CALLER.join(me, me.c.id == CALLER.c.id))
        .subquery("caller_account")
    )
    mine = and_(
        func.lower(INVITATIONS.c.email) == caller.c.email,
        _is_live(_NOW),
        caller.c.is_active,
        caller.c.is_verified,
    )
    counted = (
        sa_select(func.count().label(LISTING_TOTAL))
        .select_from(INVITATIONS)
        .where(mine)
        .lateral("counted")
    )
    columns: dict[str, ColumnElement[Any]] = {
        "id": INVITATIONS.c.id,
        "group_id": INVITATIONS.c.group_id,
        "group_name": GROUPS.c.name,
        "role": INVITATIONS.c.role,
        "created_at": INVITATIONS.c.created_at,
        "expires_at": INVITATIONS.c.expires_at,
    }
    page = _page_of(
        sa_select(
            INVITATIONS.c.created_at.label(_PAGE_CREATED_AT),
            INVITATIONS.c.id.label(_PAGE_ID),
            *(columns[name].label(name) for name in MY_INVITATION_FIELDS),
        )
        .select_from(INVITATIONS.join(GROUPS, GROUPS.c.id == INVITATIONS.c.group_id))
        .where(mine)
    )
    return (
        sa_select(
            caller.c.is_active.label(LISTING_CALLER_ACTIVE),
            caller.c.is_verified.label(LISTING_CALLER_VERIFIED),
            counted.c[LISTING_TOTAL],
            *(column for column in page.c if column.key != _PAGE_CREATED_AT),
        )
        .select_from(caller.outerjoin(counted, true()).outerjoin(page, true()))
        .order_by(page.c[_PAGE_CREATED_AT].desc(), page.c[_PAGE_ID].desc())
    )


MY_INVITATIONS_PAGE: Final = _my_invitations_statement()


async def list_my_invitations(
    reader: Reader, credentials: Credentials, page: PageParams, now: datetime
) -> InvitationListing:
    """The pending, unexpired invitations to the caller's address (letter case ignored),
    newest first; only for a verified address. One statement, the caller's row included."""
    rows = await reader.all(
        MY_INVITATIONS_PAGE,
        {"limit": page.limit, "offset": page.offset, "now": now, **credentials.parameters()},
    )
    if not rows or not rows[0]._mapping[LISTING_CALLER_ACTIVE]:
        raise not_authenticated()
    first = rows[0]._mapping
    if not first[LISTING_CALLER_VERIFIED]:
        raise EmailNotVerifiedError
    return InvitationListing(items=_items(rows, MY_INVITATION_FIELDS), total=first[LISTING_TOTAL])


__all__ = [
    "CreatedInvitation",
    "InvitationListing",
    "accept_invitation",
    "create_invitation",
    "decline_invitation",
    "invitation_mail",
    "list_group_invitations",
    "list_my_invitations",
    "new_token",
    "revoke_invitation",
    "token_digest",
]
