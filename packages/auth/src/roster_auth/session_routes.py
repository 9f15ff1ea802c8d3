"""Where a user is signed in: `GET /users/me/sessions`, `DELETE /users/me/sessions/{id}`,
`DELETE /users/me/sessions` (all but the current one), and the same for superusers on any user
(`/users/{id}/sessions`).

A session is a cookie session (a stored cookie token) or a refresh-token family (a bearer
client's login, renewed by its refreshes). Its id is a random UUID of its own, never the token
or its digest. Ending a session deletes a cookie session's token, or revokes a family: its
refresh token stops working at once; the access tokens it issued last until they expire.
Another user's session id is answered as an unknown one (404 `SESSION_NOT_FOUND`).
"""

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.security.base import SecurityBase
from fastapi_users.router.common import ErrorModel
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.backends import RequiredClaimsJWTStrategy
from roster_auth.dependencies import UserDependency
from roster_auth.errors import SUPERUSER_RESPONSES, UNAUTHORIZED_RESPONSES
from roster_auth.models import User
from roster_auth.schemas import SessionRead
from roster_auth.sessions import CallerSession, Sessions
from roster_db import SessionDep

SESSION_NOT_FOUND: Final = "SESSION_NOT_FOUND"

CallerSessionDependency = Callable[..., Coroutine[Any, Any, CallerSession]]


def caller_session_dependency(
    sessions: Sessions,
    strategy: RequiredClaimsJWTStrategy,
    cookie_scheme: SecurityBase,
    bearer_scheme: SecurityBase,
) -> CallerSessionDependency:
    """The request's own session (see `Sessions.caller`)."""

    async def caller_session(
        session: SessionDep,
        cookie_token: Annotated[str | None, Depends(cookie_scheme)],
        bearer_token: Annotated[str | None, Depends(bearer_scheme)],
    ) -> CallerSession:
        claims = None if bearer_token is None else strategy.claims_of(bearer_token)
        family_id = None if claims is None else claims[1]
        return await sessions.caller(session, cookie_token, family_id)

    return caller_session


def build_sessions_router(
    sessions: Sessions,
    caller_session: CallerSessionDependency,
    current_active_user: UserDependency,
    current_superuser: UserDependency,
) -> APIRouter:
    """The session routes, to include in the `/users` router before FastAPI Users' users
    router."""
    CallerDep = Annotated[CallerSession, Depends(caller_session)]  # noqa: N806 - a type alias
    not_found: dict[int | str, dict[str, Any]] = {
        status.HTTP_404_NOT_FOUND: {
            "model": ErrorModel,
            "description": f"`{SESSION_NOT_FOUND}`: the user has no live session of this id.",
        }
    }

    async def end_one(session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        if not await sessions.end(session, user_id, session_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=SESSION_NOT_FOUND)

    # The signed-in user's own sessions.
    mine = APIRouter(responses=UNAUTHORIZED_RESPONSES)
    ActiveUser = Annotated[User, Depends(current_active_user)]  # noqa: N806 - a type alias

    @mine.get("/me/sessions", response_model=list[SessionRead], name="users:current_user_sessions")
    async def my_sessions(
        session: SessionDep, user: ActiveUser, caller: CallerDep
    ) -> list[SessionRead]:
        """Where you are signed in: your live cookie sessions and refresh-token families,
        newest first; `current` marks this request's."""
        rows = await sessions.live(session, user.id, caller)
        return [SessionRead.model_validate(row) for row in rows]

    @mine.delete(
        "/me/sessions/{session_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name="users:end_current_user_session",
        responses=not_found,
    )
    async def end_my_session(session_id: uuid.UUID, session: SessionDep, user: ActiveUser) -> None:
        """End one of your sessions (the current one too: that is a logout)."""
        await end_one(session, user.id, session_id)

    @mine.delete(
        "/me/sessions",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name="users:end_current_user_other_sessions",
    )
    async def end_my_other_sessions(
        session: SessionDep, user: ActiveUser, caller: CallerDep
    ) -> None:
        """End every session of yours but the current one."""
        await sessions.end_others(session, user.id, caller)

    # Any user's, for superusers.
    theirs = APIRouter(
        responses={
            **SUPERUSER_RESPONSES,
            status.HTTP_404_NOT_FOUND: {"model": ErrorModel, "description": "No such user."},
        },
        dependencies=[Depends(current_superuser)],
    )

    async def existing_user(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID:
        if await session.get(User, user_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        return user_id

    @theirs.get("/{user_id}/sessions", response_model=list[SessionRead], name="users:user_sessions")
    async def user_sessions(
        user_id: uuid.UUID, session: SessionDep, caller: CallerDep
    ) -> list[SessionRead]:
        """A user's live sessions (superusers only)."""
        rows = await sessions.live(session, await existing_user(session, user_id), caller)
        return [SessionRead.model_validate(row) for row in rows]

    @theirs.delete(
        "/{user_id}/sessions/{session_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name="users:end_user_session",
        responses=not_found,
    )
    async def end_user_session(
        user_id: uuid.UUID, session_id: uuid.UUID, session: SessionDep
    ) -> None:
        """End one of a user's sessions (superusers only)."""
        await end_one(session, await existing_user(session, user_id), session_id)

    @theirs.delete(
        "/{user_id}/sessions",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name="users:end_user_sessions",
    )
    async def end_user_sessions(user_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> None:
        """End every session of a user (superusers only; the caller's own current session
        stays, when the user is the caller)."""
        await sessions.end_others(session, await existing_user(session, user_id), caller)

    router = APIRouter()
    router.include_router(mine)
    router.include_router(theirs)
    return router


__all__ = ["SESSION_NOT_FOUND", "build_sessions_router", "caller_session_dependency"]
