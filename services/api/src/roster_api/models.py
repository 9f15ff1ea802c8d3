"""Every member's models, imported in one place, so that roster-db's one `metadata` holds every
table: Alembic's target, and what the migrations are checked against."""

from typing import Final

from roster_auth import AccessToken, RefreshToken, RefreshTokenFamily, User
from roster_db import metadata
from roster_groups.models import GroupInvitation, Membership, UserGroup

# Importing the classes maps them into the shared registry; the tuple keeps the imports used.
MODELS: Final = (
    User,
    AccessToken,
    RefreshTokenFamily,
    RefreshToken,
    UserGroup,
    Membership,
    GroupInvitation,
)

__all__ = ["MODELS", "metadata"]
