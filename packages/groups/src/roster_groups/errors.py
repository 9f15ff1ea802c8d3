"""What can go wrong in the groups domain, and how each answers over HTTP: every error class
carries its status and its code, the `detail` a client receives (FastAPI Users' style,
`{"detail": "GROUP_NOT_FOUND"}`).

The service raises them; `handle_groups_error` is the one place that turns them into answers.
An application registers it once, next to the router (`include_with_groups` does both):

    app.include_router(create_groups_router(auth.current_active_user, auth.current_credentials))
    app.add_exception_handler(GroupsError, handle_groups_error)

An exception handler, rather than a `try` in each route: a route's session dependency sees the
error first and rolls back, and then the handler answers.
"""

from typing import Any, ClassVar

from fastapi import Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class GroupsError(Exception):
    """Base of every domain error raised by `roster_groups.service`. A subclass names its
    status and code in its declaration: `class X(GroupsError, status_code=404, code="X")`."""

    status_code: ClassVar[int]
    code: ClassVar[str]

    def __init_subclass__(cls, *, status_code: int, code: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status_code = status_code
        cls.code = code

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)


class GroupNotFoundError(GroupsError, status_code=404, code="GROUP_NOT_FOUND"):
    """No such group, or the caller may not know that it exists (not a member)."""


class UserNotFoundError(GroupsError, status_code=404, code="USER_NOT_FOUND"):
    """No account has this id (or it was deleted meanwhile)."""


class MemberNotFoundError(GroupsError, status_code=404, code="MEMBER_NOT_FOUND"):
    """The user is not a member of the group."""


class GroupNameAlreadyExistsError(GroupsError, status_code=409, code="GROUP_NAME_ALREADY_EXISTS"):
    """Another group has this name, ignoring letter case."""


class MembershipAlreadyExistsError(GroupsError, status_code=409, code="MEMBERSHIP_ALREADY_EXISTS"):
    """The user is already a member of the group (for an invitation: the invited address is
    a member's)."""


class LastOwnerError(GroupsError, status_code=409, code="LAST_OWNER"):
    """The change would leave the group without an owner."""


class InsufficientGroupRoleError(GroupsError, status_code=403, code="INSUFFICIENT_GROUP_ROLE"):
    """The caller is a member, but their role does not allow this."""


class SuperuserRequiredError(GroupsError, status_code=403, code="SUPERUSER_REQUIRED"):
    """Only superusers may do this."""


class EmailNotVerifiedError(GroupsError, status_code=403, code="EMAIL_NOT_VERIFIED"):
    """The caller's address is not verified: invitations to it are not shown (the account has
    not proven that the address is its owner's)."""


class InvitationNotFoundError(GroupsError, status_code=404, code="INVITATION_NOT_FOUND"):
    """No invitation of this group has this id."""


class InvitationNotPendingError(GroupsError, status_code=409, code="INVITATION_NOT_PENDING"):
    """The invitation was already accepted, declined or revoked, or it has expired."""


class InvitationAlreadyPendingError(
    GroupsError, status_code=409, code="INVITATION_ALREADY_PENDING"
):
    """The address already has a pending invitation to the group (revoke it to send another)."""


class UnknownInvitationTokenError(GroupsError, status_code=400, code="INVITATION_NOT_FOUND"):
    """No invitation has this token (never issued, or its group was deleted)."""


class InvitationExpiredError(GroupsError, status_code=400, code="INVITATION_EXPIRED"):
    """The invitation was not answered in time."""


class InvitationRevokedError(GroupsError, status_code=400, code="INVITATION_REVOKED"):
    """An owner or admin of the group revoked the invitation."""


class InvitationAlreadyUsedError(GroupsError, status_code=400, code="INVITATION_ALREADY_USED"):
    """The invitation was already accepted or declined."""


class InvitationEmailMismatchError(GroupsError, status_code=400, code="INVITATION_EMAIL_MISMATCH"):
    """The invitation is for another address than the signed-in account's."""


class ErrorBody(BaseModel):
    """The body of every refusal: a stable code such as `GROUP_NOT_FOUND`."""

    detail: str


async def handle_groups_error(request: Request, error: Exception) -> JSONResponse:
    """The exception handler for `GroupsError`: its status and `{"detail": code}`."""
    # Starlette types handlers for any exception; it calls this one for GroupsError only.
    assert isinstance(error, GroupsError)
    return JSONResponse({"detail": error.code}, status_code=error.status_code)


def error_responses(*errors: type[GroupsError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that may raise these errors (and refuses anonymous
    callers with 401), so clients see every code a route can answer."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        codes.setdefault(error.status_code, []).append(error.code)
    responses: dict[int | str, dict[str, Any]] = {
        status.HTTP_401_UNAUTHORIZED: {"model": ErrorBody, "description": "Not signed in."}
    }
    for status_code, names in sorted(codes.items()):
        responses[status_code] = {"model": ErrorBody, "description": ", ".join(names)}
    return responses


__all__ = [
    "EmailNotVerifiedError",
    "ErrorBody",
    "GroupNameAlreadyExistsError",
    "GroupNotFoundError",
    "GroupsError",
    "InsufficientGroupRoleError",
    "InvitationAlreadyPendingError",
    "InvitationAlreadyUsedError",
    "InvitationEmailMismatchError",
    "InvitationExpiredError",
    "InvitationNotFoundError",
    "InvitationNotPendingError",
    "InvitationRevokedError",
    "LastOwnerError",
    "MemberNotFoundError",
    "MembershipAlreadyExistsError",
    "SuperuserRequiredError",
    "UnknownInvitationTokenError",
    "UserNotFoundError",
    "error_responses",
    "handle_groups_error",
]
