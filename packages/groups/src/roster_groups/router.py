"""HTTP only: parse the request and call the service. The service's domain errors reach the
application's `handle_groups_error` (see `roster_groups.errors`); each route lists in its
OpenAPI `responses` the ones it can answer."""

import uuid
from typing import Annotated, Final

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    FastAPI,
    Path,
    Query,
    Request,
    Response,
    status,
)
from pydantic import AfterValidator

from roster_auth import (
    Credentials,
    CredentialsDependency,
    RosterAuth,
    User,
    UserDependency,
    UserRead,
)
from roster_auth.mail import deliver
from roster_db import (
    CURSOR_MAX_LENGTH,
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    LimitQuery,
    OffsetQuery,
    Page,
    PageParams,
    PageParamsDep,
    ReaderDep,
    RowsJSONResponse,
    SessionDep,
    reader_of,
)
from roster_db.audit import (
    EventPageParamsDep,
    EventsPublic,
    event_page_body,
    next_link_headers,
)
from roster_groups import errors, invitations, service
from roster_groups.config import InvitationConfig
from roster_groups.errors import GroupsError, error_responses, handle_groups_error
from roster_groups.models import GroupRole, InvitationStatus
from roster_groups.schemas import (
    GroupCreate,
    GroupPublic,
    GroupUpdate,
    InvitationAnswer,
    InvitationCreate,
    InvitationPublic,
    MemberPublic,
    MembershipCreate,
    MembershipUpdate,
    MembersPage,
    MyInvitationPublic,
)

# Group ids are Postgres INTEGERs: a larger number is a client error, not a database error.
MAX_GROUP_ID: Final = 2**31 - 1

GroupIdPath = Annotated[
    int, Path(ge=1, le=MAX_GROUP_ID, description="The group's id, a positive integer.")
]


def link_header(request: Request, page: PageParams, total: int) -> str | None:
    """RFC 8288 links to the neighbouring pages, on the request's own URL."""
    links: list[str] = []
    if page.offset + page.limit < total:
        next_url = request.url.include_query_params(
            limit=page.limit, offset=page.offset + page.limit
        )
        links.append(f'<{next_url}>; rel="next"')
    if page.offset > 0:
        previous_url = request.url.include_query_params(
            limit=page.limit, offset=max(page.offset - page.limit, 0)
        )
        links.append(f'<{previous_url}>; rel="prev"')
    return ", ".join(links) or None


def _page(listing_items: list[dict[str, object]], total: int, page: PageParams) -> Response:
    return RowsJSONResponse(
        {"items": listing_items, "total": total, "limit": page.limit, "offset": page.offset}
    )


