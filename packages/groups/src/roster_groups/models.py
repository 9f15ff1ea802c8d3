"""Groups and memberships: SQLModel tables on roster-db's shared registry, related both ways to
roster-auth's SQLAlchemy `User`.

Every relationship is `lazy="raise"`: under async a lazy load would be a hidden query (or a
`MissingGreenlet` crash), so queries load what they return and an accidental access fails loudly.
The relationships that reach into `User` are declared here, so roster-auth never imports us.
"""

import enum
import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Enum,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import relationship
from sqlmodel import Field, Relationship

from roster_auth import User
from roster_auth.models import EMAIL_MAX_LENGTH
from roster_db import SQLModelBase, create_with_table

GROUP_NAME_MAX_LENGTH: Final = 100
GROUP_DESCRIPTION_MAX_LENGTH: Final = 1000


class GroupRole(enum.StrEnum):
    """What a member may do in a group, from the most to the least powerful."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _role_type() -> Enum:
    # A VARCHAR with a CHECK constraint (ck_<table>_group_role), not a native Postgres enum:
    # adding a role later is a constraint swap, not an ALTER TYPE.
    return Enum(
        GroupRole,
        name="group_role",
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda roles: [role.value for role in roles],
        validate_strings=True,
    )


class UserGroup(SQLModelBase, table=True):
    """A named group of users. Names are unique whatever their letter case."""

    __tablename__ = "user_group"
    __table_args__ = (
        # The database, not a prior SELECT, decides uniqueness, so two racing creations of
        # "Team" and "team" end with one row and one unique violation.
        Index("uq_user_group_name_lower", func.lower(text("name")), unique=True),
        # Names are stored trimmed and non-empty (the schemas trim; this keeps other writers
        # honest).
        CheckConstraint("char_length(name) >= 1 AND name = btrim(name)", name="name_trimmed"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=GROUP_NAME_MAX_LENGTH, sa_type=String(GROUP_NAME_MAX_LENGTH))
    description: str | None = Field(
        default=None,
        max_length=GROUP_DESCRIPTION_MAX_LENGTH,
        sa_type=String(GROUP_DESCRIPTION_MAX_LENGTH),
    )
    created_at: datetime = Field(
        default_factory=utc_now,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now()},
        nullable=False,
    )

    memberships: list["Membership"] = Relationship(
        back_populates="group",
        # The database cascades deletes (ON DELETE CASCADE); passive_deletes keeps the ORM
        # from loading every membership (a lazy load, which raises) just to delete it.
        sa_relationship_kwargs={
            "lazy": "raise",
            "cascade": "all, delete-orphan",
            "passive_deletes": True,
        },
    )
    # Read-only: memberships are written through `Membership`, which carries the role.
    users: list[User] = Relationship(
        sa_relationship=relationship(
            User,
            secondary="membership",
            lazy="raise",
            viewonly=True,
            order_by="Membership.joined_at",
        )
    )

    def __repr__(self) -> str:
        return f"UserGroup(id={self.id!r}, name={self.name!r})"


class Membership(SQLModelBase, table=True):
    """One user in one group, with a role. At most one row per (group, user)."""

    __tablename__ = "membership"
    __table_args__ = (
        # A group's members in listing order: a page is a range of this index, read without
        # touching the table (role is included for the role filter and the response), then
        # joined to "user". Without it every page sorted all the group's members.
        Index(
            "ix_membership_group_id_joined_at",
            "group_id",
            "joined_at",
            "user_id",
            postgresql_include=["role"],
        ),
        # A user's groups and the cascade when a user is deleted. The primary key
        # (group_id, user_id) still serves the lookup of one membership.
        Index("ix_membership_user_id", "user_id"),
    )

    group_id: int = Field(foreign_key="user_group.id", ondelete="CASCADE", primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    role: GroupRole = Field(default=GroupRole.MEMBER, sa_type=_role_type(), nullable=False)
    joined_at: datetime = Field(
        default_factory=utc_now,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now()},
        nullable=False,
    )

    group: UserGroup = Relationship(
        back_populates="memberships", sa_relationship_kwargs={"lazy": "raise"}
    )
    user: User = Relationship(sa_relationship=relationship(User, lazy="raise"))

    def __repr__(self) -> str:
        return (
            f"Membership(group_id={self.group_id!r}, user_id={self.user_id!s}, "
            f"role={self.role.value!r})"
        )


class GroupMemberCount(SQLModelBase, table=True):
    """How many members a group has in each role, so that a listing's total is a read of at most
    three rows, not a count of every membership. Written only by the triggers below, in the
    transaction of the change they count: every path that changes memberships (the API, the
    cascades of a group's or an account's deletion, psql) keeps it. A role no one holds has
    no row or a row of 0; a group with no row has no members."""

    # No CHECK (member_count >= 0): Postgres checks the row an upsert proposes before it finds
    # the conflict, and the triggers' upsert proposes the (negative) change itself.
    __tablename__ = "group_member_count"

    group_id: int = Field(foreign_key="user_group.id", ondelete="CASCADE", primary_key=True)
    role: GroupRole = Field(sa_type=_role_type(), primary_key=True)
    member_count: int = Field(nullable=False)


class InvitationStatus(enum.StrEnum):
    """Where an invitation stands. `expired` is never stored: a pending invitation past its
    `expires_at` reads as expired (so no job has to mark it, and the clock alone decides)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


