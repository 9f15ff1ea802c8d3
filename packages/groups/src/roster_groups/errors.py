"""What can go wrong in the groups domain, in the service's terms. The HTTP layer maps each
error to a status code; `code` is the `detail` a client receives (FastAPI Users' style)."""

from typing import ClassVar


class GroupsError(Exception):
    """Base of every domain error raised by `roster_groups.service`."""

    code: ClassVar[str]

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)


class GroupNotFoundError(GroupsError):
    """No such group, or the caller may not know that it exists (not a member)."""

    code = "GROUP_NOT_FOUND"


class UserNotFoundError(GroupsError):
    code = "USER_NOT_FOUND"


class MemberNotFoundError(GroupsError):
    """The user is not a member of the group."""

    code = "MEMBER_NOT_FOUND"


class GroupNameAlreadyExistsError(GroupsError):
    code = "GROUP_NAME_ALREADY_EXISTS"


class MembershipAlreadyExistsError(GroupsError):
    code = "MEMBERSHIP_ALREADY_EXISTS"


class LastOwnerError(GroupsError):
    """The change would leave the group without an owner."""

    code = "LAST_OWNER"


class InsufficientGroupRoleError(GroupsError):
    """The caller is a member, but their role does not allow this."""

    code = "INSUFFICIENT_GROUP_ROLE"


class SuperuserRequiredError(GroupsError):
    code = "SUPERUSER_REQUIRED"
