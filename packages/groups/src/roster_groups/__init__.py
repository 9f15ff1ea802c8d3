"""roster-groups: user groups and memberships, related both ways to roster-auth's `User`.

from roster_groups import GroupsError, create_groups_router, handle_groups_error

app.include_router(create_groups_router(auth.current_active_user, auth.current_credentials))
app.add_exception_handler(GroupsError, handle_groups_error)
"""

from roster_groups.config import GroupsConfigError, InvitationConfig
from roster_groups.errors import GroupsError, handle_groups_error
from roster_groups.models import GroupInvitation, GroupRole, InvitationStatus, Membership, UserGroup
from roster_groups.router import create_groups_router

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
]
