"""A test application (RosterAuth + the groups router on the test's Postgres) and the people
who use it: an owner, an admin, a member, an outsider, a superuser, and anonymous."""

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

import roster_auth.models  # noqa: F401  (tables must exist before the plugin creates them)
import roster_groups.models  # noqa: F401
from roster_auth import OutboxMailer, RosterAuth, User
from roster_auth.testing import bearer_headers, config_for_tests, create_user
from roster_db.testkit import asgi_client
from roster_groups import InvitationConfig, include_with_groups
from roster_groups.models import GroupInvitation, GroupRole, Membership, UserGroup

pytest_plugins = ["roster_db.testing"]


class Clock:
    """The time invitations expire by: the real time, moved on by `advance`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


INVITATION_BASE_URL = "https://app.roster.test"
INVITATION_ACCEPT_PATH = "/join"


def invitation_config_for_tests(clock: Clock, outbox: OutboxMailer) -> InvitationConfig:
    return InvitationConfig(
        mailer=outbox,
        public_base_url=INVITATION_BASE_URL,
        accept_path=INVITATION_ACCEPT_PATH,
        product_name="Roster",
        clock=clock,
    )


def build_app(
    auth: RosterAuth,
    sessionmaker: async_sessionmaker[AsyncSession],
    invitation_config: InvitationConfig | None = None,
) -> FastAPI:
    """The application as roster-api composes it: auth routes, then the groups routes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        yield {"sessionmaker": sessionmaker}

    app = FastAPI(lifespan=lifespan)
    include_with_groups(app, auth, invitation_config=invitation_config)
    return app


def serve(app: FastAPI) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return asgi_client(app, base_url="http://roster.test")


@pytest.fixture(scope="session")
def auth() -> RosterAuth:
    return RosterAuth(config_for_tests())


class SwitchableSessionmaker:
    """Stands in for a session maker in the lifespan state of an application built once per
    test session (building one costs ~0.1 s): each test points it at its own session maker."""

    def __init__(self) -> None:
        self.target: async_sessionmaker[AsyncSession] | None = None

    def __call__(self) -> AsyncSession:
        assert self.target is not None, "no test is using the application"
        return self.target()


@pytest.fixture(scope="session")
def switchable_sessionmaker() -> SwitchableSessionmaker:
    return SwitchableSessionmaker()


@pytest.fixture(scope="session")
def session_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def session_outbox() -> OutboxMailer:
    return OutboxMailer()


@pytest.fixture
def clock(session_clock: Clock) -> Iterator[Clock]:
    """The invitations' clock, at the real time when the test starts."""
    session_clock.offset = timedelta(0)
    yield session_clock
    session_clock.offset = timedelta(0)


@pytest.fixture
def outbox(session_outbox: OutboxMailer) -> Iterator[OutboxMailer]:
    """The invitation mails the application sent during the test."""
    session_outbox.clear()
    yield session_outbox
    session_outbox.clear()


@pytest.fixture(scope="session")
def app(
    auth: RosterAuth,
    switchable_sessionmaker: SwitchableSessionmaker,
    session_clock: Clock,
    session_outbox: OutboxMailer,
) -> FastAPI:
    return build_app(
        auth,
        cast(async_sessionmaker[AsyncSession], switchable_sessionmaker),
        invitation_config_for_tests(session_clock, session_outbox),
    )


@pytest_asyncio.fixture
async def client(
    app: FastAPI,
    switchable_sessionmaker: SwitchableSessionmaker,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    outbox: OutboxMailer,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the application, on the test's rolled-back transaction (the invitations'
    clock reset and their outbox emptied)."""
    switchable_sessionmaker.target = db_sessionmaker
    try:
        async with serve(app) as client:
            yield client
    finally:
        switchable_sessionmaker.target = None


@pytest_asyncio.fixture
async def committing_client(
    app: FastAPI,
    switchable_sessionmaker: SwitchableSessionmaker,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    outbox: OutboxMailer,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the application whose sessions really commit, each on a connection of its
    own (for races; the tables are emptied after the test)."""
    switchable_sessionmaker.target = committing_sessionmaker
    try:
        async with serve(app) as client:
            yield client
    finally:
        switchable_sessionmaker.target = None


def unique_email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Person:
    user: User
    headers: dict[str, str]

    @property
    def id(self) -> uuid.UUID:
        return self.user.id


# The people of these tests sign in with minted tokens, never with a password.
UNUSABLE_PASSWORD_HASH = "!"


async def make_people(
    auth: RosterAuth,
    sessionmaker: async_sessionmaker[AsyncSession],
    *labels: str,
    superusers: Collection[str] = (),
    inactive: Collection[str] = (),
) -> dict[str, Person]:
    """Committed users, one per label, written in one transaction, with bearer headers (a JWT
    minted as /auth/jwt/login would issue it)."""
    async with sessionmaker() as session:
        users = {
            label: User(
                email=unique_email(label),
                hashed_password=UNUSABLE_PASSWORD_HASH,
                display_name=label.replace("_", " ").title(),
                is_superuser=label in superusers,
                is_active=label not in inactive,
                is_verified=True,
            )
            for label in labels
        }
        session.add_all(users.values())
        await session.commit()
    return {
        label: Person(user=user, headers=await bearer_headers(auth, user))
        for label, user in users.items()
    }


