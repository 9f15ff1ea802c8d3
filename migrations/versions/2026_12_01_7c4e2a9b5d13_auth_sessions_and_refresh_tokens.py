"""auth: hashed cookie tokens with session details; refresh-token families and tokens

Revision ID: 7c4e2a9b5d13
Revises: 5e1d0c2a7b94
Create Date: 2026-12-01 22:40:00.000000+00:00

Reviewed:
- accesstoken.token holds the SHA-256 digest (64 hex digits) of the cookie's token instead of
  the token: the column is widened from 43 to 64 characters and every existing row is hashed
  in SQL (`encode(sha256(convert_to(token, 'UTF8')), 'hex')`, Postgres 11+, no pgcrypto),
  exactly as roster_auth.sessions.token_digest hashes a cookie, so every existing session
  keeps working; a CHECK keeps the column a digest. `convert_to` rather than `::bytea`, which
  would read backslashes as escapes.
- accesstoken gains what the session routes show: `id` (a random UUID, unique; existing rows
  get one from the server default gen_random_uuid(), Postgres 13+), `last_used_at` (existing
  rows: their creation time), `user_agent` and `client_address` (unknown for existing rows).
- refresh_token_family (one per bearer login) and refresh_token (one row per token of a
  family, by digest): timestamptz columns, ON DELETE CASCADE from user to family to token,
  indexes on the foreign keys (a user's families; a family's tokens), a CHECK on the digest.
- Downgrade: the digests cannot be turned back into tokens, so the downgrade deletes every
  cookie session (everyone signs in again) and every refresh token, then undoes each change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c4e2a9b5d13"
down_revision: str | Sequence[str] | None = "5e1d0c2a7b94"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "accesstoken",
        "token",
        existing_type=sa.String(length=43),
        type_=sa.String(length=64),
        existing_nullable=False,
    )
    op.execute("UPDATE accesstoken SET token = encode(sha256(convert_to(token, 'UTF8')), 'hex')")
    op.create_check_constraint(
        op.f("ck_accesstoken_token_is_a_digest"), "accesstoken", "length(token) = 64"
    )
    op.add_column(
        "accesstoken",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
    )
    op.create_unique_constraint(op.f("uq_accesstoken_id"), "accesstoken", ["id"])
    op.add_column(
        "accesstoken",
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.execute("UPDATE accesstoken SET last_used_at = created_at")
    op.add_column("accesstoken", sa.Column("user_agent", sa.String(length=512), nullable=True))
    op.add_column("accesstoken", sa.Column("client_address", sa.String(length=255), nullable=True))

    op.create_table(
        "refresh_token_family",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("client_address", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_refresh_token_family_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token_family")),
    )
    op.create_index(
        op.f("ix_refresh_token_family_user_id"), "refresh_token_family", ["user_id"], unique=False
    )
    op.create_table(
        "refresh_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "length(token_hash) = 64", name=op.f("ck_refresh_token_token_hash_is_a_digest")
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["refresh_token_family.id"],
            name=op.f("fk_refresh_token_family_id_refresh_token_family"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_token")),
    )
    op.create_index(
        op.f("ix_refresh_token_family_id"), "refresh_token", ["family_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refresh_token_family_id"), table_name="refresh_token")
    op.drop_table("refresh_token")
    op.drop_index(op.f("ix_refresh_token_family_user_id"), table_name="refresh_token_family")
    op.drop_table("refresh_token_family")
    # A digest is no token: the sessions cannot survive the way back.
    op.execute("DELETE FROM accesstoken")
    op.drop_column("accesstoken", "client_address")
    op.drop_column("accesstoken", "user_agent")
    op.drop_column("accesstoken", "last_used_at")
    op.drop_constraint(op.f("uq_accesstoken_id"), "accesstoken", type_="unique")
    op.drop_column("accesstoken", "id")
    op.drop_constraint(op.f("ck_accesstoken_token_is_a_digest"), "accesstoken", type_="check")
    op.alter_column(
        "accesstoken",
        "token",
        existing_type=sa.String(length=64),
        type_=sa.String(length=43),
        existing_nullable=False,
    )
