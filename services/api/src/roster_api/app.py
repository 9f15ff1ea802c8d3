"""The application: composition only. The members bring the routes; this module wires them to
the settings, the database, the error answers, CORS and the logs."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib.metadata import version
from typing import Any, Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.database import display_url
from roster_api.errors import install_error_handlers
from roster_api.health import create_health_router
from roster_api.logging import configure_logging
from roster_api.middleware import (
    AccessLogMiddleware,
    ErrorResponseMiddleware,
    RequestInputMiddleware,
)
from roster_api.migrations import head_revision
from roster_api.openapi import install_openapi
from roster_api.routing import flatten_routes
from roster_api.settings import SECRET_FIELDS, Settings, load_settings, variable_name
from roster_auth import (
    AuthConfig,
    LoggingMailer,
    Mailer,
    PasswordTrafficGuard,
    RosterAuth,
    SmtpMailer,
    ThrottleConfig,
)
from roster_db import EngineReader, create_engine, create_sessionmaker, transactional
from roster_db.dependencies import READER_STATE, SESSIONMAKER_STATE
from roster_groups import InvitationConfig, include_with_groups

logger = logging.getLogger(__name__)

TITLE: Final = "roster"
DESCRIPTION: Final = (
    "Accounts (FastAPI Users) and groups with memberships (SQLModel) on one Postgres. "
    "Log in at `/auth/jwt/login` and send the token as `Authorization: Bearer <token>`."
)
TAGS: Final = [
    {
        "name": "auth",
        "description": "Log in and out (bearer JWT or cookie), register, "
        "verify an email address, reset a forgotten password.",
    },
    {"name": "users", "description": "Your own account, and every account for superusers."},
    {"name": "groups", "description": "Groups, their members and the members' roles."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def build_mailer(settings: Settings) -> Mailer:
    """SMTP when configured; otherwise development logs whole mails (links included) and
    production logs only that a mail was due."""
    if settings.smtp_host is not None:
        return SmtpMailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value()
                if settings.smtp_password is not None
                else None
            ),
            security=settings.smtp_security,
        )
    return LoggingMailer(reveal_content=not settings.is_production)


def build_auth_config(settings: Settings) -> AuthConfig:
    """Each AuthConfig field that has a setting of the same name takes it, the secrets with
    their marked development values where they are unset; the mailer, the environment, the
    throttle and the identity providers (from their `oidc_*`, `github_*`, `google_*` settings)
    are built here, and the other fields keep roster-auth's defaults."""
    settings_fields = Settings.model_fields
    same_named = {
        field.name: getattr(settings, field.name)
        for field in fields(AuthConfig)
        if field.name in settings_fields
    }
    return AuthConfig(
        **(same_named | {name: settings.secret(name) for name in SECRET_FIELDS}),
        mailer=build_mailer(settings),
        development=not settings.is_production,
        throttle=build_throttle_config(settings),
        oauth_providers=settings.oauth_providers(),
    )


def build_throttle_config(settings: Settings) -> ThrottleConfig:
    """Each limit from its setting `throttle_<field>`; the fields without a setting (the purge
    interval, the clock) keep roster-auth's defaults."""
    settings_fields = Settings.model_fields
    return ThrottleConfig(
        **{
            field.name: getattr(settings, setting)
            for field in fields(ThrottleConfig)
            if (setting := f"throttle_{field.name}") in settings_fields
        }
    )


def build_invitation_config(settings: Settings, auth_config: AuthConfig) -> InvitationConfig:
    """Invitations leave through the same mailer, with links on the same public URL, as
    roster-auth's mails."""
    return InvitationConfig(
        mailer=auth_config.mailer,
        public_base_url=auth_config.public_base_url,
        accept_path=settings.invitation_accept_path,
        lifetime_seconds=settings.invitation_lifetime_seconds,
        product_name=auth_config.product_name,
    )


