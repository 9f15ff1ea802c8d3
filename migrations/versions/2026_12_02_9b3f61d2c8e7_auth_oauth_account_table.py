"""auth: oauth_account (identities at providers linked to accounts); two audit actions

Revision ID: 9b3f61d2c8e7
Revises: 7c4e2a9b5d13
Create Date: 2026-12-02 08:10:00.000000+00:00

Reviewed:
- oauth_account is FastAPI Users' OAuth account table (id, oauth_name, access_token,
  expires_at, refresh_token, account_id, account_email, user_id with ON DELETE CASCADE from
  user, and its two single-column indexes), plus `created_at` (timestamptz, default now()),
  a UNIQUE (oauth_name, account_id), so that one identity signs in to one account even when
  two first sign-ins race, and an index on user_id (a user's identities).
- The audit trail learns `user.oauth_linked` and `user.oauth_unlinked`: the CHECK
  ck_audit_event_audit_action is swapped for one listing them too. The downgrade drops the
  table and deletes the events of the two actions (the append-only trigger allows it under
  `roster.audit_prune`, as a prune), then restores the previous CHECK.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9b3f61d2c8e7"
down_revision: str | Sequence[str] | None = "7c4e2a9b5d13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREVIOUS_ACTIONS = (
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
NEW_ACTIONS = ("user.oauth_linked", "user.oauth_unlinked")
CHECK = "ck_audit_event_audit_action"


def _swap_check(actions: Sequence[str]) -> None:
    listed = ", ".join(f"'{action}'" for action in actions)
    op.drop_constraint(op.f(CHECK), "audit_event", type_="check")
    op.create_check_constraint(op.f(CHECK), "audit_event", f"action IN ({listed})")


def upgrade() -> None:
    op.create_table(
        "oauth_account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("oauth_name", sa.String(length=100), nullable=False),
        sa.Column("access_token", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=True),
        sa.Column("refresh_token", sa.String(length=1024), nullable=True),
        sa.Column("account_id", sa.String(length=320), nullable=False),
        sa.Column("account_email", sa.String(length=320), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_oauth_account_user_id_user"),
            ondelete="cascade",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_account")),
        sa.UniqueConstraint("oauth_name", "account_id", name="uq_oauth_account_identity"),
    )
    op.create_index(op.f("ix_oauth_account_account_id"), "oauth_account", ["account_id"])
    op.create_index(op.f("ix_oauth_account_oauth_name"), "oauth_account", ["oauth_name"])
    op.create_index("ix_oauth_account_user_id", "oauth_account", ["user_id"])
    _swap_check((*PREVIOUS_ACTIONS, *NEW_ACTIONS))


def downgrade() -> None:
    op.execute("SET LOCAL roster.audit_prune = 'on'")
    listed = ", ".join(f"'{action}'" for action in NEW_ACTIONS)
    op.execute(f"DELETE FROM audit_event WHERE action IN ({listed})")  # noqa: S608 - constants
    _swap_check(PREVIOUS_ACTIONS)
    op.drop_index("ix_oauth_account_user_id", table_name="oauth_account")
    op.drop_index(op.f("ix_oauth_account_oauth_name"), table_name="oauth_account")
    op.drop_index(op.f("ix_oauth_account_account_id"), table_name="oauth_account")
    op.drop_table("oauth_account")
