"""groups: user_group and membership tables

Revision ID: 07af0bfa42cb
Revises: 3c73f799b2bb
Create Date: 2026-11-25 06:38:29.968006+00:00

Reviewed: the case-insensitive unique index on lower(name) and the CHECK that names are trimmed
and non-empty; the role as VARCHAR(20) with a named CHECK (ck_membership_group_role, as the
model's non-native Enum creates it) rather than a Postgres enum type; both foreign keys ON DELETE
CASCADE; the index serving a user's groups; server defaults now(). Autogenerate cannot see the
trigger that keeps every group owned when an account is deleted: it is written out below, a
frozen copy of roster_groups.models.CREATE_KEEP_AN_OWNER_SQL at this revision (a later change
to it is a new revision). The downgrade drops the trigger and function, then the tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "07af0bfa42cb"
down_revision: str | Sequence[str] | None = "3c73f799b2bb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# When a group loses its last owner other than by its own deletion (an account deleted, and its
# memberships with it), the longest-standing admin, else member, becomes owner; a group left
# with no member is deleted. One statement per execute: asyncpg prepares each one.
KEEP_AN_OWNER_FUNCTION = """
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
KEEP_AN_OWNER_TRIGGER = """
CREATE TRIGGER membership_keep_an_owner
    AFTER DELETE ON membership
    FOR EACH ROW EXECUTE FUNCTION membership_keep_an_owner()
"""


def upgrade() -> None:
    op.create_table(
        "user_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "char_length(name) >= 1 AND name = btrim(name)", name=op.f("ck_user_group_name_trimmed")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_group")),
    )
    op.create_index(
        "uq_user_group_name_lower", "user_group", [sa.literal_column("lower(name)")], unique=True
    )
    op.create_table(
        "membership",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_membership_group_role")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_group.id"],
            name=op.f("fk_membership_group_id_user_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_membership_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_membership")),
    )
    op.create_index("ix_membership_user_id", "membership", ["user_id"], unique=False)
    op.execute(KEEP_AN_OWNER_FUNCTION)
    op.execute(KEEP_AN_OWNER_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS membership_keep_an_owner ON membership")
    op.execute("DROP FUNCTION IF EXISTS membership_keep_an_owner()")
    op.drop_index("ix_membership_user_id", table_name="membership")
    op.drop_table("membership")
    op.drop_index("uq_user_group_name_lower", table_name="user_group")
    op.drop_table("user_group")