def create_app(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    auth_config: AuthConfig | None = None,
) -> FastAPI:
    """The roster API. Nothing connects here: the lifespan builds the engine and session maker
    (or uses `sessionmaker` when given, as tests do) and disposes of them on shutdown."""
    database_url = settings.database_url_value()
    if sessionmaker is None and database_url is None:
        raise RuntimeError(
            f"{variable_name('database_url')} is not set (`roster serve` starts an embedded "
            "Postgres when it is not)"
        )
    expected_revision = head_revision(settings.resolved_migrations_dir())
    auth = RosterAuth(auth_config if auth_config is not None else build_auth_config(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        for variable in settings.uses_development_secrets():
            logger.warning("%s is not set: using its marked development value", variable)
        if sessionmaker is not None:
            yield {SESSIONMAKER_STATE: sessionmaker}
            return
        assert database_url is not None

        def service_engine(*, pool_size: int, generic_plans: bool = False) -> AsyncEngine:
            return create_engine(
                database_url,
                pool_size=pool_size,
                max_overflow=settings.database_max_overflow,
                pool_timeout=settings.database_pool_timeout_seconds,
                pool_pre_ping=settings.database_pool_pre_ping,
                pool_recycle_seconds=settings.database_pool_recycle_seconds,
                connect_timeout=settings.database_connect_timeout_seconds,
                statement_timeout_seconds=settings.database_statement_timeout_seconds,
                lock_timeout_seconds=settings.database_lock_timeout_seconds,
                idle_in_transaction_session_timeout_seconds=(
                    settings.database_idle_in_transaction_timeout_seconds
                ),
                # Its connections come in AUTOCOMMIT mode, for the reader; sessions ask for
                # transactions (`transactional`).
                autocommit=True,
                generic_plans=generic_plans,
            )

        engine = service_engine(pool_size=settings.database_pool_size)
        generic_plan_engine = service_engine(
            pool_size=settings.database_generic_plan_pool_size, generic_plans=True
        )
        logger.info(
            "roster API starting",
            extra={
                "environment": settings.environment.value,
                "database": display_url(database_url),
                "migration_head": expected_revision,
            },
        )
        try:
            yield {
                SESSIONMAKER_STATE: create_sessionmaker(transactional(engine)),
                # Single-statement reads (the current user, the listings) without BEGIN and
                # COMMIT: on the same pool, or on the generic plans' one for the statements
                # that ask for it.
                READER_STATE: EngineReader(engine, generic_plan_engine),
            }
        finally:
            await generic_plan_engine.dispose()
            await engine.dispose()

    app = FastAPI(
        title=TITLE,
        version=version("roster-api"),
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    include_with_groups(app, auth, invitation_config=build_invitation_config(settings, auth.config))
    app.include_router(create_health_router(expected_revision))
    flatten_routes(app)
    app.state.auth = auth

    install_error_handlers(app)

    # Innermost first: input is bounded and checked next to the routes, password traffic is
    # guarded above that (under a flood, logins are refused before their body is read),
    # errors become JSON above them, CORS headers reach error answers too, and the access
    # log sees the final status.
    app.add_middleware(RequestInputMiddleware, max_body_size=settings.max_body_size)
    app.add_middleware(PasswordTrafficGuard, auth=auth)
    app.add_middleware(ErrorResponseMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # The cookie backend needs credentials; CORS forbids them with a wildcard origin.
            allow_credentials="*" not in settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(AccessLogMiddleware)
    install_openapi(app)
    return app


def create_app_from_environment() -> FastAPI:
    """The factory `roster serve` hands to uvicorn (`roster_api.app:create_app_from_environment`
    with `factory=True`): every worker process reads the settings and configures its logs."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.resolved_log_format)
    app = create_app(settings)
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Leave what startup built (modules, models, routes, their validators: most of the heap)
    out of every later garbage collection. A full collection walks every tracked object (about
    40 ms on this heap), and those pauses were most of what set roster's p99 on the hot reads
    above the stack ceiling's (bench/NOTES.md). The garbage is collected first: none is kept."""
    gc.collect()
    gc.freeze()


__all__ = [
    "build_auth_config",
    "build_invitation_config",
    "build_mailer",
    "build_throttle_config",
    "create_app",
    "create_app_from_environment",
]
