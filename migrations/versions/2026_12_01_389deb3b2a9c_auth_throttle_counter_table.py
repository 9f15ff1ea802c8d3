"""auth: throttle_counter table

Revision ID: 389deb3b2a9c
Revises: 351f9904ee41
Create Date: 2026-12-01 20:12:27.800917+00:00

Reviewed: one new table, no change to the others. throttle_counter holds one fixed-window
count per (scope, subject), its primary key (the upsert's conflict target); subject is a bytea
HMAC-SHA256 digest of an email or client address (a CHECK keeps it 32 bytes, so no raw value
can be stored by mistake), count is at least 1, window_ends_at is timestamptz with an index for
the purge of expired rows. No foreign key to "user": unknown emails are counted too. Nothing to
migrate (counts start empty); the downgrade drops the index and the table, which loses only
counts, which expire within their window (an hour at most by default).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "389deb3b2a9c"
down_revision: str | Sequence[str] | None = "351f9904ee41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "throttle_counter",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.LargeBinary(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("count >= 1", name=op.f("ck_throttle_counter_count_positive")),
        sa.CheckConstraint(
            "octet_length(subject) = 32", name=op.f("ck_throttle_counter_subject_is_a_digest")
        ),
        sa.PrimaryKeyConstraint("scope", "subject", name=op.f("pk_throttle_counter")),
    )
    op.create_index(
        op.f("ix_throttle_counter_window_ends_at"),
        "throttle_counter",
        ["window_ends_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_throttle_counter_window_ends_at"), table_name="throttle_counter")
    op.drop_table("throttle_counter")
