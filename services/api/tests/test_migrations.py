"""The Alembic tree on a real Postgres: one head, up from empty, down to base and up again,
models and migrations agree, and an upgrade keeps the data already there."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Final

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from roster_api import migrations
from roster_api.models import metadata
from roster_auth import token_digest
from roster_db import one_off_engine
from roster_db.testing import CreateDatabase


async def table_names(url: str) -> set[str]:
    async with one_off_engine(url) as engine, engine.connect() as connection:
        names: list[str] = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        return set(names)


def test_the_tree_has_exactly_one_head(migrations_dir: Path) -> None:
    heads = migrations.script_directory(migrations_dir).get_heads()
    assert len(heads) == 1, heads


def test_scripts_import_only_alembic_and_sqlalchemy(migrations_dir: Path) -> None:
    scripts = sorted((migrations_dir / "versions").glob("*.py"))
    assert scripts
    for script in scripts:
        tree = ast.parse(script.read_text())
        modules = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert modules <= {"alembic", "sqlalchemy", "collections", "typing"}, (script, modules)


async def test_upgrade_from_empty_to_head_creates_every_table(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    url = await create_database()
    assert await migrations.current_revision(url) is None

    await migrations.upgrade(url, migrations_dir)

    assert await migrations.current_revision(url) == migrations.head_revision(migrations_dir)
    assert await table_names(url) == set(metadata.tables) | {"alembic_version"}


async def test_downgrade_to_base_and_upgrade_again(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    url = await create_database()
    await migrations.upgrade(url, migrations_dir)

    await migrations.downgrade(url, migrations_dir, "base")
    assert await migrations.current_revision(url) is None
    assert await table_names(url) == {"alembic_version"}

    await migrations.upgrade(url, migrations_dir)
    assert await migrations.current_revision(url) == migrations.head_revision(migrations_dir)
    assert await table_names(url) == set(metadata.tables) | {"alembic_version"}


async def test_every_revision_downgrades_and_upgrades_again(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    """Step by step from base: up one, down one, up one again. A downgrade that leaves
    something behind makes the second upgrade fail."""
    url = await create_database()
    revisions = [info.revision for info in reversed(migrations.history(migrations_dir))]
    previous = "base"
    for revision in revisions:
        await migrations.upgrade(url, migrations_dir, revision)
        await migrations.downgrade(url, migrations_dir, previous)
        await migrations.upgrade(url, migrations_dir, revision)
        assert await migrations.current_revision(url) == revision
        previous = revision


async def test_models_and_migrations_agree(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    url = await create_database()
    await migrations.upgrade(url, migrations_dir)

    def differences(connection: Connection) -> list[object]:
        options = migrations.context_options()
        context = MigrationContext.configure(
            connection,
            opts={key: value for key, value in options.items() if key != "target_metadata"},
        )
        return list(compare_metadata(context, options["target_metadata"]))

    async with one_off_engine(url) as engine, engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def test_upgrade_keeps_existing_data(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    """Rows written at the first revision survive every later upgrade."""
    url = await create_database()
    first = migrations.history(migrations_dir)[-1].revision
    await migrations.upgrade(url, migrations_dir, first)
    async with one_off_engine(url) as engine:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    'INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser, '
                    "is_verified) VALUES ('6f1c1f5e-0000-4000-8000-000000000001', "
                    "'kept@example.com', 'hash', true, false, true)"
                )
            )

        await migrations.upgrade(url, migrations_dir)

        async with engine.connect() as connection:
            rows = (await connection.execute(text('SELECT email, is_verified FROM "user"'))).all()
    assert [tuple(row) for row in rows] == [("kept@example.com", True)]


async def test_the_member_counts_start_from_the_memberships_already_there(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    """The revision that adds group_member_count counts the existing memberships; from there
    on its triggers keep the counts."""
    url = await create_database()
    await migrations.upgrade(url, migrations_dir, "9b3f61d2c8e7")
    users = [f"6f1c1f5e-0000-4000-8000-00000000000{n}" for n in range(1, 4)]
    async with one_off_engine(url) as engine:
        async with engine.begin() as connection:
            for n, user_id in enumerate(users):
                await connection.execute(
                    text(
                        'INSERT INTO "user" (id, email, hashed_password, is_active, '
                        "is_superuser, is_verified) VALUES (:id, :email, 'hash', true, false, true)"
                    ),
                    {"id": user_id, "email": f"counted{n}@example.com"},
                )
            await connection.execute(
                text("INSERT INTO user_group (id, name) VALUES (1, 'A'), (2, 'B')")
            )
            await connection.execute(
                text(
                    "INSERT INTO membership (group_id, user_id, role) VALUES "
                    "(1, :a, 'owner'), (1, :b, 'member'), (1, :c, 'member'), (2, :a, 'owner')"
                ),
                dict(zip("abc", users, strict=True)),
            )

        await migrations.upgrade(url, migrations_dir)

        async with engine.begin() as connection:
            counts = text("SELECT group_id, role, member_count FROM group_member_count")
            assert set((await connection.execute(counts)).all()) == {
                (1, "owner", 1),
                (1, "member", 2),
                (2, "owner", 1),
            }
            await connection.execute(
                text("DELETE FROM membership WHERE group_id = 1 AND role = 'member'")
            )
            assert set((await connection.execute(counts)).all()) == {
                (1, "owner", 1),
                (1, "member", 0),
                (2, "owner", 1),
            }


CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
               column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'alembic_version'
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'alembic_version'
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
    """,
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal
    """,
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace
    """,
}


