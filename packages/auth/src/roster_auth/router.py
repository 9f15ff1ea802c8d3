"""The routes admins expect and FastAPI Users lacks: listing and creating users."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi_users import exceptions
from fastapi_users.router.common import ErrorCode, ErrorModel

from roster_auth.dependencies import UserDependency, UserManagerDependency
from roster_auth.errors import retry_later_responses
from roster_auth.manager import UserManager
from roster_auth.models import EMAIL_MAX_LENGTH, User
from roster_auth.schemas import UserCreate, UserRead
from roster_auth.service import list_users
from roster_db import Page, PageParamsDep, SessionDep


def build_admin_router(
    get_user_manager: UserManagerDependency, current_superuser: UserDependency
) -> APIRouter:
    """`GET /users` and `POST /users`, on a router with the `/users` prefix (the routes'
    own path is empty, which FastAPI allows only under a prefix)."""
    router = APIRouter(prefix="/users", tags=["users"])
    superuser_responses: dict[int | str, dict[str, Any]] = {
        status.HTTP_401_UNAUTHORIZED: {"description": "Missing token or inactive user."},
        status.HTTP_403_FORBIDDEN: {"description": "Not a superuser."},
    }

    @router.get(
        "",
        response_model=Page[UserRead],
        name="users:list_users",
        responses=superuser_responses,
    )
    async def read_users(
        session: SessionDep,
        page: PageParamsDep,
        _: Annotated[User, Depends(current_superuser)],
        email: Annotated[
            str | None,
            Query(
                max_length=EMAIL_MAX_LENGTH,
                description="Keep users whose email contains this, ignoring letter case.",
            ),
        ] = None,
    ) -> Page[UserRead]:
        """List users, oldest first (superusers only)."""
        users, total = await list_users(session, page, email_contains=email)
        return Page[UserRead](
            items=[UserRead.model_validate(user) for user in users],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    @router.post(
        "",
        response_model=UserRead,
        status_code=status.HTTP_201_CREATED,
        name="users:create_user",
        responses={
            **superuser_responses,
            status.HTTP_400_BAD_REQUEST: {"model": ErrorModel},
            **retry_later_responses(hashes=True),
        },
    )
    async def create_user(
        request: Request,
        user_create: UserCreate,
        _: Annotated[User, Depends(current_superuser)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> UserRead:
        """Create a user, flags included (superusers only)."""
        try:
            user = await user_manager.create(user_create, safe=False, request=request)
        except exceptions.UserAlreadyExists as error:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, detail=ErrorCode.REGISTER_USER_ALREADY_EXISTS
            ) from error
        except exceptions.InvalidPasswordException as error:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail={"code": ErrorCode.REGISTER_INVALID_PASSWORD, "reason": error.reason},
            ) from error
        return UserRead.model_validate(user)

    return router


__all__ = ["build_admin_router"]
