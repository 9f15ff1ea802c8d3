"""The facade: one object, built from an `AuthConfig`, that hands the application its routers
and the dependencies other members need (current active user, current superuser)."""

import uuid
from typing import Final

from fastapi import APIRouter, BackgroundTasks
from fastapi.routing import APIRoute
from fastapi_users import FastAPIUsers
from fastapi_users.password import PasswordHelper
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.audit_routes import build_events_router
from roster_auth.auth_routes import (
    build_bearer_router,
    build_login_router,
    build_register_router,
    build_reset_password_router,
    build_verify_router,
)
from roster_auth.backends import RequiredClaimsJWTStrategy, build_backends, jwt_strategy
from roster_auth.config import AuthConfig
from roster_auth.current import (
    CredentialsDependency,
    CredentialSources,
    credentials_dependency,
    current_user_dependency,
    current_user_row_dependency,
)
from roster_auth.database import RosterUserDatabase
from roster_auth.dependencies import UserDependency
from roster_auth.errors import retry_later_responses
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.manager import UserManager
from roster_auth.models import OAuthAccount, User
from roster_auth.oauth import ProviderClient, state_key
from roster_auth.oauth_routes import OAuthRoutes, build_oauth_accounts_router
from roster_auth.password import MAX_RAW_PASSWORD_LENGTH, NormalizingPasswordHelper
from roster_auth.router import USERS_PREFIX, build_admin_router, build_users_router
from roster_auth.session_routes import build_sessions_router, caller_session_dependency
from roster_auth.sessions import Sessions
from roster_auth.throttle import Throttle, subject_key
from roster_db import SessionDep

AUTH_PREFIX: Final = "/auth"
# Where each backend's login and logout are.
JWT_PREFIX: Final = "/jwt"
COOKIE_PREFIX: Final = "/cookie"
BACKEND_PREFIXES: Final = (JWT_PREFIX, COOKIE_PREFIX)