# What the status column may hold: every status but the derived one.
STORED_INVITATION_STATUSES: Final = tuple(
    status.value for status in InvitationStatus if status is not InvitationStatus.EXPIRED
)
INVITATION_TOKEN_DIGEST_SIZE: Final = 32  # SHA-256


class GroupInvitation(SQLModelBase, table=True):
    """An invitation, by email, to join a group with a role. The token that the mail carries is
    never stored: only its SHA-256 digest, so a copy of the table lets nobody in.

    A group's deletion deletes its invitations (ON DELETE CASCADE); the inviter's deletion
    keeps them valid, with `invited_by` NULL (ON DELETE SET NULL)."""

    __tablename__ = "group_invitation"
    __table_args__ = (
        UniqueConstraint("token_hash"),
        CheckConstraint(
            f"octet_length(token_hash) = {INVITATION_TOKEN_DIGEST_SIZE}",
            name="token_hash_is_a_digest",
        ),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in STORED_INVITATION_STATUSES)),
            name="status",
        ),
        # Answered invitations say when; pending ones do not.
        CheckConstraint(
            "(status = 'pending') = (responded_at IS NULL)", name="responded_at_when_answered"
        ),
        # A group's invitations, newest first (its listing), and the cascade of its deletion.
        Index("ix_group_invitation_group_id_created_at", "group_id", "created_at", "id"),
        # Pending invitations by address: the invitee's listing, and the check for a pending
        # invitation to the same address when another is created. Letter case ignored, as the
        # user table's unique index does.
        Index(
            "ix_group_invitation_pending_email",
            func.lower(text("email")),
            "group_id",
            postgresql_where=text("status = 'pending'"),
        ),
        # The SET NULL when an inviter's account is deleted.
        Index("ix_group_invitation_invited_by", "invited_by"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    group_id: int = Field(foreign_key="user_group.id", ondelete="CASCADE")
    email: str = Field(max_length=EMAIL_MAX_LENGTH, sa_type=String(EMAIL_MAX_LENGTH))
    role: GroupRole = Field(default=GroupRole.MEMBER, sa_type=_role_type(), nullable=False)
    token_hash: bytes = Field(sa_type=LargeBinary, nullable=False)
    invited_by: uuid.UUID | None = Field(
        default=None, foreign_key="user.id", ondelete="SET NULL", nullable=True
    )
    status: str = Field(default=InvitationStatus.PENDING.value, sa_type=String(20), nullable=False)
    created_at: datetime = Field(
        default_factory=utc_now,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now()},
        nullable=False,
    )
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    # When it was accepted, declined or revoked.
    responded_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True), nullable=True
    )

    def __repr__(self) -> str:
        # No email and no digest: a repr in a log names the invitation, not the invitee.
        return (
            f"GroupInvitation(id={self.id!s}, group_id={self.group_id!r}, status={self.status!r})"
        )


