"""The composed application over HTTP (ASGI): health, the error answers the service adds
(503, 413, 500, 404, 422), CORS, and the published OpenAPI schema."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api import migrations
from roster_api.app import create_app, create_app_from_environment
from roster_auth import RosterAuth, User
from roster_auth.testing import DEFAULT_PASSWORD, config_for_tests
from roster_db.testing import CreateDatabase

from .conftest import MIGRATIONS_DIR, UNREACHABLE_DATABASE_URL, make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]


def app_on(database_url: str, **settings: object) -> FastAPI:
    return create_app(
        make_settings(database_url=database_url, **settings), auth_config=config_for_tests()
    )


def app_with(sessionmaker: Sessionmaker, **settings: object) -> FastAPI:
    return create_app(
        make_settings(**settings), sessionmaker=sessionmaker, auth_config=config_for_tests()
    )


# The apps of most tests here differ only in their session maker: they share one per module
# (building one, routes and schema, costs about a third of a second), its session maker
# bound to each test's connection in turn, so each test keeps its own rolled-back transaction.
@pytest.fixture(scope="module")
def module_sessionmaker() -> Sessionmaker:
    return async_sessionmaker(class_=AsyncSession)


@pytest.fixture(scope="module")
def module_app(module_sessionmaker: Sessionmaker) -> FastAPI:
    return app_with(module_sessionmaker)


@pytest.fixture
def app(
    module_app: FastAPI, module_sessionmaker: Sessionmaker, db_sessionmaker: Sessionmaker
) -> FastAPI:
    """An app with the default settings, on the test's connection."""
    module_sessionmaker.configure(**db_sessionmaker.kw)
    return module_app


@pytest.fixture(scope="module")
def unreachable_app() -> FastAPI:
    """An app with the default settings on a database that refuses every connection."""
    return app_on(UNREACHABLE_DATABASE_URL)


async def count_users(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(User))) or 0


# --- the served factory ---------------------------------------------------------------------


def test_the_served_factory_leaves_startup_objects_out_of_garbage_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("ROSTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROSTER_ENVIRONMENT", "development")
    monkeypatch.setenv("ROSTER_DATABASE_URL", UNREACHABLE_DATABASE_URL)
    monkeypatch.setenv("ROSTER_MIGRATIONS_DIR", str(MIGRATIONS_DIR))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    gc.unfreeze()
    try:
        app = create_app_from_environment()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert isinstance(app, FastAPI)
    # The app's routes and their validators at least: thousands of objects.
    assert frozen > len(app.routes) * 100


# --- health ---------------------------------------------------------------------------------


async def test_live_answers_without_a_database(unreachable_app: FastAPI) -> None:
    async with serve(unreachable_app) as client:
        response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_ready_on_a_migrated_database_names_the_revision(
    migrated_database_url: str, migrations_dir: Path
) -> None:
    async with serve(app_on(migrated_database_url)) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "revision": migrations.head_revision(migrations_dir),
    }


async def test_ready_on_a_database_never_migrated_says_so(create_database: CreateDatabase) -> None:
    async with serve(app_on(await create_database())) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail["code"] == "DATABASE_NOT_MIGRATED"
    assert "never been migrated" in detail["reason"]


async def test_ready_on_a_database_behind_the_code_names_both_revisions(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    url = await create_database()
    first = migrations.history(migrations_dir)[-1].revision
    await migrations.upgrade(url, migrations_dir, first)
    async with serve(app_on(url)) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503
    reason = response.json()["detail"]["reason"]
    assert f"is at {first}" in reason
    assert migrations.head_revision(migrations_dir) in reason


# --- the database away ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health/ready", None),
        ("POST", "/auth/register", {"email": "a@example.com", "password": DEFAULT_PASSWORD}),
        ("GET", "/users/me", None),
    ],
)
async def test_an_unreachable_database_gives_503_with_retry_after(
    unreachable_app: FastAPI, method: str, path: str, body: object
) -> None:
    async with serve(unreachable_app) as client:
        # A well-formed token, so /users/me reaches the database to find the user.
        token = await create_app_token()
        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 503
    assert response.json() == {"detail": "DATABASE_UNAVAILABLE"}
    assert int(response.headers["Retry-After"]) > 0


async def create_app_token() -> str:
    """A valid JWT for a user that does not exist (signature and claims as the app expects)."""
    auth = RosterAuth(config_for_tests())
    return await auth.access_token(User(id=uuid.uuid4(), email="ghost@example.com"))


