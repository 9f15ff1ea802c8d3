"""A small application around `RosterAuth`, served through its ASGI interface, on the real
Postgres of `roster_db.testing`."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

import roster_auth.models  # noqa: F401  (the tables `database_url` creates)
from roster_auth import AuthConfig, OutboxMailer, RosterAuth, User
from roster_auth.testing import DEFAULT_PASSWORD, config_for_tests, create_user
from roster_db import SessionDep
from roster_db.testkit import asgi_client

pytest_plugins = ["roster_db.testing"]

BASE_URL = "https://roster.test"

Sessionmaker = async_sessionmaker[AsyncSession]
CreateUser = Callable[..., Awaitable[User]]
ServeApp = Callable[..., Any]


def build_app(auth: RosterAuth, sessionmaker: Sessionmaker) -> FastAPI:
    """The auth routers plus three routes of "another member", to show the dependencies work
    outside FastAPI Users' routers and that other routes still reach the database."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"sessionmaker": sessionmaker}

    app = FastAPI(lifespan=lifespan)
    for router in auth.routers():
        app.include_router(router)

    @app.get("/probe/me")
    async def probe_me(user: Annotated[User, Depends(auth.current_active_user)]) -> str:
        return str(user.id)

    @app.get("/probe/admin")
    async def probe_admin(user: Annotated[User, Depends(auth.current_superuser)]) -> str:
        return str(user.id)

    @app.get("/probe/db")
    async def probe_db(session: SessionDep) -> int:
        one: int = await session.scalar(text("SELECT 1"))
        return one

    return app


def serve(app: FastAPI) -> AbstractAsyncContextManager[AsyncClient]:
    return asgi_client(app, base_url=BASE_URL)


# The application of `client` is built once per test module, not once per test: building one
# (its routers, and each route's state on its first request) costs about a third of a second.
# Each test still gets a fresh start: its own rolled-back transaction (the app's session maker
# is bound to the test's connection) and an empty outbox. A module that changes the
# configuration overrides `auth_config` at module scope.


@pytest.fixture(scope="module")
def module_outbox() -> OutboxMailer:
    return OutboxMailer()


@pytest.fixture
def outbox(module_outbox: OutboxMailer) -> Iterator[OutboxMailer]:
    """The mails sent during the test (by `client`'s app, and by apps given this outbox)."""
    module_outbox.clear()
    yield module_outbox
    module_outbox.clear()


@pytest.fixture(scope="module")
def auth_config(module_outbox: OutboxMailer) -> AuthConfig:
    return config_for_tests(mailer=module_outbox)


@pytest.fixture(scope="module")
def auth(auth_config: AuthConfig) -> RosterAuth:
    return RosterAuth(auth_config)


@pytest.fixture(scope="module")
def module_sessionmaker() -> Sessionmaker:
    """The session maker of the module's app, bound to each test's connection in turn."""
    return async_sessionmaker(class_=AsyncSession)


@pytest.fixture(scope="module")
def app(auth: RosterAuth, module_sessionmaker: Sessionmaker) -> FastAPI:
    return build_app(auth, module_sessionmaker)


@pytest_asyncio.fixture
async def client(
    app: FastAPI,
    module_sessionmaker: Sessionmaker,
    db_sessionmaker: Sessionmaker,
    outbox: OutboxMailer,
) -> AsyncIterator[AsyncClient]:
    """A client of the module's app, on the test's rolled-back transaction."""
    module_sessionmaker.configure(**db_sessionmaker.kw)
    async with serve(app) as client:
        yield client


@pytest.fixture
def serve_with(db_sessionmaker: Sessionmaker) -> Callable[..., Any]:
    """`async with serve_with(config) as client:` an app on another configuration."""

    def start(config: AuthConfig, sessionmaker: Sessionmaker | None = None) -> Any:
        return serve(build_app(RosterAuth(config), sessionmaker or db_sessionmaker))

    return start


@pytest.fixture
def make_user(db_sessionmaker: Sessionmaker) -> CreateUser:
    """Insert a user directly (see `roster_auth.testing.create_user`)."""

    async def make(**fields: Any) -> User:
        async with db_sessionmaker() as session:
            return await create_user(session, **fields)

    return make


Login = Callable[..., Awaitable[str]]


@pytest.fixture
def jwt_login(client: AsyncClient) -> Login:
    """`await jwt_login(email, password=DEFAULT_PASSWORD)`: a bearer token."""

    async def login(email: str, password: str = DEFAULT_PASSWORD) -> str:
        response = await client.post(
            "/auth/jwt/login", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    return login


@pytest.fixture
def cookie_login(client: AsyncClient) -> Login:
    """`await cookie_login(email, password=DEFAULT_PASSWORD)`: logs in on the cookie backend
    (the client keeps the cookie) and returns the cookie's value."""

    async def login(email: str, password: str = DEFAULT_PASSWORD) -> str:
        response = await client.post(
            "/auth/cookie/login", data={"username": email, "password": password}
        )
        assert response.status_code == 204, response.text
        token = response.cookies.get("roster_auth")
        assert token
        return token

    return login
