"""The facade: one object, built from an `AuthConfig`, that hands the application its routers
and the dependencies other members need (current active user, current superuser)."""

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi_users import FastAPIUsers
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    CookieTransport,
    JWTStrategy,
)
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyAccessTokenDatabase

from roster_auth.config import AuthConfig
from roster_auth.manager import UserManager
from roster_auth.models import AccessToken, User
from roster_auth.schemas import UserCreate, UserRead, UserUpdate
from roster_db import SessionDep

UserDependency = Callable[..., Coroutine[Any, Any, User]]


class RosterAuth:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config

        # Plain functions (not generators) so that they may depend on the function-scoped
        # session, which commits before the response is sent.
        async def get_user_manager(session: SessionDep) -> UserManager:
            manager = UserManager(SQLAlchemyUserDatabase(session, User))
            manager.reset_password_token_secret = config.reset_password_secret
            manager.verification_token_secret = config.verify_secret
            return manager

        async def get_database_strategy(
            session: SessionDep,
        ) -> DatabaseStrategy[User, uuid.UUID, AccessToken]:
            return DatabaseStrategy(
                SQLAlchemyAccessTokenDatabase(session, AccessToken),
                lifetime_seconds=config.cookie_token_lifetime_seconds,
            )

        def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
            return JWTStrategy(
                secret=config.access_token_secret,
                lifetime_seconds=config.access_token_lifetime_seconds,
            )

        self.get_user_manager = get_user_manager
        self.jwt_backend = AuthenticationBackend(
            name="jwt",
            transport=BearerTransport(tokenUrl="auth/jwt/login"),
            get_strategy=get_jwt_strategy,
        )
        self.cookie_backend = AuthenticationBackend(
            name="cookie",
            transport=CookieTransport(
                cookie_name=config.cookie_name,
                cookie_max_age=config.cookie_token_lifetime_seconds,
                cookie_secure=config.cookie_secure,
                cookie_httponly=True,
                cookie_samesite=config.cookie_samesite,
            ),
            get_strategy=get_database_strategy,
        )
        self.fastapi_users = FastAPIUsers[User, uuid.UUID](
            get_user_manager, [self.jwt_backend, self.cookie_backend]
        )
        self.current_active_user: UserDependency = self.fastapi_users.current_user(active=True)
        self.current_superuser: UserDependency = self.fastapi_users.current_user(
            active=True, superuser=True
        )

    def routers(self) -> list[APIRouter]:
        """Every auth route, ready for `app.include_router`."""
        users = self.fastapi_users
        auth_router = APIRouter(prefix="/auth", tags=["auth"])
        auth_router.include_router(users.get_auth_router(self.jwt_backend), prefix="/jwt")
        auth_router.include_router(users.get_auth_router(self.cookie_backend), prefix="/cookie")
        if self.config.registration_enabled:
            auth_router.include_router(users.get_register_router(UserRead, UserCreate))
        auth_router.include_router(users.get_reset_password_router())
        auth_router.include_router(users.get_verify_router(UserRead))
        users_router = APIRouter(prefix="/users", tags=["users"])
        users_router.include_router(users.get_users_router(UserRead, UserUpdate))
        return [auth_router, users_router]


__all__ = ["RosterAuth", "UserDependency"]