async def test_login_against_an_unreachable_database_is_503_not_500(
    unreachable_app: FastAPI,
) -> None:
    async with serve(unreachable_app) as client:
        response = await client.post(
            "/auth/jwt/login", data={"username": "a@example.com", "password": DEFAULT_PASSWORD}
        )
    assert response.status_code == 503
    assert response.json() == {"detail": "DATABASE_UNAVAILABLE"}


# --- body size ------------------------------------------------------------------------------


async def test_a_body_within_the_limit_is_served(db_sessionmaker: Sessionmaker) -> None:
    async with serve(app_with(db_sessionmaker, max_body_size=1024)) as client:
        response = await client.post(
            "/auth/register", json={"email": "fits@example.com", "password": DEFAULT_PASSWORD}
        )
    assert response.status_code == 201, response.text
    assert await count_users(db_sessionmaker) == 1


async def test_a_declared_oversized_body_is_refused_before_reading(
    db_sessionmaker: Sessionmaker,
) -> None:
    body = {"email": "big@example.com", "password": DEFAULT_PASSWORD, "display_name": "x" * 2000}
    async with serve(app_with(db_sessionmaker, max_body_size=1024)) as client:
        response = await client.post("/auth/register", json=body)
    assert response.status_code == 413
    assert response.json() == {"detail": "REQUEST_BODY_TOO_LARGE"}
    assert await count_users(db_sessionmaker) == 0


async def test_a_chunked_body_growing_past_the_limit_is_refused(
    db_sessionmaker: Sessionmaker,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "chunked@example.com", "password": "' + DEFAULT_PASSWORD.encode()
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    async with serve(app_with(db_sessionmaker, max_body_size=1024)) as client:
        response = await client.post(
            "/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "REQUEST_BODY_TOO_LARGE"}
    assert await count_users(db_sessionmaker) == 0


async def test_an_oversized_form_login_is_refused(db_sessionmaker: Sessionmaker) -> None:
    async with serve(app_with(db_sessionmaker, max_body_size=256)) as client:
        response = await client.post(
            "/auth/jwt/login", data={"username": "a@example.com", "password": "p" * 500}
        )
    assert response.status_code == 413
    assert response.json() == {"detail": "REQUEST_BODY_TOO_LARGE"}


# --- one error shape ------------------------------------------------------------------------


async def test_unknown_routes_keep_fastapis_404(app: FastAPI) -> None:
    async with serve(app) as client:
        response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_validation_errors_are_422_with_a_detail_list(app: FastAPI) -> None:
    async with serve(app) as client:
        response = await client.post("/auth/register", json={"email": "not an email"})
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert ("body", "email") in fields
    assert ("body", "password") in fields


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/auth/register",
            '{"email": "a@example.com", "password": "horse battery \\ud800 staple"}',
        ),
        (
            "/auth/register",
            '{"email": "a@example.com", "password": "x", "display_name": "\\udfff"}',
        ),
        ("/groups", '{"name": "team \\uD83D"}'),
    ],
)
async def test_a_lone_surrogate_in_any_string_is_a_422_not_a_500(
    app: FastAPI, db_sessionmaker: Sessionmaker, path: str, body: str
) -> None:
    async with serve(app) as client:
        response = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert "surrogate" in response.json()["detail"][0]["msg"]
    assert await count_users(db_sessionmaker) == 0


@pytest.mark.parametrize(
    ("display_name", "message"),
    [
        # NUL is refused before the route, in any text (test_hostile_input.py).
        ("nul\u0000here", "NUL"),
        ("bell\u0007", "control characters"),
        ("line\nbreak", "control characters"),
    ],
)
async def test_control_characters_in_a_display_name_are_a_422_not_a_database_error(
    app: FastAPI, db_sessionmaker: Sessionmaker, display_name: str, message: str
) -> None:
    body = {
        "email": "control@example.com",
        "password": DEFAULT_PASSWORD,
        "display_name": display_name,
    }
    async with serve(app) as client:
        response = await client.post("/auth/register", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "display_name"]
    assert message in error["msg"]
    assert await count_users(db_sessionmaker) == 0