class RosterAuth:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.password_helper = NormalizingPasswordHelper(
            config.password_helper if config.password_helper is not None else PasswordHelper()
        )
        self.hashing_queue = PasswordHashingQueue(
            config.max_concurrent_password_hashes,
            config.max_waiting_password_hashes,
            config.password_hashing_niceness,
        )
        self.jwt_strategy: RequiredClaimsJWTStrategy = jwt_strategy(config)
        # Failed logins, registrations and mail requests, counted in Postgres.
        self.throttle = Throttle(config.throttle, subject_key(config.access_token_secret))
        # Cookie sessions and refresh-token families.
        self.sessions = Sessions(config)
        # Identity providers, each built (and, for OpenID Connect, discovered) when first used.
        self.oauth_providers = [
            ProviderClient(provider, config.oauth_timeout_seconds)
            for provider in config.oauth_providers
        ]

        # A plain function (not a generator), so that it may depend on the function-scoped
        # session, which commits before the response is sent.
        async def get_user_manager(
            session: SessionDep, background_tasks: BackgroundTasks
        ) -> UserManager:
            return self.user_manager(session, background_tasks)

        self.get_user_manager = get_user_manager
        self.jwt_backend, self.cookie_backend = build_backends(config, self.jwt_strategy)
        # The cookie backend is tried first: a logout at /auth/cookie/logout that also carries
        # a bearer token must still find, and revoke, the cookie's stored token.
        self.fastapi_users = FastAPIUsers[User, uuid.UUID](
            get_user_manager, [self.cookie_backend, self.jwt_backend]
        )
        # Ours, not FastAPI Users' (see roster_auth.current): no user manager, no session, one
        # statement. FastAPI Users' own (`fastapi_users.current_user`) remain on its routes
        # for single users (`/users/{id}`).
        sources = CredentialSources(
            jwt_strategy=self.jwt_strategy,
            bearer_scheme=self.jwt_backend.transport.scheme,
            cookie_scheme=self.cookie_backend.transport.scheme,
            cookie_lifetime_seconds=config.cookie_token_lifetime_seconds,
            touch_interval_seconds=config.session_touch_interval_seconds,
            clock=config.clock,
        )
        self.caller_session = caller_session_dependency(
            self.sessions, self.jwt_strategy, sources.cookie_scheme, sources.bearer_scheme
        )
        self.current_active_user: UserDependency = current_user_dependency(sources)
        self.current_superuser: UserDependency = current_user_dependency(sources, superuser=True)
        # For routes that read the caller's row in their own statement (roster_auth.CALLER).
        self.current_credentials: CredentialsDependency = credentials_dependency(sources)
        # For routes that only show the user: its row, without a `User` object.
        self.current_active_user_row = current_user_row_dependency(sources)

    def user_manager(
        self, session: AsyncSession, background_tasks: BackgroundTasks | None = None
    ) -> UserManager:
        """A user manager on `session`, for use outside a route (a command line, a seed
        script). Without `background_tasks`, mails are sent before each call returns."""
        return UserManager(
            RosterUserDatabase(session, User, OAuthAccount),
            self.password_helper,
            config=self.config,
            background_tasks=background_tasks,
            hashing_queue=self.hashing_queue,
            throttle=self.throttle,
        )

    async def access_token(self, user: User) -> str:
        """A bearer JWT for the user, as `/auth/jwt/login` would issue (without a session:
        no refresh token, no `sid`)."""
        return await self.jwt_strategy.write_token(user)

    def hashing_routes(self) -> frozenset[tuple[str, str]]:
        """The (method, path) of the routes that always hash a password: refused before
        routing when the hashing queue is full (`roster_auth.PasswordTrafficGuard`)."""
        routes = {("POST", f"{AUTH_PREFIX}{prefix}/login") for prefix in BACKEND_PREFIXES}
        routes.add(("POST", f"{AUTH_PREFIX}/reset-password"))
        if self.config.registration_enabled:
            routes.add(("POST", f"{AUTH_PREFIX}/register"))
        return frozenset(routes)

    def refusing_routes(self) -> frozenset[tuple[str, str]]:
        """The (method, path) of every route that may refuse password traffic (429 from a
        throttle, 503 from the hashing queue): the guard pauses their refusals."""
        callbacks = {
            ("GET", f"{AUTH_PREFIX}{path}/callback")
            for provider in self.oauth_providers
            for path in (
                f"/{provider.name}",
                f"/{provider.name}{COOKIE_PREFIX}",
                f"/associate/{provider.name}",
            )
        }
        return (
            self.hashing_routes()
            | callbacks
            | {
                ("POST", f"{AUTH_PREFIX}/forgot-password"),
                ("POST", f"{AUTH_PREFIX}/request-verify-token"),
                ("PATCH", f"{USERS_PREFIX}/me"),
            }
        )

    def routers(self) -> list[APIRouter]:
        """Every auth route, ready for `app.include_router`: `/auth/...`, `/users/...` and the
        superusers' audit trail, `/events`."""
        users = self.fastapi_users
        # As sent, before normalising: the bound every password field of ours has.
        password_max_length = MAX_RAW_PASSWORD_LENGTH
        auth_router = APIRouter(prefix=AUTH_PREFIX, tags=["auth"])
        bearer_router = build_bearer_router(
            strategy=self.jwt_strategy,
            sessions=self.sessions,
            bearer_scheme=self.jwt_backend.transport.scheme,
            get_user_manager=self.get_user_manager,
            throttle=self.throttle,
            hashing_queue=self.hashing_queue,
            password_max_length=password_max_length,
        )
        auth_router.include_router(bearer_router, prefix=JWT_PREFIX)
        cookie_router = build_login_router(
            self.cookie_backend,
            get_user_manager=self.get_user_manager,
            authenticator=users.authenticator,
            throttle=self.throttle,
            hashing_queue=self.hashing_queue,
            password_max_length=password_max_length,
        )
        auth_router.include_router(cookie_router, prefix=COOKIE_PREFIX)
        if self.config.registration_enabled:
            auth_router.include_router(
                build_register_router(
                    get_user_manager=self.get_user_manager,
                    throttle=self.throttle,
                    hashing_queue=self.hashing_queue,
                )
            )
        auth_router.include_router(
            build_reset_password_router(
                get_user_manager=self.get_user_manager,
                throttle=self.throttle,
                hashing_queue=self.hashing_queue,
                password_max_length=password_max_length,
            )
        )
        auth_router.include_router(
            build_verify_router(get_user_manager=self.get_user_manager, throttle=self.throttle)
        )
        if self.oauth_providers:
            oauth_routes = OAuthRoutes(
                config=self.config,
                state_key=state_key(self.config.access_token_secret),
                sessions=self.sessions,
                strategy=self.jwt_strategy,
                cookie_backend=self.cookie_backend,
                get_user_manager=self.get_user_manager,
                current_active_user=self.current_active_user,
                throttle=self.throttle,
            )
            auth_router.include_router(oauth_routes.router(self.oauth_providers))
        users_router = build_admin_router(self.get_user_manager, self.current_superuser)
        own_users_router = build_users_router(
            users, self.get_user_manager, self.current_active_user, self.current_active_user_row
        )
        _document_hashing(own_users_router, "users:patch_current_user", "users:patch_user")
        # Before `/users/{id}/...`: `/users/me/sessions` is not a user id's.
        users_router.include_router(
            build_sessions_router(
                self.sessions,
                self.caller_session,
                self.current_active_user,
                self.current_superuser,
            )
        )
        if self.oauth_providers:
            users_router.include_router(build_oauth_accounts_router(self.current_active_user))
        users_router.include_router(own_users_router)
        return [auth_router, users_router, build_events_router(self.current_credentials)]


def _document_hashing(router: APIRouter, *names: str) -> None:
    """Add the full hashing queue's 503 to the documented answers of a users router's routes
    that may hash (a new password), before the router is included."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.name in names:
            route.responses.update(retry_later_responses(hashes=True))


__all__ = ["RosterAuth"]