def create_groups_router(
    current_user: UserDependency,
    current_credentials: CredentialsDependency,
    *,
    invitation_config: InvitationConfig | None = None,
) -> APIRouter:
    """Every groups route, authenticated by `current_user` (`auth.current_active_user`), and
    the listings by `current_credentials` (`auth.current_credentials`: they read the caller's
    row in their own statement). `invitation_config` says how invitations are mailed and how
    long they last (give the application's mailer and public URL). The application registers
    `handle_groups_error` for `GroupsError` alongside."""
    config = invitation_config if invitation_config is not None else InvitationConfig()
    CurrentUser = Annotated[User, Depends(current_user)]  # noqa: N806 - a type alias
    CurrentCredentials = Annotated[Credentials, Depends(current_credentials)]  # noqa: N806
    router = APIRouter(tags=["groups"])
    # What a route on one group may answer, besides its own refusals.
    group_errors = (errors.GroupNotFoundError, errors.InsufficientGroupRoleError)
    on_group = error_responses(*group_errors)

    @router.post(
        "/groups",
        status_code=status.HTTP_201_CREATED,
        response_model=GroupPublic,
        responses=error_responses(errors.GroupNameAlreadyExistsError),
    )
    async def create_group(
        data: GroupCreate,
        session: SessionDep,
        user: CurrentUser,
        request: Request,
        response: Response,
    ) -> GroupPublic:
        """Create a group; the caller becomes its owner."""
        group = await service.create_group(session, user, data)
        # Relative to the request's own path, so it holds under any prefix the app mounts us at.
        response.headers["Location"] = f"{request.url.path.rstrip('/')}/{group.id}"
        return group

    @router.get(
        "/groups",
        response_model=Page[GroupPublic],
        responses=error_responses(errors.SuperuserRequiredError),
    )
    async def list_groups(
        session: SessionDep,
        user: CurrentUser,
        page: PageParamsDep,
        all_groups: Annotated[
            bool, Query(alias="all", description="Every group (superusers only).")
        ] = False,
    ) -> Page[GroupPublic]:
        """The caller's groups with the caller's role, by name; `?all=true` for superusers."""
        if all_groups:
            return await service.list_all_groups(session, user, page)
        return await service.list_groups_of(session, user, page)

    @router.get("/groups/{group_id}", response_model=GroupPublic, responses=on_group)
    async def get_group(
        group_id: GroupIdPath, session: SessionDep, user: CurrentUser
    ) -> GroupPublic:
        """A group the caller belongs to."""
        return await service.get_group(session, user, group_id)

    @router.patch(
        "/groups/{group_id}",
        response_model=GroupPublic,
        responses=error_responses(*group_errors, errors.GroupNameAlreadyExistsError),
    )
    async def update_group(
        group_id: GroupIdPath, data: GroupUpdate, session: SessionDep, user: CurrentUser
    ) -> GroupPublic:
        """Rename or redescribe a group (owner, admin)."""
        return await service.update_group(session, user, group_id, data)

    @router.delete("/groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT, responses=on_group)
    async def delete_group(group_id: GroupIdPath, session: SessionDep, user: CurrentUser) -> None:
        """Delete a group and its memberships (owner)."""
        await service.delete_group(session, user, group_id)

    @router.get("/groups/{group_id}/members", response_model=MembersPage, responses=on_group)
    async def list_members(
        group_id: GroupIdPath,
        request: Request,
        credentials: CurrentCredentials,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
        role: Annotated[GroupRole | None, Query(description="Only members with this role.")] = None,
        after: Annotated[
            str | None,
            Query(
                max_length=CURSOR_MAX_LENGTH,
                pattern=CURSOR_PATTERN,
                description=(
                    "A page's `next_cursor`: the page starts after its last member (and "
                    "`offset` counts from there). Deep pages cost no more than the first."
                ),
            ),
            AfterValidator(service.check_member_cursor),
        ] = None,
    ) -> Response:
        """A group's members, longest-standing first."""
        # The two hot listings take the reader from the request and the page as two plain
        # parameters: each dependency FastAPI solves, and each parameter model it validates,
        # is a few percent of a request this short (bench/NOTES.md).
        page = PageParams(limit=limit, offset=offset)
        cursor = None if after is None else service.MemberCursor.decode(after)
        listing = await service.list_members(
            reader_of(request), credentials, group_id, page, role, cursor
        )
        return RowsJSONResponse(
            {
                "items": listing.items,
                "total": listing.total,
                "limit": page.limit,
                "offset": page.offset,
                "next_cursor": listing.next_cursor,
            }
        )

    @router.post(
        "/groups/{group_id}/members",
        status_code=status.HTTP_201_CREATED,
        response_model=MemberPublic,
        responses=error_responses(
            *group_errors, errors.UserNotFoundError, errors.MembershipAlreadyExistsError
        ),
    )
    async def add_member(
        group_id: GroupIdPath,
        data: MembershipCreate,
        session: SessionDep,
        credentials: CurrentCredentials,
    ) -> MemberPublic:
        """Add a user to a group (owner, admin; only an owner grants owner)."""
        return await service.add_member(session, credentials, group_id, data)

    @router.patch(
        "/groups/{group_id}/members/{user_id}",
        response_model=MemberPublic,
        responses=error_responses(*group_errors, errors.MemberNotFoundError, errors.LastOwnerError),
    )
    async def change_role(
        group_id: GroupIdPath,
        user_id: uuid.UUID,
        data: MembershipUpdate,
        session: SessionDep,
        user: CurrentUser,
    ) -> MemberPublic:
        """Change a member's role (owner); the last owner cannot be demoted."""
        return await service.change_role(session, user, group_id, user_id, data.role)

    @router.delete(
        "/groups/{group_id}/members/{user_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(*group_errors, errors.MemberNotFoundError, errors.LastOwnerError),
    )
    async def remove_member(
        group_id: GroupIdPath,
        user_id: uuid.UUID,
        session: SessionDep,
        credentials: CurrentCredentials,
    ) -> None:
        """Remove a member (owner; an admin removes plain members; anyone may leave)."""
        await service.remove_member(session, credentials, group_id, user_id)

    @router.get("/groups/{group_id}/events", response_model=EventsPublic, responses=on_group)
    async def group_events(
        group_id: GroupIdPath,
        reader: ReaderDep,
        credentials: CurrentCredentials,
        page: EventPageParamsDep,
        request: Request,
    ) -> Response:
        """The group's audit trail, newest first (owner, admin): follow `next_cursor`, or the
        `Link` header, for older events."""
        events = await service.list_group_events(reader, credentials, group_id, page)
        return RowsJSONResponse(
            event_page_body(events, page.limit),
            headers=next_link_headers(request, events, page.limit),
        )

    @router.get("/users/me/groups", response_model=Page[GroupPublic], responses=error_responses())
    async def my_groups(
        session: SessionDep, user: CurrentUser, page: PageParamsDep
    ) -> Page[GroupPublic]:
        """The caller's groups with the caller's role in each."""
        return await service.list_groups_of(session, user, page)

    @router.get("/user-groups/{group_id}/users", response_model=list[UserRead], responses=on_group)
    async def group_users(
        group_id: GroupIdPath,
        credentials: CurrentCredentials,
        request: Request,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
    ) -> Response:
        """A group's users as a bare array (kept for the original example's clients); the
        `Link` header points to the next page and `X-Total-Count` gives the total."""
        page = PageParams(limit=limit, offset=offset)  # as list_members
        listing = await service.list_users(reader_of(request), credentials, group_id, page)
        headers = {"X-Total-Count": str(listing.total)}
        link = link_header(request, page, listing.total)
        if link is not None:
            headers["Link"] = link
        return RowsJSONResponse(listing.items, headers=headers)

    @router.post(
        "/groups/{group_id}/invitations",
        status_code=status.HTTP_201_CREATED,
        response_model=InvitationPublic,
        responses=error_responses(
            *group_errors,
            errors.MembershipAlreadyExistsError,
            errors.InvitationAlreadyPendingError,
        ),
    )
    async def create_invitation(
        group_id: GroupIdPath,
        data: InvitationCreate,
        session: SessionDep,
        user: CurrentUser,
        background_tasks: BackgroundTasks,
    ) -> InvitationPublic:
        """Invite an address into a group with a role (owner, admin; only an owner invites an
        owner), and mail it a link with the invitation's token. A repeat while one is pending
        is a 409: revoke the pending one to send another."""
        created = await invitations.create_invitation(session, user, group_id, data, config)
        # After the response, so after the commit: a mail never announces a rolled-back
        # invitation, and a slow mail server does not hold the request.
        background_tasks.add_task(deliver, config.mailer, created.mail)
        return created.invitation

    @router.get(
        "/groups/{group_id}/invitations",
        response_model=Page[InvitationPublic],
        responses=on_group,
    )
    async def list_invitations(
        group_id: GroupIdPath,
        reader: ReaderDep,
        credentials: CurrentCredentials,
        page: PageParamsDep,
        invitation_status: Annotated[
            InvitationStatus | None,
            Query(alias="status", description="Only invitations with this status."),
        ] = None,
    ) -> Response:
        """A group's invitations, newest first (owner, admin)."""
        listing = await invitations.list_group_invitations(
            reader, credentials, group_id, page, config.clock(), invitation_status
        )
        return _page(listing.items, listing.total, page)

    @router.delete(
        "/groups/{group_id}/invitations/{invitation_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(
            *group_errors, errors.InvitationNotFoundError, errors.InvitationNotPendingError
        ),
    )
    async def revoke_invitation(
        group_id: GroupIdPath, invitation_id: uuid.UUID, session: SessionDep, user: CurrentUser
    ) -> None:
        """Revoke a pending invitation (owner, admin; an owner's invitation, owners only)."""
        await invitations.revoke_invitation(session, user, group_id, invitation_id, config.clock())

    @router.get(
        "/users/me/invitations",
        response_model=Page[MyInvitationPublic],
        responses=error_responses(errors.EmailNotVerifiedError),
    )
    async def my_invitations(
        reader: ReaderDep, credentials: CurrentCredentials, page: PageParamsDep
    ) -> Response:
        """The pending invitations to the caller's address, newest first (a verified address
        only). Accepting needs the token of the invitation's mail."""
        listing = await invitations.list_my_invitations(reader, credentials, page, config.clock())
        return _page(listing.items, listing.total, page)

    token_errors = (
        errors.UnknownInvitationTokenError,
        errors.InvitationExpiredError,
        errors.InvitationRevokedError,
        errors.InvitationAlreadyUsedError,
        errors.InvitationEmailMismatchError,
    )

    @router.post(
        "/invitations/accept",
        response_model=GroupPublic,
        responses=error_responses(*token_errors, errors.MembershipAlreadyExistsError),
    )
    async def accept_invitation(
        data: InvitationAnswer, session: SessionDep, user: CurrentUser
    ) -> GroupPublic:
        """Join the group with the invited role, signed in with the invited address; the
        address becomes verified (the token reached its inbox). Answers the group joined."""
        return await invitations.accept_invitation(session, user, data.token, config.clock())

    @router.post(
        "/invitations/decline",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(*token_errors),
    )
    async def decline_invitation(
        data: InvitationAnswer, session: SessionDep, user: CurrentUser
    ) -> None:
        """Decline an invitation to the signed-in address: it can no longer be accepted."""
        await invitations.decline_invitation(session, user, data.token, config.clock())

    return router


def include_with_groups(
    app: FastAPI, auth: RosterAuth, *, invitation_config: InvitationConfig | None = None
) -> None:
    """roster-auth's routes, then the groups' routes on its current-user dependencies, and
    `handle_groups_error` for `GroupsError`: the groups member as an application mounts it."""
    for auth_router in auth.routers():
        app.include_router(auth_router)
    app.include_router(
        create_groups_router(
            auth.current_active_user,
            auth.current_credentials,
            invitation_config=invitation_config,
        )
    )
    app.add_exception_handler(GroupsError, handle_groups_error)


__all__ = [
    "MAX_GROUP_ID",
    "GroupIdPath",
    "create_groups_router",
    "include_with_groups",
    "link_header",
]
