"""roster-groups: user groups and memberships, related both ways to roster-auth's `User`.

    from roster_groups import create_groups_router
    app.include_router(create_groups_router(auth.current_active_user))

or, to also guard an application's own group-scoped routes with the same rules:

    groups = RosterGroups(auth.current_active_user)
    app.include_router(groups.router)
    AdminAccess = Annotated[GroupAccess, Depends(groups.require_role(GroupRole.ADMIN))]
"""

from roster_auth import UserDependency
from roster_groups.dependencies import GroupAccessDependency, require_group_role
from roster_groups.errors import GroupsError
from roster_groups.models import GroupRole, Membership, UserGroup
from roster_groups.router import create_groups_router
from roster_groups.service import GroupAccess


class RosterGroups:
    """The groups API and its authorisation dependency, bound to one current-user dependency."""

    def __init__(self, current_user: UserDependency) -> None:
        self.current_user = current_user
        self.router = create_groups_router(current_user)

    def require_role(self, minimum: GroupRole = GroupRole.MEMBER) -> GroupAccessDependency:
        """A dependency for a route with a `{group_id}` path parameter: 404 for non-members,
        403 below `minimum`, the `GroupAccess` otherwise."""
        return require_group_role(self.current_user, minimum)


__all__ = [
    "GroupAccess",
    "GroupRole",
    "GroupsError",
    "Membership",
    "RosterGroups",
    "UserGroup",
    "create_groups_router",
    "require_group_role",
]