@pytest.fixture
def make_person(
    auth: RosterAuth, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> Callable[..., Awaitable[Person]]:
    """`await make_person("label", is_superuser=False)`: one user through roster-auth's own
    helper (a real password hash), with bearer headers."""

    async def make(label: str = "user", **attributes: Any) -> Person:
        async with db_sessionmaker() as session:
            user = await create_user(
                session, email=unique_email(label), display_name=label.title(), **attributes
            )
        return Person(user=user, headers=await bearer_headers(auth, user))

    return make


async def add_group(
    sessionmaker: async_sessionmaker[AsyncSession],
    name: str,
    members: Mapping[uuid.UUID, GroupRole],
) -> int:
    """A group with the given members, written directly (not through the API)."""
    async with sessionmaker() as session:
        group = UserGroup(name=name)
        session.add(group)
        await session.flush()
        assert group.id is not None
        session.add_all(
            Membership(group_id=group.id, user_id=user_id, role=role)
            for user_id, role in members.items()
        )
        await session.commit()
        return group.id


async def add_invitation(
    sessionmaker: async_sessionmaker[AsyncSession],
    group_id: int,
    email: str,
    role: GroupRole,
    token: str,
    expires_at: datetime | None = None,
) -> uuid.UUID:
    """A pending invitation written directly, with a known token; expires in a week (real
    time) unless told."""
    async with sessionmaker() as session:
        invitation = GroupInvitation(
            group_id=group_id,
            email=email,
            role=role,
            token_hash=hashlib.sha256(token.encode()).digest(),
            expires_at=expires_at or datetime.now(UTC) + timedelta(days=7),
        )
        session.add(invitation)
        await session.commit()
        return invitation.id


@dataclass
class World:
    """One group ("Crew") and everyone who may ask about it."""

    group_id: int
    owner: Person
    admin: Person
    member: Person
    outsider: Person
    superuser: Person
    # Targets for membership changes, so that no actor changes their own membership by accident.
    peer_admin: Person
    peer_member: Person
    newcomer: Person
    people: dict[str, Person] = field(default_factory=dict)

    def headers(self, actor: str) -> dict[str, str]:
        """The actor's Authorization header; none for "anonymous"."""
        return {} if actor == "anonymous" else getattr(self, actor).headers

    def person(self, actor: str) -> Person:
        person: Person = getattr(self, actor)
        return person


@pytest_asyncio.fixture
async def world(auth: RosterAuth, db_sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    people = await make_people(
        auth,
        db_sessionmaker,
        "owner",
        "admin",
        "member",
        "outsider",
        "superuser",
        "peer_admin",
        "peer_member",
        "newcomer",
        superusers={"superuser"},
    )
    group_id = await add_group(
        db_sessionmaker,
        "Crew",
        {
            people["owner"].id: GroupRole.OWNER,
            people["admin"].id: GroupRole.ADMIN,
            people["member"].id: GroupRole.MEMBER,
            people["peer_admin"].id: GroupRole.ADMIN,
            people["peer_member"].id: GroupRole.MEMBER,
        },
    )
    return World(group_id=group_id, people=people, **people)


async def until_waiting_for_locks(
    sessionmaker: async_sessionmaker[AsyncSession], count: int, within_seconds: float = 5.0
) -> None:
    """Until `count` lock requests wait on the server (each request queued behind a holder has
    one), rather than sleeping and hoping they have got there by then."""
    waiting: int | None = None
    async with sessionmaker() as session:
        for _ in range(int(within_seconds / 0.01)):
            waiting = await session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting is not None and waiting >= count:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{waiting} lock waits after {within_seconds} s, not {count}")


async def roles(
    sessionmaker: async_sessionmaker[AsyncSession], group_id: int
) -> dict[uuid.UUID, GroupRole]:
    async with sessionmaker() as session:
        rows = await session.exec(select(Membership).where(Membership.group_id == group_id))
        return {m.user_id: m.role for m in rows.all()}


async def spread_joined_at(
    sessionmaker: async_sessionmaker[AsyncSession], group_id: int, order: list[uuid.UUID]
) -> None:
    """Members joined a day apart, in the given order."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    async with sessionmaker() as session:
        for day, user_id in enumerate(order):
            await session.exec(
                update(Membership)
                .where(Membership.group_id == group_id, Membership.user_id == user_id)  # type: ignore[arg-type]
                .values(joined_at=start + timedelta(days=day))
            )
        await session.commit()


@dataclass(frozen=True)
class Executed:
    """One statement sent to the database, as the driver received it."""

    statement: str
    parameters: Any


@contextmanager
def recorded_statements(connection: AsyncConnection) -> Iterator[list[Executed]]:
    """Every statement run on `connection` inside the block (the requests' sessions use it)."""
    executed: list[Executed] = []

    def record(*args: Any) -> None:
        executed.append(Executed(args[2], args[3]))  # (conn, cursor, statement, parameters, ...)

    sync_connection = connection.sync_connection
    assert sync_connection is not None
    event.listen(sync_connection, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(sync_connection, "before_cursor_execute", record)
