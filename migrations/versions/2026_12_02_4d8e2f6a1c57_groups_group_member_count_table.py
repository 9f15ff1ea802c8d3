"""groups: group_member_count (a group's members per role), kept by triggers on membership

Revision ID: 4d8e2f6a1c57
Revises: 9b3f61d2c8e7
Create Date: 2026-12-02 23:00:00.000000+00:00

Reviewed:
- group_member_count: (group_id, role) primary key, member_count INTEGER NOT NULL; the role as
  VARCHAR(20) with its named CHECK (ck_group_member_count_group_role), as membership.role;
  group_id ON DELETE CASCADE from user_group. No CHECK on member_count: Postgres checks the
  row an upsert proposes before it finds the conflict, and the triggers propose the change.
- Autogenerate sees neither the function nor its four statement-level triggers (after INSERT,
  DELETE and UPDATE, with transition tables, and after TRUNCATE): they are written out below,
  a frozen copy of roster_groups.models.CREATE_COUNT_MEMBERS_SQL at this revision.
- The backfill counts the existing memberships while membership is locked against writes
  (SHARE ROW EXCLUSIVE: reads go on), in the migration's transaction, so no change is missed
  between the count and the triggers. The downgrade drops the triggers, the function and the
  table; nothing else depends on them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4d8e2f6a1c57"
down_revision: str | Sequence[str] | None = "9b3f61d2c8e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One statement per execute: asyncpg prepares each one.
COUNT_MEMBERS_FUNCTION = """
CREATE OR REPLACE FUNCTION membership_count_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO group_member_count AS kept (group_id, role, member_count)
        SELECT changed.group_id, changed.role, sum(changed.delta)
        FROM (SELECT group_id, role, 1 AS delta FROM new_rows) AS changed
        JOIN user_group ON user_group.id = changed.group_id
        GROUP BY changed.group_id, changed.role
        HAVING sum(changed.delta) <> 0
        ORDER BY changed.group_id, changed.role
        ON CONFLICT (group_id, role)
            DO UPDATE SET member_count = kept.member_count + EXCLUDED.member_count;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO group_member_count AS kept (group_id, role, member_count)
        SELECT changed.group_id, changed.role, sum(changed.delta)
        FROM (SELECT group_id, role, -1 AS delta FROM old_rows) AS changed
        JOIN user_group ON user_group.id = changed.group_id
        GROUP BY changed.group_id, changed.role
        HAVING sum(changed.delta) <> 0
        ORDER BY changed.group_id, changed.role
        ON CONFLICT (group_id, role)
            DO UPDATE SET member_count = kept.member_count + EXCLUDED.member_count;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO group_member_count AS kept (group_id, role, member_count)
        SELECT changed.group_id, changed.role, sum(changed.delta)
        FROM (SELECT group_id, role, 1 AS delta FROM new_rows
              UNION ALL SELECT group_id, role, -1 AS delta FROM old_rows) AS changed
        JOIN user_group ON user_group.id = changed.group_id
        GROUP BY changed.group_id, changed.role
        HAVING sum(changed.delta) <> 0
        ORDER BY changed.group_id, changed.role
        ON CONFLICT (group_id, role)
            DO UPDATE SET member_count = kept.member_count + EXCLUDED.member_count;
    ELSE
        DELETE FROM group_member_count;
    END IF;
    RETURN NULL;
END;
$$
"""
COUNT_INSERTED_TRIGGER = """
CREATE TRIGGER membership_count_inserted
    AFTER INSERT ON membership REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
"""
COUNT_DELETED_TRIGGER = """
CREATE TRIGGER membership_count_deleted
    AFTER DELETE ON membership REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
"""
COUNT_UPDATED_TRIGGER = """
CREATE TRIGGER membership_count_updated
    AFTER UPDATE ON membership REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
"""
COUNT_TRUNCATED_TRIGGER = """
CREATE TRIGGER membership_count_truncated
    AFTER TRUNCATE ON membership
    FOR EACH STATEMENT EXECUTE FUNCTION membership_count_members()
"""
TRIGGERS = ("inserted", "deleted", "updated", "truncated")


def upgrade() -> None:
    op.create_table(
        "group_member_count",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_group_member_count_group_role")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_group.id"],
            name=op.f("fk_group_member_count_group_id_user_group"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "role", name=op.f("pk_group_member_count")),
    )
    op.execute("LOCK TABLE membership IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO group_member_count (group_id, role, member_count) "
        "SELECT group_id, role, count(*) FROM membership GROUP BY group_id, role"
    )
    op.execute(COUNT_MEMBERS_FUNCTION)
    for trigger in (
        COUNT_INSERTED_TRIGGER,
        COUNT_DELETED_TRIGGER,
        COUNT_UPDATED_TRIGGER,
        COUNT_TRUNCATED_TRIGGER,
    ):
        op.execute(trigger)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS membership_count_{name} ON membership")
    op.execute("DROP FUNCTION IF EXISTS membership_count_members()")
    op.drop_table("group_member_count")
