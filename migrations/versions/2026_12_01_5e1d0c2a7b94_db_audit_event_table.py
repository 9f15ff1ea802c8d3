"""db: audit_event table; groups: the successor trigger records its promotions

Revision ID: 5e1d0c2a7b94
Revises: 5e1a7c9d2b40
Create Date: 2026-12-01 22:50:00.000000+00:00

Reviewed: one new table, audit_event (roster_db.audit), append-only. id is a bigint identity;
occurred_at timestamptz, server default now(); actor_id, group_id and subject_user_id carry no
foreign key on purpose (the trail outlives the accounts and groups it names); action a
VARCHAR(64) with the named CHECK ck_audit_event_audit_action listing every known action
(a new action is a new revision swapping the CHECK); details JSONB, default '{}', with a
CHECK that it is an object. Four indexes, each ending in (occurred_at, id), the listings'
order: by group, by actor, by subject, and alone (the global listing and the prune). A
statement-level trigger refuses UPDATE always, DELETE and TRUNCATE unless the transaction set
roster.audit_prune = on. Autogenerate sees neither trigger: both are frozen copies below, of
roster_db.audit.CREATE_APPEND_ONLY_SQL and roster_groups.models.CREATE_KEEP_AN_OWNER_SQL at
this revision. membership_keep_an_owner is replaced (CREATE OR REPLACE, the trigger itself is
unchanged) by a version that also writes member.promoted_on_owner_deletion, or group.deleted
for a group left empty, with the actor from roster.audit_actor_id. Nothing to migrate (the
trail starts empty). The downgrade restores the previous function, then drops the trigger,
its function, the indexes and the table, losing the events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "5e1d0c2a7b94"
down_revision: str | Sequence[str] | None = "5e1a7c9d2b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIONS = (
    "group.created",
    "group.updated",
    "group.deleted",
    "member.added",
    "member.role_changed",
    "member.removed",
    "member.left",
    "member.promoted_on_owner_deletion",
    "invitation.created",
    "invitation.accepted",
    "invitation.declined",
    "invitation.revoked",
    "user.registered",
    "user.verified",
    "user.password_changed",
    "user.password_reset",
    "user.email_changed",
    "user.deactivated",
    "user.deleted",
    "user.made_superuser",
)

APPEND_ONLY_FUNCTION = """
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
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
"""

KEEP_AN_OWNER_FUNCTION = """
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
"""

# The function as revision 07af0bfa42cb left it, for the downgrade.
PREVIOUS_KEEP_AN_OWNER_FUNCTION = """
CREATE OR REPLACE FUNCTION membership_keep_an_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    successor uuid;
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
    SELECT user_id INTO successor FROM membership
        WHERE group_id = OLD.group_id
        ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id
        LIMIT 1;
    IF successor IS NULL THEN
        DELETE FROM user_group WHERE id = OLD.group_id;
    ELSE
        UPDATE membership SET role = 'owner'
            WHERE group_id = OLD.group_id AND user_id = successor;
    END IF;
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    actions = ", ".join(f"'{action}'" for action in ACTIONS)
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("subject_user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(f"action IN ({actions})", name=op.f("ck_audit_event_audit_action")),
        sa.CheckConstraint(
            "jsonb_typeof(details) = 'object'", name=op.f("ck_audit_event_details_is_object")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    for columns in (
        ["group_id", "occurred_at", "id"],
        ["actor_id", "occurred_at", "id"],
        ["subject_user_id", "occurred_at", "id"],
        ["occurred_at", "id"],
    ):
        op.create_index(f"ix_audit_event_{'_'.join(columns)}", "audit_event", columns)
    op.create_index(
        "ix_audit_event_invitation_accepted",
        "audit_event",
        ["group_id", "subject_user_id"],
        postgresql_where=sa.text("action = 'invitation.accepted'"),
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)
    op.execute(KEEP_AN_OWNER_FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS_KEEP_AN_OWNER_FUNCTION)
    op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
    op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    op.drop_index("ix_audit_event_invitation_accepted", table_name="audit_event")
    for columns in (
        ["occurred_at", "id"],
        ["subject_user_id", "occurred_at", "id"],
        ["actor_id", "occurred_at", "id"],
        ["group_id", "occurred_at", "id"],
    ):
        op.drop_index(f"ix_audit_event_{'_'.join(columns)}", table_name="audit_event")
    op.drop_table("audit_event")
