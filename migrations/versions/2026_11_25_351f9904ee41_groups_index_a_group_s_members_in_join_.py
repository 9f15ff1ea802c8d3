"""groups: index a group's members in join order

Revision ID: 351f9904ee41
Revises: 07af0bfa42cb
Create Date: 2026-11-25 07:45:15.014330+00:00

Reviewed: one new index, ix_membership_group_id_joined_at on membership (group_id, joined_at,
user_id) INCLUDE (role), the order in which a group's members are listed, so a page is an
index-only range scan instead of a sort of the whole group. The primary key and
ix_membership_user_id stay (one membership's lookup; a user's groups and the user-delete
cascade). A plain CREATE INDEX inside the migration's transaction: it blocks writes to
membership while it builds (milliseconds at tens of thousands of rows); CONCURRENTLY cannot
run in a transaction. The downgrade drops the index.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "351f9904ee41"
down_revision: str | Sequence[str] | None = "07af0bfa42cb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_membership_group_id_joined_at",
        "membership",
        ["group_id", "joined_at", "user_id"],
        unique=False,
        postgresql_include=["role"],
    )


def downgrade() -> None:
    op.drop_index("ix_membership_group_id_joined_at", table_name="membership")
