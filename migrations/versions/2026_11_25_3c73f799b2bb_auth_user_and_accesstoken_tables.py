"""auth: user and accesstoken tables

Revision ID: 3c73f799b2bb
Revises:
Create Date: 2026-11-25 06:35:15.120810+00:00

Reviewed: GUID rendered as sa.Uuid() and TIMESTAMPAware as sa.DateTime(timezone=True); the
case-insensitive unique index on lower(email); created_at's server default now(); the
accesstoken -> user foreign key ON DELETE CASCADE; the downgrade drops in reverse order.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3c73f799b2bb"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # FastAPI Users' columns (its GUID written as the plain UUID it is on Postgres), then ours.
    # The flags have Python-side defaults only, as in the model.
    op.create_table(
        "user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hashed_password", sa.String(length=1024), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_superuser", sa.Boolean(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
    )
    # Emails are unique whatever their letter case: a functional index, not a constraint.
    op.create_index("uq_user_email_lower", "user", [sa.literal_column("lower(email)")], unique=True)
    # Stored tokens of the cookie backend; deleting a user deletes its tokens.
    op.create_table(
        "accesstoken",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token", sa.String(length=43), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_accesstoken_user_id_user"), ondelete="cascade"
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_accesstoken")),
    )
    op.create_index(op.f("ix_accesstoken_created_at"), "accesstoken", ["created_at"], unique=False)
    op.create_index("ix_accesstoken_user_id", "accesstoken", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_accesstoken_user_id", table_name="accesstoken")
    op.drop_index(op.f("ix_accesstoken_created_at"), table_name="accesstoken")
    op.drop_table("accesstoken")
    op.drop_index("uq_user_email_lower", table_name="user")
    op.drop_table("user")
