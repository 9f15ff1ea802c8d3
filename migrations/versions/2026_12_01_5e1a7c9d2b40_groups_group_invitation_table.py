"""groups: group_invitation table

Revision ID: 5e1a7c9d2b40
Revises: 389deb3b2a9c
Create Date: 2026-12-01 22:40:00.000000+00:00

Reviewed: one new table, no change to the others. group_invitation holds an invitation by email
into a group with a role: token_hash is the bytea SHA-256 digest of the mailed token (a CHECK
keeps it 32 bytes, so no raw token can be stored by mistake; unique, it is what accept and
decline look up); status is a VARCHAR with a named CHECK of the stored statuses (pending,
accepted, declined, revoked; "expired" is read from expires_at, never stored), and a CHECK that
responded_at is set exactly when the invitation was answered; the role has the same CHECK as
membership's. group_id is ON DELETE CASCADE (a group's deletion deletes its invitations),
invited_by ON DELETE SET NULL (the inviter's deletion keeps them valid). Indexes: the group's
listing, newest first, (group_id, created_at, id); the pending invitations by lower(email) and
group, partial WHERE status = 'pending' (the invitee's listing and the check for a pending
invitation when another is created); invited_by, for the SET NULL of an account's deletion.
Nothing to migrate; the downgrade drops the indexes and the table (its invitations with it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5e1a7c9d2b40"
down_revision: str | Sequence[str] | None = "389deb3b2a9c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_invitation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "octet_length(token_hash) = 32",
            name=op.f("ck_group_invitation_token_hash_is_a_digest"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'revoked')",
            name=op.f("ck_group_invitation_status"),
        ),
        sa.CheckConstraint(
            "(status = 'pending') = (responded_at IS NULL)",
            name=op.f("ck_group_invitation_responded_at_when_answered"),
        ),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_group_invitation_group_role")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["user_group.id"],
            name=op.f("fk_group_invitation_group_id_user_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["user.id"],
            name=op.f("fk_group_invitation_invited_by_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_invitation")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_group_invitation_token_hash")),
    )
    op.create_index(
        "ix_group_invitation_group_id_created_at",
        "group_invitation",
        ["group_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_group_invitation_invited_by", "group_invitation", ["invited_by"], unique=False
    )
    op.create_index(
        "ix_group_invitation_pending_email",
        "group_invitation",
        [sa.literal_column("lower(email)"), "group_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_group_invitation_pending_email",
        table_name="group_invitation",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_group_invitation_invited_by", table_name="group_invitation")
    op.drop_index("ix_group_invitation_group_id_created_at", table_name="group_invitation")
    op.drop_table("group_invitation")