# The other direction, added from this side: roster-auth's `User` learns its groups without
# importing roster-groups. Read-only, like `UserGroup.users`.
membership_table: Final = sa_inspect(Membership).local_table
User.groups = relationship(
    UserGroup,
    secondary=membership_table,
    lazy="raise",
    viewonly=True,
    order_by=UserGroup.name,
)


# When an account is deleted, its memberships go with it (ON DELETE CASCADE); this trigger keeps
# every group owned: when a group loses its last owner by any path other than the group's own
# deletion, its longest-standing admin (else member) becomes owner, and a group left with no
# member at all is deleted. The API itself never removes a last owner (409 LAST_OWNER); this
# covers account deletion (FastAPI Users' manager, an admin in psql), whatever deletes the row.
# It locks the group row like the service does, so it serialises with concurrent role changes.
# It records what it did in the audit trail (roster_db.audit), in the deleting transaction:
# `member.promoted_on_owner_deletion` for the successor (details: old and new role, the
# deleted owner's id), `group.deleted` for a group left empty; the actor is the transaction's
# `roster.audit_actor_id` setting (roster-auth sets it when a superuser deletes an account),
# else NULL, the system.
# One statement per string: asyncpg prepares each statement, and a prepared statement holds one.
CREATE_KEEP_AN_OWNER_SQL: Final[tuple[str, ...]] = (
    """
CREATE OR REPLACE FUNCTION membership_keep_an_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    successor uuid;
    successor_role varchar(20);
    actor uuid := nullif(current_setting('roster.audit_actor_id', true), '')::uuid;
BEGIN
    IF OLD.role <> 'owner' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM user_group WHERE id = OLD.group_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;  -- the group itself is being deleted
    END IF;
    IF EXISTS (SELECT 1 FROM membership WHERE group_id = OLD.group_id AND role = 'owner') THEN
        RETURN NULL;
    END IF;
    SELECT user_id, role INTO successor, successor_role FROM membership
        WHERE group_id = OLD.group_id
        ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id
        LIMIT 1;
    IF successor IS NULL THEN
        DELETE FROM user_group WHERE id = OLD.group_id;
        INSERT INTO audit_event (actor_id, action, group_id, subject_user_id, details)
            VALUES (actor, 'group.deleted', OLD.group_id, NULL,
                    jsonb_build_object('reason', 'last_member_deleted',
                                       'deleted_owner_id', OLD.user_id));
    ELSE
        UPDATE membership SET role = 'owner'
            WHERE group_id = OLD.group_id AND user_id = successor;
        INSERT INTO audit_event (actor_id, action, group_id, subject_user_id, details)
            VALUES (actor, 'member.promoted_on_owner_deletion', OLD.group_id, successor,
                    jsonb_build_object('old_role', successor_role, 'new_role', 'owner',
                                       'deleted_owner_id', OLD.user_id));
    END IF;
    RETURN NULL;
END;
$$
""",
    """
CREATE TRIGGER membership_keep_an_owner
    AFTER DELETE ON membership
    FOR EACH ROW EXECUTE FUNCTION membership_keep_an_owner()
""",
)
DROP_KEEP_AN_OWNER_SQL: Final[tuple[str, ...]] = (
    "DROP TRIGGER IF EXISTS membership_keep_an_owner ON membership",
    "DROP FUNCTION IF EXISTS membership_keep_an_owner()",
)

# `metadata.create_all` (tests) installs the trigger with the table; Alembic migrations run the
# same statements with `op.execute` (autogenerate does not see triggers).
create_with_table(membership_table, CREATE_KEEP_AN_OWNER_SQL, DROP_KEEP_AN_OWNER_SQL)


