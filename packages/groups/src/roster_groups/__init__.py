"""roster-groups: user groups and memberships, related both ways to roster-auth's `User`.

from roster_groups import include_with_groups

include_with_groups(app, auth)  # roster-auth's routes, the groups' routes, their error handler
"""

from roster_groups.config import GroupsConfigError, InvitationConfig
from roster_groups.errors import GroupsError, handle_groups_error
from roster_groups.models import GroupInvitation, GroupRole, InvitationStatus, Membership, UserGroup
from roster_groups.router import create_groups_router, include_with_groups

__all__ = [
    "GroupInvitation",
    "GroupRole",
    "GroupsConfigError",
    "GroupsError",
    "InvitationConfig",
    "InvitationStatus",
    "Membership",
    "UserGroup",
    "create_groups_router",
    "handle_groups_error",
    "include_with_groups",
]
