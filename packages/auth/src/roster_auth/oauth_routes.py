"""Sign in with an identity provider, link one to the signed-in user, and unlink it: FastAPI
Users' OAuth routers (`fastapi_users.router.oauth`, version 15) in their shape, with the
checks of `roster_auth.oauth`, the throttle, and our sessions.

For each configured provider `{name}`:

- `GET /auth/{name}/authorize` and `GET /auth/{name}/callback`: signs in through the bearer
  backend; the callback answers the token response of `/auth/jwt/login` (with a refresh
  token);
- `GET /auth/{name}/cookie/authorize` and `.../cookie/callback`: the same through the cookie
  backend (204 and the session cookie). A sign-in started on one finishes only on its own
  callback: the state names its flow;
- `GET /auth/associate/{name}/authorize` and `.../callback`: links the provider's identity
  to the signed-in user (FastAPI Users' associate router);

and `GET /users/me/oauth-accounts`, `DELETE /users/me/oauth-accounts/{id}`.

`authorize` answers `{"authorization_url": ...}` and sets the CSRF cookie (FastAPI Users'
name, HttpOnly, our session cookie's `Secure` and domain, path `/auth`, SameSite `lax` unless
the session cookie's is `none`: a `strict` cookie would not come back with the provider's
redirect). The provider sends the browser to the callback's URL (`redirect_uri`), the one to
register at the provider. A callback that succeeds deletes the CSRF cookie.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi_users import exceptions
from fastapi_users.authentication import AuthenticationBackend, Strategy
from fastapi_users.router.common import ErrorCode, ErrorModel
from fastapi_users.router.oauth import CSRF_TOKEN_COOKIE_NAME, OAuth2AuthorizeResponse
from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.auth_routes import IssuedTokens, token_response
from roster_auth.backends import RequiredClaimsJWTStrategy
from roster_auth.config import AuthConfig
from roster_auth.dependencies import UserDependency, UserManagerDependency
from roster_auth.errors import OAUTH_PROVIDER_UNAVAILABLE, UNAUTHORIZED_RESPONSES, bad_request
from roster_auth.manager import IdentityLinkedElsewhere, SignUpClosed, UserManager
from roster_auth.models import OAuthAccount, User
from roster_auth.oauth import (
    OAUTH_AUTHORIZATION_DENIED,
    OAUTH_BAD_AUTHORIZATION_CODE,
    Flow,
    Identity,
    ProviderClient,
    denied,
    issue_state,
    new_csrf_token,
    pkce_verifier,
    read_state,
)
from roster_auth.password import has_usable_password
from roster_auth.schemas import OAuthAccountRead, TokenResponse, UserRead
from roster_auth.sessions import Origin, Sessions
from roster_auth.throttle import Throttle
from roster_db import SessionDep
from roster_db.audit import AuditAction, record_event

OAUTH_ACCOUNT_ALREADY_LINKED: Final = "OAUTH_ACCOUNT_ALREADY_LINKED"
OAUTH_SIGN_UP_DISABLED: Final = "OAUTH_SIGN_UP_DISABLED"
OAUTH_ACCOUNT_NOT_FOUND: Final = "OAUTH_ACCOUNT_NOT_FOUND"
OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD: Final = "OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD"
CSRF_COOKIE_PATH: Final = "/auth"
# What a provider sends back: an authorization code, the state, or an error (RFC 6749, 4.1.2).
CODE_MAX_LENGTH: Final = 2048
STATE_MAX_LENGTH: Final = 4096
ERROR_MAX_LENGTH: Final = 256

# FastAPI Users' mixin types the columns as plain values: the tables' columns are typed.
IDENTITIES: Final = cast(Table, OAuthAccount.__table__)
USERS: Final = cast(Table, User.__table__)

_CALLBACK_REFUSALS: Final = {
    ErrorCode.ACCESS_TOKEN_DECODE_ERROR: "The state is not one of ours (forged or altered).",
    ErrorCode.ACCESS_TOKEN_ALREADY_EXPIRED: "The state expired: start again at authorize.",
    ErrorCode.OAUTH_INVALID_STATE: "The state is another sign-in's, or the CSRF cookie is "
    "missing or another one.",
    OAUTH_AUTHORIZATION_DENIED: "The provider sent back an error (the user denied access).",
    OAUTH_BAD_AUTHORIZATION_CODE: "The provider refused the code (forged, used, expired).",
    ErrorCode.OAUTH_NOT_AVAILABLE_EMAIL: "The provider gave no usable email address.",
}
_SIGN_IN_REFUSALS: Final = {
    ErrorCode.OAUTH_USER_ALREADY_EXISTS: "An account has this address, and is not linked to "
    "this identity (linking by email is off, or the address is not verified on both sides).",
    ErrorCode.LOGIN_BAD_CREDENTIALS: "The account is inactive.",
    OAUTH_SIGN_UP_DISABLED: "No account is linked to this identity, and registration is off.",
}
_ASSOCIATE_REFUSALS: Final = {
    OAUTH_ACCOUNT_ALREADY_LINKED: "This identity is linked to another account.",
}


def _responses(refusals: dict[str, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status.HTTP_400_BAD_REQUEST: {
            "model": ErrorModel,
            "description": "Refused; `detail` (or `detail.code`) says why.",
            "content": {
                "application/json": {
                    "examples": {
                        code: {"summary": summary, "value": {"detail": code}}
                        for code, summary in refusals.items()
                    }
                }
            },
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": ErrorModel,
            "description": f"`{OAUTH_PROVIDER_UNAVAILABLE}`: the provider did not answer in "
            "time, or failed; try again after `Retry-After` seconds.",
        },
    }


def _throttled_responses(refusals: dict[str, str]) -> dict[int | str, dict[str, Any]]:
    return {
        **_responses(refusals),
        status.HTTP_429_TOO_MANY_REQUESTS: {
            "model": ErrorModel,
            "description": "`TOO_MANY_REQUESTS`: too many failed sign-ins from this client "
            "address; try again after `Retry-After` seconds.",
        },
    }


CodeParam = Annotated[str | None, Query(max_length=CODE_MAX_LENGTH)]
StateParam = Annotated[str | None, Query(max_length=STATE_MAX_LENGTH)]
ErrorParam = Annotated[str | None, Query(max_length=ERROR_MAX_LENGTH)]


class OAuthRoutes:
    """What every provider's routes share: the state key, the configuration, the sessions
    and the throttle."""

    def __init__(
        self,
        *,
        config: AuthConfig,
        state_key: str,
        sessions: Sessions,
        strategy: RequiredClaimsJWTStrategy,
        cookie_backend: AuthenticationBackend[User, uuid.UUID],
        get_user_manager: UserManagerDependency,
        current_active_user: UserDependency,
        throttle: Throttle,
    ) -> None:
        self.config = config
        self.state_key = state_key
        self.sessions = sessions
        self.strategy = strategy
        self.cookie_backend = cookie_backend
        self.get_user_manager = get_user_manager
        self.current_active_user = current_active_user
        self.throttle = throttle

    def router(self, providers: Sequence[ProviderClient]) -> APIRouter:
        """Every provider's routes, for the `/auth` router."""
        router = APIRouter()
        for provider in providers:
            router.include_router(self._sign_in_router(provider), prefix=f"/{provider.name}")
        for provider in providers:
            router.include_router(
                self._associate_router(provider), prefix=f"/associate/{provider.name}"
            )
        return router

    async def _authorize(
        self,
        request: Request,
        response: Response,
        provider: ProviderClient,
        flow: Flow,
        callback_name: str,
        user_id: uuid.UUID | None = None,
    ) -> OAuth2AuthorizeResponse:
        csrf_token = new_csrf_token()
        state = issue_state(
            self.state_key,
            self.config.oauth_state_lifetime_seconds,
            provider=provider.name,
            flow=flow,
            csrf_token=csrf_token,
            user_id=None if user_id is None else str(user_id),
        )
        url = await provider.authorization_url(
            str(request.url_for(callback_name)), state, pkce_verifier(self.state_key, csrf_token)
        )
        config = self.config
        response.set_cookie(
            CSRF_TOKEN_COOKIE_NAME,
            csrf_token,
            max_age=config.oauth_state_lifetime_seconds,
            path=CSRF_COOKIE_PATH,
            domain=config.cookie_domain,
            secure=config.cookie_secure,
            httponly=True,
            samesite="none" if config.cookie_samesite == "none" else "lax",
        )
        return OAuth2AuthorizeResponse(authorization_url=url)

    async def _identity(
        self,
        request: Request,
        provider: ProviderClient,
        flow: Flow,
        callback_name: str,
        code: str | None,
        state: str | None,
        error: str | None,
        user_id: uuid.UUID | None = None,
    ) -> Identity:
        """Who signed in at the provider, once the callback's state is proven ours and this
        browser's, and the code exchanged."""
        if error is not None:
            raise denied(error)
        csrf_token = read_state(
            self.state_key,
            state,
            request.cookies.get(CSRF_TOKEN_COOKIE_NAME),
            provider=provider.name,
            flow=flow,
            user_id=None if user_id is None else str(user_id),
        )
        if not code:
            raise bad_request(OAUTH_BAD_AUTHORIZATION_CODE)
        access_token = await provider.exchange(
            code, str(request.url_for(callback_name)), pkce_verifier(self.state_key, csrf_token)
        )
        return await provider.identity(access_token)

    @asynccontextmanager
    async def _throttled(self, request: Request) -> AsyncIterator[None]:
        """A callback: refused while its address is over the failed-login limit; a refusal
        of its own (400) counts as a failed login of the address."""
        attempt = await self.throttle.check_sign_in(request)
        try:
            yield
        except HTTPException as error:
            if error.status_code == status.HTTP_400_BAD_REQUEST:
                await attempt.failed()
            raise

    async def _signed_in_user(
        self,
        request: Request,
        provider: ProviderClient,
        user_manager: UserManager,
        flow: Flow,
        callback_name: str,
        code: str | None,
        state: str | None,
        error: str | None,
    ) -> User:
        async with self._throttled(request):
            identity = await self._identity(
                request, provider, flow, callback_name, code, state, error
            )
            try:
                user = await user_manager.oauth_sign_in(provider.name, identity, request)
            except exceptions.UserAlreadyExists as refusal:
                raise bad_request(ErrorCode.OAUTH_USER_ALREADY_EXISTS) from refusal
            except exceptions.UserInactive as refusal:
                raise bad_request(ErrorCode.LOGIN_BAD_CREDENTIALS) from refusal
            except SignUpClosed as refusal:
                raise bad_request(OAUTH_SIGN_UP_DISABLED) from refusal
            if not user.is_active:
                raise bad_request(ErrorCode.LOGIN_BAD_CREDENTIALS)
        return user

    def _authorize_endpoint(
        self, provider: ProviderClient, flow: Flow, callback_name: str
    ) -> Callable[[Request, Response], Awaitable[OAuth2AuthorizeResponse]]:
        async def authorize(request: Request, response: Response) -> OAuth2AuthorizeResponse:
            return await self._authorize(request, response, provider, flow, callback_name)

        return authorize

    def _sign_in_router(self, provider: ProviderClient) -> APIRouter:
        router = APIRouter()
        name = provider.name
        jwt_callback = f"oauth:{name}.jwt.callback"
        cookie_callback = f"oauth:{name}.cookie.callback"
        cookie_backend = self.cookie_backend

        # One authorize route per backend: the state names the flow, which only its own
        # callback accepts.
        flows: tuple[tuple[str, Flow, str, str], ...] = (
            ("", "jwt", jwt_callback, "bearer tokens"),
            ("/cookie", "cookie", cookie_callback, "session cookie"),
        )
        for prefix, flow, callback_name, answer in flows:
            router.add_api_route(
                f"{prefix}/authorize",
                self._authorize_endpoint(provider, flow, callback_name),
                methods=["GET"],
                name=f"oauth:{name}.{flow}.authorize",
                response_model=OAuth2AuthorizeResponse,
                responses=_responses({}),
                summary=f"Sign in with {name} ({answer})",
                description=f"The provider's authorization URL to send the user to; sets the "
                f"CSRF cookie. The provider sends the user back to `{prefix}/callback`, which "
                f"answers with the {answer}.",
            )

        @router.get(
            "/callback",
            name=jwt_callback,
            response_model=TokenResponse,
            responses=_throttled_responses({**_CALLBACK_REFUSALS, **_SIGN_IN_REFUSALS}),
            summary=f"Finish signing in with {name} (bearer tokens)",
        )
        async def callback(
            request: Request,
            session: SessionDep,
            user_manager: Annotated[UserManager, Depends(self.get_user_manager)],
            code: CodeParam = None,
            state: StateParam = None,
            error: ErrorParam = None,
        ) -> Response:
            """Where the provider sends the user back: an access token and a refresh token
            (a new session), as `/auth/jwt/login` answers. The first sign-in of an identity
            creates its account (see the refusals)."""
            user = await self._signed_in_user(
                request, provider, user_manager, "jwt", jwt_callback, code, state, error
            )
            family_id, refresh_token = await self.sessions.start_family(
                session, user.id, Origin.of(request)
            )
            response = token_response(
                self.strategy, IssuedTokens(user.id, family_id, refresh_token)
            )
            self._forget_csrf_cookie(response)
            await user_manager.on_after_login(user, request, response)
            return response

        @router.get(
            "/cookie/callback",
            name=cookie_callback,
            status_code=status.HTTP_204_NO_CONTENT,
            response_model=None,
            responses={
                **_throttled_responses({**_CALLBACK_REFUSALS, **_SIGN_IN_REFUSALS}),
                **cookie_backend.transport.get_openapi_login_responses_success(),
            },
            summary=f"Finish signing in with {name} (session cookie)",
        )
        async def cookie_callback_route(
            request: Request,
            user_manager: Annotated[UserManager, Depends(self.get_user_manager)],
            strategy: Annotated[Strategy[User, uuid.UUID], Depends(cookie_backend.get_strategy)],
            code: CodeParam = None,
            state: StateParam = None,
            error: ErrorParam = None,
        ) -> Response:
            """Where the provider sends the user back: the session cookie, as
            `/auth/cookie/login` sets it."""
            user = await self._signed_in_user(
                request, provider, user_manager, "cookie", cookie_callback, code, state, error
            )
            response = await cookie_backend.login(strategy, user)
            self._forget_csrf_cookie(response)
            await user_manager.on_after_login(user, request, response)
            return response

        return router

    def _associate_router(self, provider: ProviderClient) -> APIRouter:
        router = APIRouter()
        name = provider.name
        callback_name = f"oauth-associate:{name}.callback"
        current_active_user = self.current_active_user

        @router.get(
            "/authorize",
            name=f"oauth-associate:{name}.authorize",
            response_model=OAuth2AuthorizeResponse,
            responses={**UNAUTHORIZED_RESPONSES, **_responses({})},
            summary=f"Link a {name} identity to the signed-in user",
        )
        async def authorize(
            request: Request,
            response: Response,
            user: Annotated[User, Depends(current_active_user)],
        ) -> OAuth2AuthorizeResponse:
            """The provider's authorization URL; its callback links the identity to this
            user (the state names them)."""
            return await self._authorize(
                request, response, provider, "associate", callback_name, user.id
            )

        @router.get(
            "/callback",
            name=callback_name,
            response_model=UserRead,
            responses={
                **UNAUTHORIZED_RESPONSES,
                **_throttled_responses({**_CALLBACK_REFUSALS, **_ASSOCIATE_REFUSALS}),
            },
            summary=f"Finish linking a {name} identity",
        )
        async def callback(
            request: Request,
            user: Annotated[User, Depends(current_active_user)],
            user_manager: Annotated[UserManager, Depends(self.get_user_manager)],
            code: CodeParam = None,
            state: StateParam = None,
            error: ErrorParam = None,
        ) -> Response:
            """Link the identity the provider vouches for to the signed-in user, who must be
            the one that asked for the authorization URL."""
            async with self._throttled(request):
                identity = await self._identity(
                    request, provider, "associate", callback_name, code, state, error, user.id
                )
                try:
                    await user_manager.oauth_link(user, provider.name, identity)
                except IdentityLinkedElsewhere as refusal:
                    raise bad_request(OAUTH_ACCOUNT_ALREADY_LINKED) from refusal
            response = Response(
                UserRead.model_validate(user).model_dump_json(), media_type="application/json"
            )
            self._forget_csrf_cookie(response)
            return response

        return router

    def _forget_csrf_cookie(self, response: Response) -> None:
        # One sign-in per CSRF token in this browser. A replay that keeps the cookie reaches
        # the provider, which refuses the used code (and PKCE binds the code to the cookie).
        response.delete_cookie(
            CSRF_TOKEN_COOKIE_NAME,
            path=CSRF_COOKIE_PATH,
            domain=self.config.cookie_domain,
            secure=self.config.cookie_secure,
            httponly=True,
        )


