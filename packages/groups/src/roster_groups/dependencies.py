"""FastAPI dependencies: the group-scoped authorisation every route shares, for our routes and
for an application's own.

    groups = RosterGroups(auth.current_active_user)

    AdminAccess = Annotated[GroupAccess, Depends(groups.require_role(GroupRole.ADMIN))]

    @app.get("/groups/{group_id}/reports")
    async def reports(access: AdminAccess) -> ...: ...

Non-members get 404 (the group's existence is not revealed), members below the role 403,
anonymous callers 401 (from the current-user dependency).
"""

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Path, status
from pydantic import BaseModel

from roster_auth import User, UserDependency
from roster_db import SessionDep
from roster_groups import service
from roster_groups.errors import (
    GroupNameAlreadyExistsError,
    GroupNotFoundError,
    GroupsError,
    InsufficientGroupRoleError,
    LastOwnerError,
    MemberNotFoundError,
    MembershipAlreadyExistsError,
    SuperuserRequiredError,
    UserNotFoundError,
)
from roster_groups.models import GroupRole
from roster_groups.service import GroupAccess

# Group ids are Postgres INTEGERs: a larger number is a client error, not a database error.
MAX_GROUP_ID: Final = 2**31 - 1

GroupIdPath = Annotated[
    int, Path(ge=1, le=MAX_GROUP_ID, description="The group's id, a positive integer.")
]

STATUS_OF_ERROR: Final[dict[type[GroupsError], int]] = {
    GroupNotFoundError: status.HTTP_404_NOT_FOUND,
    UserNotFoundError: status.HTTP_404_NOT_FOUND,
    MemberNotFoundError: status.HTTP_404_NOT_FOUND,
    GroupNameAlreadyExistsError: status.HTTP_409_CONFLICT,
    MembershipAlreadyExistsError: status.HTTP_409_CONFLICT,
    LastOwnerError: status.HTTP_409_CONFLICT,
    InsufficientGroupRoleError: status.HTTP_403_FORBIDDEN,
    SuperuserRequiredError: status.HTTP_403_FORBIDDEN,
}


class ErrorBody(BaseModel):
    """The body of every refusal: a stable code such as `GROUP_NOT_FOUND`."""

    detail: str


def error_responses(*errors: type[GroupsError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that may raise these errors (and refuses anonymous
    callers with 401), so clients see every code a route can answer."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        codes.setdefault(STATUS_OF_ERROR[error], []).append(error.code)
    responses: dict[int | str, dict[str, Any]] = {
        status.HTTP_401_UNAUTHORIZED: {"model": ErrorBody, "description": "Not signed in."}
    }
    for status_code, names in sorted(codes.items()):
        responses[status_code] = {"model": ErrorBody, "description": ", ".join(names)}
    return responses


def http_error_for(error: GroupsError) -> HTTPException:
    """The HTTP answer to a domain error: its status and `{"detail": error.code}`."""
    for error_type in type(error).__mro__:
        if error_type in STATUS_OF_ERROR:
            return HTTPException(STATUS_OF_ERROR[error_type], detail=error.code)
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=error.code)


@contextmanager
def domain_errors_as_http() -> Iterator[None]:
    try:
        yield
    except GroupsError as error:
        raise http_error_for(error) from error


GroupAccessDependency = Callable[..., Coroutine[Any, Any, GroupAccess]]


def require_group_role(
    current_user: UserDependency, minimum: GroupRole = GroupRole.MEMBER
) -> GroupAccessDependency:
    """A dependency for routes with a `{group_id}` path parameter: the group and the current
    user's role in it, if that role is at least `minimum` (superusers always pass)."""

    # A plain coroutine (not a generator): it depends on the function-scoped session.
    async def group_access(
        group_id: GroupIdPath,
        session: SessionDep,
        user: Annotated[User, Depends(current_user)],
    ) -> GroupAccess:
        with domain_errors_as_http():
            return await service.authorize(session, user, group_id, minimum)

    return group_access


__all__ = [
    "MAX_GROUP_ID",
    "STATUS_OF_ERROR",
    "ErrorBody",
    "GroupAccessDependency",
    "GroupIdPath",
    "domain_errors_as_http",
    "error_responses",
    "http_error_for",
    "require_group_role",
]
