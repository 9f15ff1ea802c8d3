"""The routes anyone may call to get into an account: log in, register, forgot and reset a
password, ask for a verification mail.

They are FastAPI Users' own (`fastapi_users.router.auth`, `.register`, `.reset`, `.verify`,
version 15), copied with the same paths, route names, bodies, answers and documented
responses, plus what the library has no hook for:

- the throttle (`Throttle`): a check before a login's password is verified and a record of its
  outcome; a count of every registration and mail request, before the account is looked up;
- a place in the hashing queue taken first, so that beyond capacity the answer is a 503
  before any database work;
- bounds on the login form (`username`, `password`, the OAuth2 extras) and on the new
  password of a reset, checked before anything is normalised or hashed, and no control
  characters in the username (Postgres refuses NUL).

Logout and `/verify` stay the library's routes. Compare the copies with the library's when
upgrading it.
"""

import contextlib
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Form, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import exceptions
from fastapi_users.authentication import AuthenticationBackend, Authenticator, Strategy
from fastapi_users.router import get_auth_router, get_verify_router
from fastapi_users.router.common import ErrorCode, ErrorModel
from fastapi_users.router.reset import RESET_PASSWORD_RESPONSES
from pydantic import EmailStr

from roster_auth.dependencies import UserManagerDependency
from roster_auth.errors import retry_later_responses
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.manager import UserManager
from roster_auth.models import EMAIL_MAX_LENGTH, User
from roster_auth.schemas import UserCreate, UserRead
from roster_auth.throttle import Throttle

# No C0 or C1 control character (Unicode category Cc), as `roster_db.text.single_line` says.
SINGLE_LINE_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]*$"
# The OAuth2 extras the login form accepts and ignores.
OAUTH2_FIELD_MAX_LENGTH: Final = 1024


def login_form_class(password_max_length: int) -> type[OAuth2PasswordRequestForm]:
    """FastAPI's OAuth2 password form (the same fields, so the same schema for clients) with
    bounds on every field."""

    class LoginForm(OAuth2PasswordRequestForm):
        def __init__(
            self,
            *,
            grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
            username: Annotated[
                str,
                Form(
                    max_length=EMAIL_MAX_LENGTH,
                    pattern=SINGLE_LINE_PATTERN,
                    description="The account's email address; no control characters.",
                ),
            ],
            password: Annotated[
                str, Form(max_length=password_max_length, json_schema_extra={"format": "password"})
            ],
            scope: Annotated[str, Form(max_length=OAUTH2_FIELD_MAX_LENGTH)] = "",
            client_id: Annotated[str | None, Form(max_length=OAUTH2_FIELD_MAX_LENGTH)] = None,
            client_secret: Annotated[
                str | None,
                Form(max_length=OAUTH2_FIELD_MAX_LENGTH, json_schema_extra={"format": "password"}),
            ] = None,
        ) -> None:
            super().__init__(
                grant_type=grant_type,
                username=username,
                password=password,
                scope=scope,
                client_id=client_id,
                client_secret=client_secret,
            )

    return LoginForm


def build_login_router(
    backend: AuthenticationBackend[User, Any],
    *,
    get_user_manager: UserManagerDependency,
    authenticator: Authenticator[User, Any],
    throttle: Throttle,
    hashing_queue: PasswordHashingQueue,
    password_max_length: int,
) -> APIRouter:
    """`POST /login` (FastAPI Users' login route, throttled) and the library's
    `POST /logout`, for one backend."""
    router = APIRouter()
    LoginForm = login_form_class(password_max_length)  # noqa: N806 - a class
    login_responses: dict[int | str, dict[str, Any]] = {
        status.HTTP_400_BAD_REQUEST: {
            "model": ErrorModel,
            "content": {
                "application/json": {
                    "examples": {
                        ErrorCode.LOGIN_BAD_CREDENTIALS: {
                            "summary": "Bad credentials or the user is inactive.",
                            "value": {"detail": ErrorCode.LOGIN_BAD_CREDENTIALS},
                        },
                        ErrorCode.LOGIN_USER_NOT_VERIFIED: {
                            "summary": "The user is not verified.",
                            "value": {"detail": ErrorCode.LOGIN_USER_NOT_VERIFIED},
                        },
                    }
                }
            },
        },
        **retry_later_responses(hashes=True, throttled=True),
        **backend.transport.get_openapi_login_responses_success(),
    }

    @router.post(
        "/login",
        name=f"auth:{backend.name}.login",
        # The answer is the backend's (a token, or a cookie); `responses` documents it.
        response_model=None,
        responses=login_responses,
    )
    async def login(
        request: Request,
        credentials: Annotated[OAuth2PasswordRequestForm, Depends(LoginForm)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
        strategy: Annotated[Strategy[User, Any], Depends(backend.get_strategy)],
    ) -> Any:
        # A place in the hashing queue first: beyond capacity, a 503 before any database work.
        async with hashing_queue.reserve():
            attempt = await throttle.check_login(request, credentials.username)
            user = await user_manager.authenticate(credentials)
            if user is None or not user.is_active:
                await attempt.failed()
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST,
                    detail=ErrorCode.LOGIN_BAD_CREDENTIALS,
                )
            await attempt.succeeded()
        response = await backend.login(strategy, user)
        await user_manager.on_after_login(user, request, response)
        return response

    library = get_auth_router(backend, get_user_manager, authenticator)
    router.routes.extend(_routes_named(library, f"auth:{backend.name}.logout"))
    return router


