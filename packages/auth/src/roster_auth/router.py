"""Routes FastAPI Users lacks or gets wrong for us: listing and creating users (admins), a
`PATCH /users/me` that asks for the current password, and a `GET /users/me` on roster's own
current-user dependency."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.routing import APIRoute
from fastapi_users import FastAPIUsers, exceptions
from fastapi_users.router.common import ErrorCode, ErrorModel
from sqlalchemy import Row

from roster_auth.auth_routes import create_account
from roster_auth.current import CurrentUserRowDependency
from roster_auth.dependencies import UserDependency, UserManagerDependency
from roster_auth.errors import (
    SUPERUSER_RESPONSES,
    UNAUTHORIZED_RESPONSES,
    bad_request,
    retry_later_responses,
)
from roster_auth.manager import (
    InvalidCurrentPasswordException,
    UserManager,
    remember_acting_user,
)
from roster_auth.models import EMAIL_MAX_LENGTH, User
from roster_auth.schemas import UserCreate, UserRead, UserUpdate, UserUpdateMe
from roster_auth.service import list_users
from roster_db import Page, PageParamsDep, RowsJSONResponse, SessionDep

USERS_PREFIX: Final = "/users"


def build_admin_router(
    get_user_manager: UserManagerDependency, current_superuser: UserDependency
) -> APIRouter:
    """`GET /users` and `POST /users`, on a router with the `/users` prefix (the routes'
    own path is empty, which FastAPI allows only under a prefix)."""
    router = APIRouter(prefix=USERS_PREFIX, tags=["users"])

    @router.get(
        "",
        response_model=Page[UserRead],
        name="users:list_users",
        responses=SUPERUSER_RESPONSES,
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
            **SUPERUSER_RESPONSES,
            status.HTTP_400_BAD_REQUEST: {"model": ErrorModel},
            **retry_later_responses(hashes=True),
        },
    )
    async def create_user(
        request: Request,
        user_create: UserCreate,
        superuser: Annotated[User, Depends(current_superuser)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> UserRead:
        """Create a user, flags included (superusers only)."""
        remember_acting_user(request, superuser.id)
        return await create_account(user_manager, user_create, safe=False, request=request)

    return router


UPDATE_USER_BAD_CURRENT_PASSWORD: Final = "UPDATE_USER_BAD_CURRENT_PASSWORD"  # noqa: S105
PATCH_CURRENT_USER: Final = "users:patch_current_user"
GET_CURRENT_USER: Final = "users:current_user"
PATCH_USER: Final = "users:patch_user"
DELETE_USER: Final = "users:delete_user"
USER_READ_FIELDS: Final = tuple(UserRead.model_fields)


def _error_example(summary: str, detail: str | dict[str, str]) -> dict[str, Any]:
    return {"summary": summary, "value": {"detail": detail}}


def _reason(code: str, reason: str) -> dict[str, str]:
    return {"code": code, "reason": reason}


def build_users_router(
    fastapi_users: FastAPIUsers[User, uuid.UUID],
    get_user_manager: UserManagerDependency,
    current_active_user: UserDependency,
    current_active_user_row: CurrentUserRowDependency,
) -> APIRouter:
    """FastAPI Users' users router (`/me`, `/{id}`), with its `GET /me` and `PATCH /me`
    replaced by ours: the same names, bodies (plus `current_password` for `PATCH`), answers
    and places among the routes, on `current_active_user`."""
    users_router = fastapi_users.get_users_router(UserRead, UserUpdate)
    own = APIRouter()

    @own.patch(
        "/me",
        response_model=UserRead,
        name=PATCH_CURRENT_USER,
        responses={
            # A wrong current password counts as a failed login (429), and checking it hashes.
            **retry_later_responses(hashes=True, throttled=True),
            **UNAUTHORIZED_RESPONSES,
            status.HTTP_400_BAD_REQUEST: {
                "model": ErrorModel,
                "content": {
                    "application/json": {
                        "examples": {
                            UPDATE_USER_BAD_CURRENT_PASSWORD: _error_example(
                                "The password or email changes, and current_password is "
                                "missing or wrong.",
                                _reason(
                                    UPDATE_USER_BAD_CURRENT_PASSWORD,
                                    "The current password is wrong.",
                                ),
                            ),
                            ErrorCode.UPDATE_USER_EMAIL_ALREADY_EXISTS: _error_example(
                                "A user with this email already exists.",
                                ErrorCode.UPDATE_USER_EMAIL_ALREADY_EXISTS,
                            ),
                            ErrorCode.UPDATE_USER_INVALID_PASSWORD: _error_example(
                                "Password validation failed.",
                                _reason(
                                    ErrorCode.UPDATE_USER_INVALID_PASSWORD,
                                    "Password must be at least 15 characters long.",
                                ),
                            ),
                        }
                    }
                },
            },
        },
    )
    async def update_me(
        request: Request,
        user_update: UserUpdateMe,
        user: Annotated[User, Depends(current_active_user)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> UserRead:
        """Change the signed-in user's account; a new password or email address needs
        `current_password`."""
        # FastAPI Users' own route (15.0), plus the current password's answer.
        try:
            user = await user_manager.update(user_update, user, safe=True, request=request)
        except InvalidCurrentPasswordException as error:
            raise bad_request(UPDATE_USER_BAD_CURRENT_PASSWORD, error.reason) from error
        except exceptions.InvalidPasswordException as error:
            raise bad_request(ErrorCode.UPDATE_USER_INVALID_PASSWORD, error.reason) from error
        except exceptions.UserAlreadyExists as error:
            raise bad_request(ErrorCode.UPDATE_USER_EMAIL_ALREADY_EXISTS) from error
        return UserRead.model_validate(user)

    @own.get(
        "/me",
        response_model=UserRead,
        name=GET_CURRENT_USER,
        responses=UNAUTHORIZED_RESPONSES,
    )
    async def me(user: Annotated[Row[Any], Depends(current_active_user_row)]) -> Response:
        """The signed-in user's account."""
        # FastAPI Users' own route, on our current-user dependency: the row's columns named
        # by UserRead's fields, written as JSON without a model in between.
        return RowsJSONResponse({name: getattr(user, name) for name in USER_READ_FIELDS})

    for replacement in own.routes:
        assert isinstance(replacement, APIRoute)
        # In the library's place, before `/{id}`, which would otherwise take "me" for an id.
        positions = [
            index
            for index, route in enumerate(users_router.routes)
            if isinstance(route, APIRoute) and route.name == replacement.name
        ]
        if len(positions) != 1:
            raise RuntimeError(f"FastAPI Users' users router has no single {replacement.name}")
        users_router.routes[positions[0]] = replacement
    _remember_acting_superuser(users_router, PATCH_USER, DELETE_USER)
    return users_router


def _remembering(superuser_dependency: Callable[..., Any]) -> Callable[..., Any]:
    async def remember(
        request: Request, superuser: Annotated[User, Depends(superuser_dependency)]
    ) -> None:
        remember_acting_user(request, superuser.id)

    return remember


def _remember_acting_superuser(router: APIRouter, *names: str) -> None:
    """The library's superuser routes on one account (`PATCH`, `DELETE /users/{id}`) tell the
    user manager who acts, for the audit trail: a dependency on the route's own superuser
    dependency, which FastAPI solves once per request (no second authentication). Takes
    effect when the router is included, which builds the routes anew."""
    found = set()
    for route in router.routes:
        if not isinstance(route, APIRoute) or route.name not in names:
            continue
        (superuser_dependency,) = (
            dependency.dependency for dependency in route.dependencies if dependency.dependency
        )
        route.dependencies.append(Depends(_remembering(superuser_dependency)))
        found.add(route.name)
    if found != set(names):
        raise RuntimeError(f"FastAPI Users' users router has no {sorted(set(names) - found)}")


__all__ = ["UPDATE_USER_BAD_CURRENT_PASSWORD", "build_admin_router", "build_users_router"]
