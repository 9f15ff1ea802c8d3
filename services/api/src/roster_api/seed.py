"""Data for trying the API: the original example's sample (groups Admin, Developer, Guest and
six users), or a large generated data set for load tests. Both are idempotent: running them
again adds only what is missing (and makes admin@example.com a superuser again); existing
accounts keep their passwords."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from fastapi_users.exceptions import InvalidPasswordException
from sqlalchemy import Table, func, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import build_auth_config
from roster_api.settings import Settings
from roster_auth import RosterAuth, User, UserCreate
from roster_db import create_sessionmaker, one_off_engine, session_scope
from roster_groups import GroupInvitation, GroupRole, InvitationStatus, Membership, UserGroup
from roster_groups.invitations import new_token, token_digest

# The sample's one password, for development only (production must pass its own).
DEVELOPMENT_SEED_PASSWORD: Final = "sample-orchid-lantern-58"  # noqa: S105

# Deterministic ids for generated users: a second run finds the same rows.
BULK_USER_NAMESPACE: Final = uuid.UUID("6c1f3b52-8d8e-4f0e-9a55-2b7f61d0c0de")
BULK_BATCH_SIZE: Final = 5_000

user_table: Final = cast(Table, sa_inspect(User).local_table)
group_table: Final = cast(Table, sa_inspect(UserGroup).local_table)
membership_table: Final = cast(Table, sa_inspect(Membership).local_table)
invitation_table: Final = cast(Table, sa_inspect(GroupInvitation).local_table)


@dataclass(frozen=True)
class SampleUser:
    email: str
    display_name: str
    is_superuser: bool = False


@dataclass(frozen=True)
class SampleGroup:
    name: str
    description: str
    # The first member owns the group.
    members: tuple[str, ...]


SAMPLE_USERS: Final = (
    SampleUser("admin@example.com", "Ada Admin", is_superuser=True),
    SampleUser("dev1@example.com", "Dev One"),
    SampleUser("dev2@example.com", "Dev Two"),
    SampleUser("guest1@example.com", "Guest One"),
    SampleUser("guest2@example.com", "Guest Two"),
    SampleUser("guest3@example.com", "Guest Three"),
)
SAMPLE_GROUPS: Final = (
    SampleGroup("Admin", "Administrators of the service.", ("admin@example.com",)),
    SampleGroup("Developer", "People who build it.", ("dev1@example.com", "dev2@example.com")),
    SampleGroup(
        "Guest",
        "Visitors with read access.",
        ("guest1@example.com", "guest2@example.com", "guest3@example.com"),
    ),
)


@dataclass(frozen=True)
class SampleInvitation:
    group: str
    # A member of the group who may invite (its owner).
    inviter: str
    email: str
    role: GroupRole


# Someone without an account, invited into Developer: register with this address, and accept
# with the token that `roster seed` prints in development (the seed sends no mail).
SAMPLE_INVITATION: Final = SampleInvitation(
    "Developer", "dev1@example.com", "newcomer@example.com", GroupRole.MEMBER
)


class SeedError(Exception):
    """The seed cannot run as asked; the message says why."""


@dataclass
class Tally:
    """Rows of one kind: how many the seed wrote, and how many it found already there."""

    created: int = 0
    existing: int = 0


@dataclass
class SeedReport:
    users: Tally = field(default_factory=Tally)
    groups: Tally = field(default_factory=Tally)
    memberships: Tally = field(default_factory=Tally)
    invitations: Tally = field(default_factory=Tally)
    notes: list[str] = field(default_factory=list)

    def tallies(self) -> dict[str, Tally]:
        """Each kind of row by name, in the order they are written."""
        return {
            each.name: tally
            for each in fields(self)
            if isinstance(tally := getattr(self, each.name), Tally)
        }


Progress = Callable[[str, int], None]
"""Called with a phase name and how many rows of it were just written."""


async def seed_sample(settings: Settings, database_url: str, password: str) -> SeedReport:
    """The example's data. Users go through roster-auth's user manager (its password policy
    and hashing); an existing account keeps its password."""
    auth = RosterAuth(build_auth_config(settings))
    report = SeedReport()
    async with (
        one_off_engine(database_url) as engine,
        session_scope(create_sessionmaker(engine)) as session,
    ):
        users = {
            sample.email: await _ensure_user(auth, session, sample, password, report)
            for sample in SAMPLE_USERS
        }
        # Groups and memberships in Core, on the session's connection (same transaction).
        connection = await session.connection()
        group_ids: dict[str, int] = {}
        for sample_group in SAMPLE_GROUPS:
            group_id = group_ids[sample_group.name] = await _ensure_group(
                connection, sample_group, report
            )
            for position, email in enumerate(sample_group.members):
                role = GroupRole.OWNER if position == 0 else GroupRole.MEMBER
                created = await _insert_ignoring_existing(
                    connection,
                    membership_table,
                    [{"group_id": group_id, "user_id": users[email].id, "role": role.value}],
                )
                report.memberships.created += created
                report.memberships.existing += 1 - created
        await _ensure_invitation(
            connection,
            settings,
            group_ids[SAMPLE_INVITATION.group],
            users[SAMPLE_INVITATION.inviter].id,
            report,
        )
    return report


async def _ensure_invitation(
    connection: AsyncConnection,
    settings: Settings,
    group_id: int,
    inviter_id: uuid.UUID,
    report: SeedReport,
) -> None:
    """The sample's pending invitation, unless one is pending (and unexpired) already. Its
    token exists only here: stored as a digest, printed in development, never mailed."""
    sample = SAMPLE_INVITATION
    now = datetime.now(UTC)
    pending = await connection.scalar(
        select(invitation_table.c.id).where(
            invitation_table.c.group_id == group_id,
            func.lower(invitation_table.c.email) == sample.email.lower(),
            invitation_table.c.status == InvitationStatus.PENDING.value,
            invitation_table.c.expires_at > now,
        )
    )
    if pending is not None:
        report.invitations.existing += 1
        return
    token = new_token()
    await connection.execute(
        insert(invitation_table).values(
            id=uuid.uuid4(),
            group_id=group_id,
            email=sample.email,
            role=sample.role,
            token_hash=token_digest(token),
            invited_by=inviter_id,
            status=InvitationStatus.PENDING.value,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.invitation_lifetime_seconds),
        )
    )
    report.invitations.created += 1
    report.notes.append(
        f"{sample.email} is invited into {sample.group} as {sample.role.value} (no mail sent)"
    )
    if not settings.is_production:
        # Short lines: the console wraps at its width, and the token must stay whole.
        report.notes.append(f"its token (development only): {token}")


async def _ensure_user(
    auth: RosterAuth,
    session: AsyncSession,
    sample: SampleUser,
    password: str,
    report: SeedReport,
) -> User:
    manager = auth.user_manager(session)
    existing = await manager.user_db.get_by_email(sample.email)
    if existing is not None:
        report.users.existing += 1
        if sample.is_superuser and not existing.is_superuser:
            await manager.user_db.update(existing, {"is_superuser": True})
            report.notes.append(f"{existing.email} is a superuser again")
        return existing
    try:
        user = await manager.create(
            UserCreate(
                email=sample.email,
                password=password,
                display_name=sample.display_name,
                is_superuser=sample.is_superuser,
                is_verified=True,
            ),
            safe=False,
        )
    except InvalidPasswordException as error:
        raise SeedError(f"the seed password is refused: {error.reason}") from error
    report.users.created += 1
    return user


async def _ensure_group(
    connection: AsyncConnection, sample: SampleGroup, report: SeedReport
) -> int:
    existing = await connection.scalar(
        select(group_table.c.id).where(func.lower(group_table.c.name) == sample.name.lower())
    )
    if existing is not None:
        report.groups.existing += 1
        return int(existing)
    created = await connection.execute(
        insert(group_table)
        .values(name=sample.name, description=sample.description)
        .returning(group_table.c.id)
    )
    report.groups.created += 1
    return int(created.scalar_one())


async def _insert_ignoring_existing(
    connection: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> int:
    """Insert rows, skipping those that collide with existing ones; how many were new."""
    if not rows:
        return 0
    result = await connection.execute(
        pg_insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns), rows
    )
    return len(result.all())


def bulk_email(index: int) -> str:
    return f"user{index:07d}@example.com"


def bulk_group_name(index: int) -> str:
    return f"Group {index:06d}"


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


async def _insert_in_batches(
    engine: AsyncEngine,
    table: Table,
    rows: Iterable[dict[str, Any]],
    phase: str,
    progress: Progress,
) -> tuple[int, int]:
    """Insert rows in batches, each committed, skipping those that exist; how many rows were
    new and how many existed."""
    created = existing = 0
    for batch in _batches(rows, BULK_BATCH_SIZE):
        async with engine.begin() as connection:
            new = await _insert_ignoring_existing(connection, table, batch)
        created += new
        existing += len(batch) - new
        progress(phase, len(batch))
    return created, existing


async def seed_bulk(
    settings: Settings,
    database_url: str,
    password: str,
    *,
    users: int,
    groups: int,
    progress: Progress | None = None,
) -> SeedReport:
    """`users` generated accounts and `groups` groups, each user a member of one group
    (round robin) and each group owned by its first member. One password, hashed once;
    rows written in batches of multi-row INSERTs, each batch committed."""
    if users < 1 or groups < 1:
        raise SeedError("--users and --groups must be at least 1")
    if groups > users:
        raise SeedError("every group needs an owner: ask for at most as many groups as users")
    auth = RosterAuth(build_auth_config(settings))
    reason = auth.config.password_policy.reason_to_reject(password, email=bulk_email(0))
    if reason is not None:
        raise SeedError(f"the seed password is refused: {reason}")
    hashed_password = auth.password_helper.hash(password)
    report = SeedReport()
    report_progress: Progress = progress or (lambda _phase, _count: None)

    def user_rows() -> Iterator[dict[str, Any]]:
        for index in range(users):
            email = bulk_email(index)
            yield {
                "id": uuid.uuid5(BULK_USER_NAMESPACE, email),
                "email": email,
                "hashed_password": hashed_password,
                "is_active": True,
                "is_superuser": False,
                "is_verified": True,
                "display_name": f"User {index}",
            }

    async with one_off_engine(database_url) as engine:
        report.users.created, report.users.existing = await _insert_in_batches(
            engine, user_table, user_rows(), "users", report_progress
        )

        group_ids: list[int] = []
        group_rows = ({"name": bulk_group_name(index)} for index in range(groups))
        for batch in _batches(group_rows, BULK_BATCH_SIZE):
            names = [row["name"] for row in batch]
            async with engine.begin() as connection:
                created = await _insert_ignoring_existing(connection, group_table, batch)
                rows = await connection.execute(
                    select(group_table.c.name, group_table.c.id).where(
                        group_table.c.name.in_(names)
                    )
                )
                # .all(): a result has keys(), so dict() would take it for a mapping.
                ids_by_name = dict(rows.tuples().all())
            group_ids.extend(ids_by_name[name] for name in names)
            report.groups.created += created
            report.groups.existing += len(batch) - created
            report_progress("groups", len(batch))

        def membership_rows() -> Iterator[dict[str, Any]]:
            for index in range(users):
                yield {
                    "group_id": group_ids[index % groups],
                    "user_id": uuid.uuid5(BULK_USER_NAMESPACE, bulk_email(index)),
                    "role": (GroupRole.OWNER if index < groups else GroupRole.MEMBER).value,
                }

        report.memberships.created, report.memberships.existing = await _insert_in_batches(
            engine, membership_table, membership_rows(), "memberships", report_progress
        )
    return report


__all__ = [
    "DEVELOPMENT_SEED_PASSWORD",
    "SAMPLE_GROUPS",
    "SAMPLE_INVITATION",
    "SAMPLE_USERS",
    "SeedError",
    "SeedReport",
    "bulk_email",
    "bulk_group_name",
    "seed_bulk",
    "seed_sample",
]