# `group_member_count` follows `membership` through statement-level triggers: one upsert per
# statement (its transition table grouped by group and role), however many rows it changed,
# so a bulk insert or an account's deletion costs one statement more, not one per row.
# - Lock order: the counts are the last rows a membership change locks (at the end of its
#   statement) and nothing locks a count row first, so they add no deadlock to the group's
#   and the account's locks; the upsert locks its rows in (group, role) order, so two changes
#   that touch the same groups (two accounts' deletions) take them in the same order.
# - A group deleted in the same transaction (its memberships go by cascade) is skipped: its
#   counts go with it (ON DELETE CASCADE), and the join on `user_group` no longer sees it.
# - TRUNCATE fires no row or statement trigger of DELETE: its own trigger empties the counts.
# The upsert of one statement's changes, `{changes}` being its rows with a delta each.
_COUNT_CHANGES: Final = """
        INSERT INTO group_member_count AS kept (group_id, role, member_count)
        SELECT changed.group_id, changed.role, sum(changed.delta)
        FROM ({changes}) AS changed
        JOIN user_group ON user_group.id = changed.group_id
        GROUP BY changed.group_id, changed.role
        HAVING sum(changed.delta) <> 0
        ORDER BY changed.group_id, changed.role
        ON CONFLICT (group_id, role)
            DO UPDATE SET member_count = kept.member_count + EXCLUDED.member_count;"""
_INSERTED: Final = "SELECT group_id, role, 1 AS delta FROM new_rows"
_DELETED: Final = "SELECT group_id, role, -1 AS delta FROM old_rows"
CREATE_COUNT_MEMBERS_SQL: Final[tuple[str, ...]] = (
    # Formatted from the constants above only.
    """
CREATE OR REPLACE FUNCTION membership_count_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN{inserted}
    ELSIF TG_OP = 'DELETE' THEN{deleted}
    ELSIF TG_OP = 'UPDATE' THEN{updated}
    ELSE
        DELETE FROM group_member_count;
    END IF;
    RETURN NULL;
END;
$$
""".format(  # noqa: S608
        inserted=_COUNT_CHANGES.format(changes=_INSERTED),
        deleted=_COUNT_CHANGES.format(changes=_DELETED),
        updated=_COUNT_CHANGES.format(changes=f"{_INSERTED}\n              UNION ALL {_DELETED}"),
    ),
    """
CREATE TRIGGER membership_count_inserted
    AFTER INSERT ON membership REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
""",
    """
CREATE TRIGGER membership_count_deleted
    AFTER DELETE ON membership REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
""",
    """
CREATE TRIGGER membership_count_updated
    AFTER UPDATE ON membership REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
""",
    """
CREATE TRIGGER membership_count_truncated
    AFTER TRUNCATE ON membership
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
""",
)
DROP_COUNT_MEMBERS_SQL: Final[tuple[str, ...]] = (
    *(
        f"DROP TRIGGER IF EXISTS membership_count_{event} ON membership"
        for event in ("inserted", "deleted", "updated", "truncated")
    ),
    "DROP FUNCTION IF EXISTS membership_count_members()",
)
create_with_table(membership_table, CREATE_COUNT_MEMBERS_SQL, DROP_COUNT_MEMBERS_SQL)

__all__ = [
    "CREATE_COUNT_MEMBERS_SQL",
    "CREATE_KEEP_AN_OWNER_SQL",
    "DROP_COUNT_MEMBERS_SQL",
    "DROP_KEEP_AN_OWNER_SQL",
    "GROUP_DESCRIPTION_MAX_LENGTH",
    "GROUP_NAME_MAX_LENGTH",
    "INVITATION_TOKEN_DIGEST_SIZE",
    "STORED_INVITATION_STATUSES",
    "GroupInvitation",
    "GroupMemberCount",
    "GroupRole",
    "InvitationStatus",
    "Membership",
    "UserGroup",
    "membership_table",
]