async def test_an_escaped_surrogate_pair_is_an_ordinary_character(app: FastAPI) -> None:
    body = '{"email": "pair@example.com", "password": "x", "display_name": "\\ud83d\\ude00"}'
    async with serve(app) as client:
        response = await client.post(
            "/auth/register", content=body, headers={"content-type": "application/json"}
        )
    # Refused for its weak password, which proves the body reached the route intact.
    assert response.status_code == 400
    assert response.json()["detail"]["code"] == "REGISTER_INVALID_PASSWORD"


async def test_a_deadlock_is_a_503_with_retry_after(
    db_sessionmaker: Sessionmaker, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_with(db_sessionmaker)

    @app.get("/deadlocked")
    async def deadlocked() -> None:
        # What Postgres raises on the side of a deadlock it aborts.
        async with db_sessionmaker() as session:
            connection = await session.connection()
            await connection.execute(
                text(
                    "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' "
                    "USING ERRCODE = 'deadlock_detected'; END $$"
                )
            )

    with caplog.at_level(logging.WARNING, logger="roster_api"):
        async with serve(app) as client:
            response = await client.get("/deadlocked")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json() == {"detail": "DATABASE_UNAVAILABLE"}
    assert "transaction aborted by a concurrent one" in caplog.text


async def test_an_unexpected_error_is_a_logged_500_without_statement_parameters(
    db_sessionmaker: Sessionmaker, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_with(db_sessionmaker)

    @app.get("/broken")
    async def broken() -> None:
        async with db_sessionmaker() as session:
            # A NOT NULL violation whose parameters carry a value that must not reach logs.
            connection = await session.connection()
            await connection.execute(
                text('INSERT INTO "user" (id, email, hashed_password) VALUES (:id, :email, :h)'),
                {"id": None, "email": "x@example.com", "h": "argon2-hash-that-must-stay-secret"},
            )

    with caplog.at_level(logging.ERROR, logger="roster_api"):
        async with serve(app) as client:
            response = await client.get("/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "INTERNAL_SERVER_ERROR"}
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.__dict__["error"] == "IntegrityError"
    assert record.__dict__["sqlstate"] == "23502"
    assert "in broken" in record.__dict__["traceback"]
    assert "argon2-hash-that-must-stay-secret" not in caplog.text
    assert "argon2-hash-that-must-stay-secret" not in str(record.__dict__)


# --- CORS -----------------------------------------------------------------------------------


async def test_cors_allows_configured_origins_only() -> None:
    app = app_on(UNREACHABLE_DATABASE_URL, cors_origins=["https://app.example"])
    async with serve(app) as client:
        preflight = await client.options(
            "/auth/jwt/login",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        stranger = await client.options(
            "/auth/jwt/login",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        # Error answers carry the header too, so a browser client can read them.
        unavailable = await client.get("/health/ready", headers={"Origin": "https://app.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in stranger.headers
    assert unavailable.status_code == 503
    assert unavailable.headers["access-control-allow-origin"] == "https://app.example"


# --- OpenAPI --------------------------------------------------------------------------------


def operations(schema: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    paths = schema["paths"]
    assert isinstance(paths, dict)
    return [
        (path, method, operation)
        for path, item in paths.items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_openapi_publishes_the_errors_each_route_returns(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["info"]["title"] == "roster"
    assert schema["info"]["version"]
    assert {tag["name"] for tag in schema["tags"]} >= {"auth", "users", "groups", "health"}
    assert "ErrorBody" in schema["components"]["schemas"]
    found = operations(schema)
    assert {
        "/auth/jwt/login",
        "/auth/register",
        "/users/me",
        "/groups",
        "/groups/{group_id}/members",
        "/user-groups/{group_id}/users",
        "/health/live",
        "/health/ready",
    } <= {path for path, _, _ in found}
    for path, method, operation in found:
        responses = operation["responses"]
        assert isinstance(responses, dict)
        where = f"{method.upper()} {path}"
        if path == "/health/live":
            assert "503" not in responses, where
        else:
            assert "503" in responses, where
        if "requestBody" in operation:
            assert {"413", "422"} <= set(responses), where
        if operation.get("security"):
            assert "401" in responses, where


def test_openapi_of_the_login_route_keeps_fastapi_users_own_errors(app: FastAPI) -> None:
    schema = app.openapi()
    login = schema["paths"]["/auth/jwt/login"]["post"]["responses"]
    assert "400" in login  # LOGIN_BAD_CREDENTIALS, declared by FastAPI Users