def build_register_router(
    *,
    get_user_manager: UserManagerDependency,
    throttle: Throttle,
    hashing_queue: PasswordHashingQueue,
) -> APIRouter:
    """`POST /register`: FastAPI Users' route, every attempt counted by the throttle."""
    router = APIRouter()

    @router.post(
        "/register",
        response_model=UserRead,
        status_code=status.HTTP_201_CREATED,
        name="register:register",
        responses={
            status.HTTP_400_BAD_REQUEST: {
                "model": ErrorModel,
                "content": {
                    "application/json": {
                        "examples": {
                            ErrorCode.REGISTER_USER_ALREADY_EXISTS: {
                                "summary": "A user with this email already exists.",
                                "value": {"detail": ErrorCode.REGISTER_USER_ALREADY_EXISTS},
                            },
                            ErrorCode.REGISTER_INVALID_PASSWORD: {
                                "summary": "Password validation failed.",
                                "value": {
                                    "detail": {
                                        "code": ErrorCode.REGISTER_INVALID_PASSWORD,
                                        "reason": "Password must be at least 15 characters long.",
                                    }
                                },
                            },
                        }
                    }
                },
            },
            **retry_later_responses(hashes=True, throttled=True),
        },
    )
    async def register(
        request: Request,
        user_create: UserCreate,
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> UserRead:
        async with hashing_queue.reserve():
            await throttle.count_registration(request, user_create.email)
            try:
                created_user = await user_manager.create(user_create, safe=True, request=request)
            except exceptions.UserAlreadyExists as error:
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST,
                    detail=ErrorCode.REGISTER_USER_ALREADY_EXISTS,
                ) from error
            except exceptions.InvalidPasswordException as error:
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST,
                    detail={"code": ErrorCode.REGISTER_INVALID_PASSWORD, "reason": error.reason},
                ) from error
        return UserRead.model_validate(created_user)

    return router


def build_reset_password_router(
    *,
    get_user_manager: UserManagerDependency,
    throttle: Throttle,
    hashing_queue: PasswordHashingQueue,
    password_max_length: int,
) -> APIRouter:
    """`POST /forgot-password` (throttled) and `POST /reset-password` (a bounded password):
    FastAPI Users' routes."""
    router = APIRouter()

    @router.post(
        "/forgot-password",
        status_code=status.HTTP_202_ACCEPTED,
        name="reset:forgot_password",
        responses=retry_later_responses(hashes=True, throttled=True),
    )
    async def forgot_password(
        request: Request,
        email: Annotated[EmailStr, Body(embed=True)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> None:
        # Reserved whether or not the address has an account (only an account's token costs a
        # hash): a 503 that came only for accounts would tell which addresses have one.
        async with hashing_queue.reserve():
            await throttle.count_mail_request(request, email)
            try:
                user = await user_manager.get_by_email(email)
            except exceptions.UserNotExists:
                return
            with contextlib.suppress(exceptions.UserInactive):
                await user_manager.forgot_password(user, request)

    @router.post(
        "/reset-password",
        name="reset:reset_password",
        responses={**RESET_PASSWORD_RESPONSES, **retry_later_responses(hashes=True)},
    )
    async def reset_password(
        request: Request,
        token: Annotated[str, Body()],
        password: Annotated[
            str, Body(max_length=password_max_length, json_schema_extra={"format": "password"})
        ],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> None:
        async with hashing_queue.reserve():
            try:
                await user_manager.reset_password(token, password, request)
            except (
                exceptions.InvalidResetPasswordToken,
                exceptions.UserNotExists,
                exceptions.UserInactive,
            ) as error:
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST,
                    detail=ErrorCode.RESET_PASSWORD_BAD_TOKEN,
                ) from error
            except exceptions.InvalidPasswordException as error:
                raise HTTPException(
                    status_code=status.HTTP_400_BAD_REQUEST,
                    detail={
                        "code": ErrorCode.RESET_PASSWORD_INVALID_PASSWORD,
                        "reason": error.reason,
                    },
                ) from error

    return router


def build_verify_router(
    *, get_user_manager: UserManagerDependency, throttle: Throttle
) -> APIRouter:
    """`POST /request-verify-token` (FastAPI Users' route, throttled) and the library's
    `POST /verify`."""
    router = APIRouter()

    @router.post(
        "/request-verify-token",
        status_code=status.HTTP_202_ACCEPTED,
        name="verify:request-token",
        responses=retry_later_responses(throttled=True),
    )
    async def request_verify_token(
        request: Request,
        email: Annotated[EmailStr, Body(embed=True)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
    ) -> None:
        await throttle.count_mail_request(request, email)
        try:
            user = await user_manager.get_by_email(email)
            await user_manager.request_verify(user, request)
        except (
            exceptions.UserNotExists,
            exceptions.UserInactive,
            exceptions.UserAlreadyVerified,
        ):
            pass

    library = get_verify_router(get_user_manager, UserRead)
    router.routes.extend(_routes_named(library, "verify:verify"))
    return router


def _routes_named(router: APIRouter, *names: str) -> list[Any]:
    """The routes of a library router that are kept as they are; fails loudly when the
    library renamed one."""
    routes = [route for route in router.routes if getattr(route, "name", None) in names]
    found = {getattr(route, "name", None) for route in routes}
    if found != set(names):
        raise RuntimeError(f"FastAPI Users has no route named {sorted(set(names) - found)}")
    return routes


__all__ = [
    "SINGLE_LINE_PATTERN",
    "build_login_router",
    "build_register_router",
    "build_reset_password_router",
    "build_verify_router",
    "login_form_class",
]
