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

The bearer backend's login answers an OAuth 2.0 token response with a refresh token
(`build_bearer_router`, which adds `/refresh` and its own `/logout`). The cookie backend's
logout and `/verify` stay the library's routes. Compare the copies with the library's when
upgrading it.
"""

import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Form, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from fastapi.security.base import SecurityBase
from fastapi_users import exceptions
from fastapi_users.authentication import AuthenticationBackend, Authenticator, Strategy
from fastapi_users.router import get_auth_router, get_verify_router
from fastapi_users.router.common import ErrorCode, ErrorModel
from fastapi_users.router.reset import RESET_PASSWORD_RESPONSES
from pydantic import EmailStr

from roster_auth.backends import RequiredClaimsJWTStrategy
from roster_auth.current import not_authenticated
from roster_auth.dependencies import UserManagerDependency
from roster_auth.errors import bad_request, retry_later_responses
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.manager import UserManager
from roster_auth.models import EMAIL_MAX_LENGTH, User
from roster_auth.schemas import RefreshTokenBody, TokenResponse, UserCreate, UserRead
from roster_auth.sessions import Origin, Refused, Sessions
from roster_auth.throttle import Throttle
from roster_db import SessionDep

logger = logging.getLogger(__name__)

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
    login_responses = _login_responses(backend.transport.get_openapi_login_responses_success())

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
        user = await _authenticate(request, credentials, user_manager, throttle, hashing_queue)
        response = await backend.login(strategy, user)
        await user_manager.on_after_login(user, request, response)
        return response

    library = get_auth_router(backend, get_user_manager, authenticator)
    router.routes.extend(_routes_named(library, f"auth:{backend.name}.logout"))
    return router


def _login_responses(success: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    return {
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
        **success,
    }


async def _authenticate(
    request: Request,
    credentials: OAuth2PasswordRequestForm,
    user_manager: UserManager,
    throttle: Throttle,
    hashing_queue: PasswordHashingQueue,
) -> User:
    """FastAPI Users' login check, throttled: the active user the credentials name, or its
    400 `LOGIN_BAD_CREDENTIALS`."""
    # A place in the hashing queue first: beyond capacity, a 503 before any database work.
    async with hashing_queue.reserve():
        attempt = await throttle.check_login(request, credentials.username)
        user = await user_manager.authenticate(credentials)
        if user is None or not user.is_active:
            await attempt.failed()
            raise bad_request(ErrorCode.LOGIN_BAD_CREDENTIALS)
        await attempt.succeeded()
    return user


# RFC 6749, section 5.1: token responses are not cached.
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
UNAUTHORIZED_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    status.HTTP_401_UNAUTHORIZED: {
        "model": ErrorModel,
        "description": "`Unauthorized`: the refresh token is unknown, used already, expired, "
        "or its family was revoked (a reuse revokes it), or its user is inactive.",
    }
}


@dataclass(frozen=True)
class IssuedTokens:
    user_id: uuid.UUID
    family_id: uuid.UUID
    refresh_token: str


def token_response(strategy: RequiredClaimsJWTStrategy, issued: IssuedTokens) -> JSONResponse:
    body = TokenResponse(
        access_token=strategy.write_session_token(issued.user_id, issued.family_id),
        expires_in=strategy.lifetime_seconds or 0,
        refresh_token=issued.refresh_token,
    )
    return JSONResponse(body.model_dump(), headers=NO_STORE)


def build_bearer_router(
    *,
    strategy: RequiredClaimsJWTStrategy,
    sessions: Sessions,
    bearer_scheme: SecurityBase,
    get_user_manager: UserManagerDependency,
    throttle: Throttle,
    hashing_queue: PasswordHashingQueue,
    password_max_length: int,
) -> APIRouter:
    """The bearer backend's routes: `POST /login` (FastAPI Users' route, throttled, answering
    an OAuth 2.0 token response with a refresh token), `POST /refresh` and `POST /logout`.

    `/refresh` takes JSON (`{"refresh_token": ...}`), like every other body of the API but the
    login form (which is OAuth's password grant, form-encoded so that OpenAPI's "Authorize"
    button can use it): clients send it from code, and a JSON body cannot be posted
    cross-site without a CORS preflight. It answers the same token response as the login."""
    router = APIRouter()
    LoginForm = login_form_class(password_max_length)  # noqa: N806 - a class
    token_success: dict[int | str, dict[str, Any]] = {
        status.HTTP_200_OK: {"model": TokenResponse, "description": "The tokens."}
    }

    @router.post(
        "/login",
        name="auth:jwt.login",
        response_model=TokenResponse,
        responses=_login_responses(token_success),
    )
    async def login(
        request: Request,
        credentials: Annotated[OAuth2PasswordRequestForm, Depends(LoginForm)],
        user_manager: Annotated[UserManager, Depends(get_user_manager)],
        session: SessionDep,
    ) -> Response:
        """Log in with the password: an access token and a refresh token (a new session)."""
        user = await _authenticate(request, credentials, user_manager, throttle, hashing_queue)
        family_id, refresh_token = await sessions.start_family(session, user.id, Origin.of(request))
        response = token_response(strategy, IssuedTokens(user.id, family_id, refresh_token))
        await user_manager.on_after_login(user, request, response)
        return response

    @router.post(
        "/refresh",
        name="auth:jwt.refresh",
        response_model=TokenResponse,
        responses=UNAUTHORIZED_RESPONSE,
    )
    async def refresh(body: RefreshTokenBody, session: SessionDep) -> Response:
        """Exchange the refresh token for a new access token and a new refresh token; the
        one given stops working. Giving a refresh token that was exchanged already ends its
        session (both copies of it stop working)."""
        outcome = await sessions.rotate(session, body.refresh_token)
        if isinstance(outcome, Refused):
            if outcome.reused_family_id is not None:
                # Kept, although the answer is an error.
                await session.commit()
                logger.warning(
                    "a refresh token of user %s was used twice: session %s revoked",
                    outcome.user_id,
                    outcome.reused_family_id,
                )
            raise not_authenticated()
        return token_response(
            strategy, IssuedTokens(outcome.user_id, outcome.family_id, outcome.refresh_token)
        )

    @router.post(
        "/logout",
        name="auth:jwt.logout",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses={
            status.HTTP_401_UNAUTHORIZED: {
                "model": ErrorModel,
                "description": "No refresh token and no valid access token, a refresh token "
                "that is no session's, or one of another user than the access token's.",
            }
        },
    )
    async def logout(
        session: SessionDep,
        bearer_token: Annotated[str | None, Depends(bearer_scheme)],
        body: Annotated[RefreshTokenBody | None, Body()] = None,
    ) -> None:
        """End the session: the family of the refresh token given, else that of the access
        token. The access token itself stays valid until it expires (15 minutes by
        default): discard it."""
        claims = None if bearer_token is None else strategy.claims_of(bearer_token)
        if body is not None:
            ended = await sessions.revoke_family_of(
                session, body.refresh_token, None if claims is None else claims[0]
            )
            if ended is None:
                raise not_authenticated()
        elif claims is None:
            raise not_authenticated()
        elif claims[1] is not None:
            await sessions.end(session, claims[0], claims[1])

    return router


async def create_account(
    user_manager: UserManager, user_create: UserCreate, *, safe: bool, request: Request
) -> UserRead:
    """`user_manager.create`, answered as FastAPI Users' register route answers: 400
    `REGISTER_USER_ALREADY_EXISTS`, or `REGISTER_INVALID_PASSWORD` with the reason. `safe`
    ignores the superuser and verified flags of the body (registration)."""
    try:
        user = await user_manager.create(user_create, safe=safe, request=request)
    except exceptions.UserAlreadyExists as error:
        raise bad_request(ErrorCode.REGISTER_USER_ALREADY_EXISTS) from error
    except exceptions.InvalidPasswordException as error:
        raise bad_request(ErrorCode.REGISTER_INVALID_PASSWORD, error.reason) from error
    return UserRead.model_validate(user)


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
            return await create_account(user_manager, user_create, safe=True, request=request)

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
                raise bad_request(ErrorCode.RESET_PASSWORD_BAD_TOKEN) from error
            except exceptions.InvalidPasswordException as error:
                raise bad_request(
                    ErrorCode.RESET_PASSWORD_INVALID_PASSWORD, error.reason
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
    "TokenResponse",
    "build_bearer_router",
    "build_login_router",
    "build_register_router",
    "build_reset_password_router",
    "build_verify_router",
    "create_account",
    "login_form_class",
]