async def catalog(url: str) -> dict[str, set[tuple[object, ...]]]:
    async with one_off_engine(url) as engine, engine.connect() as connection:
        return {
            name: {tuple(row) for row in (await connection.execute(text(query))).all()}
            for name, query in CATALOG_QUERIES.items()
        }


async def test_migrated_schema_equals_the_models_schema(
    migrated_database_url: str, database_url: str
) -> None:
    """What autogenerate does not compare (CHECK constraints, constraint and index names,
    triggers, functions) compared in Postgres's own catalog: the migrated database against
    one built by `metadata.create_all` from the models."""
    migrated = await catalog(migrated_database_url)
    from_models = await catalog(database_url)
    assert migrated["triggers"], "the groups trigger is missing from both"
    for name in CATALOG_QUERIES:
        assert migrated[name] == from_models[name], name


# Sessions waiting for the advisory lock of a bigint key (Postgres keeps its halves apart).
LOCK_WAITERS: Final = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND (classid::bigint << 32) | objid::bigint = :key"
)


async def test_an_upgrade_waits_for_the_migration_lock(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    """Replicas running `roster migrate upgrade` at once take turns: each run holds a Postgres
    advisory lock, so a later one finds the work done instead of creating the tables again."""
    url = await create_database()
    async with one_off_engine(url) as engine, engine.connect() as holder:
        await holder.execute(
            text("SELECT pg_advisory_lock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
        )
        upgrade = asyncio.ensure_future(migrations.upgrade(url, migrations_dir))
        # Until the upgrade waits for that lock (rather than a second, hoping it has got there).
        for _ in range(1000):
            waiting = await holder.scalar(LOCK_WAITERS, {"key": migrations.MIGRATION_LOCK_KEY})
            if waiting or upgrade.done():
                break
            await asyncio.sleep(0.01)
        assert not upgrade.done(), "the upgrade ran while another run held the lock"
        assert waiting, "the upgrade never waited for the lock"
        assert await migrations.current_revision(url) is None
        await holder.execute(
            text("SELECT pg_advisory_unlock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
        )
        await asyncio.wait_for(upgrade, timeout=30)
    assert await migrations.current_revision(url) == migrations.head_revision(migrations_dir)


async def test_the_sessions_revision_hashes_the_stored_cookie_tokens(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    """Cookie sessions from before the tokens were hashed keep working: each stored token
    becomes the digest the current-user path computes from the cookie."""
    url = await create_database()
    await migrations.upgrade(url, migrations_dir, "389deb3b2a9c")
    token = "Kd9vP_x-2mQ8cN4tR7yZ1bW6hJ3fL5sA0eU9iO2gT4k"  # as token_urlsafe() makes them
    async with one_off_engine(url) as engine:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    'INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser, '
                    "is_verified) VALUES ('6f1c1f5e-0000-4000-8000-000000000002', "
                    "'cookie@example.com', 'hash', true, false, true)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO accesstoken (token, user_id, created_at) VALUES "
                    "(:token, '6f1c1f5e-0000-4000-8000-000000000002', "
                    "'2026-11-30T10:00:00+00:00')"
                ),
                {"token": token},
            )

        await migrations.upgrade(url, migrations_dir)

        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT token, id, last_used_at = created_at AS same FROM accesstoken")
                )
            ).one()
        assert row.token == token_digest(token)
        assert row.id is not None
        assert row.same

        # Back down: a digest is no token, so the sessions end.
        await migrations.downgrade(url, migrations_dir, "389deb3b2a9c")
        async with engine.connect() as connection:
            left = (await connection.execute(text("SELECT count(*) FROM accesstoken"))).scalar()
        assert left == 0
