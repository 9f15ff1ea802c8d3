"""The facade: one object, built from an `AuthConfig`, that hands the application its routers
and the dependencies other members need (current active user, current superuser)."""

import uuid

from fastapi import APIRouter, BackgroundTasks
from fastapi_users import FastAPIUsers
from fastapi_users.password import PasswordHelper
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.backends import RequiredClaimsJWTStrategy, build_backends, jwt_strategy
from roster_auth.config import AuthConfig
from roster_auth.database import RosterUserDatabase
from roster_auth.dependencies import UserDependency
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.manager import UserManager
from roster_auth.models import User
from roster_auth.password import NormalizingPasswordHelper
from roster_auth.router import build_admin_router
from roster_auth.schemas import UserCreate, UserRead, UserUpdate
from roster_db import SessionDep


class RosterAuth:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.password_helper = NormalizingPasswordHelper(
            config.password_helper if config.password_helper is not None else PasswordHelper()
        )
        self.hashing_queue = PasswordHashingQueue(
            config.max_concurrent_password_hashes, config.max_waiting_password_hashes
        )
        self.jwt_strategy: RequiredClaimsJWTStrategy = jwt_strategy(config)

        # A plain function (not a generator), so that it may depend on the function-scoped
        # session, which commits before the response is sent.
        async def get_user_manager(
            session: SessionDep, background_tasks: BackgroundTasks
        ) -> UserManager:
            return self.user_manager(session, background_tasks)

        self.get_user_manager = get_user_manager
        self.jwt_backend, self.cookie_backend = build_backends(config)
        # The cookie backend is tried first: a logout at /auth/cookie/logout that also carries
        # a bearer token must still find, and revoke, the cookie's stored token.
        self.fastapi_users = FastAPIUsers[User, uuid.UUID](
            get_user_manager, [self.cookie_backend, self.jwt_backend]
        )
        self.current_active_user: UserDependency = self.fastapi_users.current_user(active=True)
        self.current_superuser: UserDependency = self.fastapi_users.current_user(
            active=True, superuser=True
        )

    def user_manager(
        self, session: AsyncSession, background_tasks: BackgroundTasks | None = None
    ) -> UserManager:
        """A user manager on `session`, for use outside a route (a command line, a seed
        script). Without `background_tasks`, mails are sent before each call returns."""
        return UserManager(
            RosterUserDatabase(session, User),
            self.password_helper,
            config=self.config,
            background_tasks=background_tasks,
            hashing_queue=self.hashing_queue,
        )

    async def access_token(self, user: User) -> str:
        """A bearer JWT for the user, as `/auth/jwt/login` would issue."""
        return await self.jwt_strategy.write_token(user)

    def routers(self) -> list[APIRouter]:
        """Every auth route, ready for `app.include_router`: `/auth/...` and `/users/...`."""
        users = self.fastapi_users
        auth_router = APIRouter(prefix="/auth", tags=["auth"])
        auth_router.include_router(users.get_auth_router(self.jwt_backend), prefix="/jwt")
        auth_router.include_router(users.get_auth_router(self.cookie_backend), prefix="/cookie")
        if self.config.registration_enabled:
            auth_router.include_router(users.get_register_router(UserRead, UserCreate))
        auth_router.include_router(users.get_reset_password_router())
        auth_router.include_router(users.get_verify_router(UserRead))
        users_router = build_admin_router(self.get_user_manager, self.current_superuser)
        users_router.include_router(users.get_users_router(UserRead, UserUpdate))
        return [auth_router, users_router]


__all__ = ["RosterAuth", "UserDependency"]