async def unlink_identity(session: AsyncSession, user_id: uuid.UUID, link_id: uuid.UUID) -> None:
    """Unlink one of the user's identities, unless it is their only way to sign in (no
    usable password, no other identity): 404 `OAUTH_ACCOUNT_NOT_FOUND` (also for another
    user's), 409 `OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD`. The user's row is locked first, so two
    concurrent unlinks of their last two identities cannot both pass the check."""
    hashed_password = await session.scalar(
        select(USERS.c.hashed_password).where(USERS.c.id == user_id).with_for_update()
    )
    rows = (
        await session.execute(
            select(IDENTITIES.c.id, IDENTITIES.c.oauth_name).where(IDENTITIES.c.user_id == user_id)
        )
    ).all()
    provider = next((name for account_id, name in rows if account_id == link_id), None)
    if hashed_password is None or provider is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=OAUTH_ACCOUNT_NOT_FOUND)
    if len(rows) == 1 and not has_usable_password(hashed_password):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD)
    await session.execute(delete(IDENTITIES).where(IDENTITIES.c.id == link_id))
    await record_event(
        session,
        AuditAction.USER_OAUTH_UNLINKED,
        actor_id=user_id,
        subject_user_id=user_id,
        details={"provider": provider},
    )


def build_oauth_accounts_router(current_active_user: UserDependency) -> APIRouter:
    """`GET /me/oauth-accounts` and `DELETE /me/oauth-accounts/{id}`, for the `/users`
    router, before FastAPI Users' `/{id}` routes."""
    router = APIRouter(tags=["users"])
    ActiveUser = Annotated[User, Depends(current_active_user)]  # noqa: N806 - a type alias

    @router.get(
        "/me/oauth-accounts",
        response_model=list[OAuthAccountRead],
        name="users:oauth_accounts",
        responses=UNAUTHORIZED_RESPONSES,
    )
    async def list_identities(session: SessionDep, user: ActiveUser) -> list[OAuthAccountRead]:
        """The identities at providers that the signed-in user signs in with, oldest first."""
        rows = await session.execute(
            select(IDENTITIES)
            .where(IDENTITIES.c.user_id == user.id)
            .order_by(IDENTITIES.c.created_at, IDENTITIES.c.id)
        )
        return [OAuthAccountRead.model_validate(row) for row in rows]

    @router.delete(
        "/me/oauth-accounts/{link_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name="users:unlink_oauth_account",
        responses={
            **UNAUTHORIZED_RESPONSES,
            status.HTTP_404_NOT_FOUND: {
                "model": ErrorModel,
                "description": f"`{OAUTH_ACCOUNT_NOT_FOUND}`: no such identity of yours.",
            },
            status.HTTP_409_CONFLICT: {
                "model": ErrorModel,
                "description": f"`{OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD}`: it is your only way to "
                "sign in; set a password (forgot/reset) or link another identity first.",
            },
        },
    )
    async def unlink(link_id: uuid.UUID, session: SessionDep, user: ActiveUser) -> None:
        """Stop signing in with this identity."""
        await unlink_identity(session, user.id, link_id)

    return router


__all__ = [
    "OAUTH_ACCOUNT_ALREADY_LINKED",
    "OAUTH_ACCOUNT_NOT_FOUND",
    "OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD",
    "OAUTH_SIGN_UP_DISABLED",
    "OAuthRoutes",
    "build_oauth_accounts_router",
    "unlink_identity",
]
