"""The Alembic tree (migrations/ at the repository root), run from code.

`migrations/env.py` takes its options from `context_options()` here, so that the scripts
developers generate, `roster migrate` and the tests all see the same metadata, comparison rules
and type rendering.

Migration scripts import only `alembic` and `sqlalchemy`: `render_item` writes FastAPI Users'
`GUID` and `TIMESTAMPAware` and SQLModel's `AutoString` as the plain SQLAlchemy types they stand
for on Postgres, so a script keeps working when a library renames its internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from roster_api.models import metadata
from roster_db import one_off_engine

# Serialises concurrent `roster migrate` runs (several replicas starting at once) on one
# database; any fixed 64-bit number works, this one spells "roster" in ASCII.
MIGRATION_LOCK_KEY: Final = 0x726F73746572


def _render_uuid(_: Any) -> str:
    return "sa.Uuid()"


def _render_datetime(type_: Any) -> str:
    return "sa.DateTime(timezone=True)" if type_.impl.timezone else "sa.DateTime()"


def _render_string(type_: Any) -> str:
    length = type_.impl.length
    return f"sa.String(length={length})" if length is not None else "sa.String()"


# Library types by import path (not imported: roster-api does not depend on their internals).
PLAIN_TYPE_RENDERERS: Final[dict[str, Callable[[Any], str]]] = {
    "fastapi_users_db_sqlalchemy.generics.GUID": _render_uuid,
    "fastapi_users_db_sqlalchemy.generics.TIMESTAMPAware": _render_datetime,
    "sqlmodel.sql.sqltypes.AutoString": _render_string,
}


class UnrenderableTypeError(TypeError):
    """A model uses a library's custom column type that the scripts cannot name safely."""


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Alembic's `render_item` hook: library column types as plain SQLAlchemy types; any
    other type from outside SQLAlchemy stops autogenerate rather than reach a script."""
    if type_ != "type":
        return False
    path = f"{type(obj).__module__}.{type(obj).__qualname__}"
    renderer = PLAIN_TYPE_RENDERERS.get(path)
    if renderer is not None:
        autogen_context.imports.add("import sqlalchemy as sa")
        return renderer(obj)
    if type(obj).__module__.startswith("sqlalchemy."):
        return False
    raise UnrenderableTypeError(
        f"no plain SQLAlchemy spelling for column type {path}: add one to "
        "roster_api.migrations.PLAIN_TYPE_RENDERERS"
    )


def context_options() -> dict[str, Any]:
    """The options `env.py` passes to `context.configure`, online and offline."""
    return {
        "target_metadata": metadata,
        "compare_type": True,
        "compare_server_default": True,
        "render_item": render_item,
    }


def run_migrations_on(connection: Connection) -> None:
    """Run the pending command on a connection (called from env.py). Takes the migration
    lock first, so that concurrent runs wait for each other instead of racing."""
    from alembic import context  # the proxy is only usable inside an Alembic command

    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(connection=connection, **context_options())
    with context.begin_transaction():
        context.run_migrations()


def alembic_config(migrations_dir: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_directory(migrations_dir: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(migrations_dir))


def head_revision(migrations_dir: Path) -> str:
    """The one head of the tree (several heads are a merge someone forgot)."""
    heads = script_directory(migrations_dir).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads, expected one: {heads}")
    return heads[0]


def database_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class RevisionInfo:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def history(migrations_dir: Path) -> list[RevisionInfo]:
    """Every revision, newest first."""
    revisions = []
    for script in script_directory(migrations_dir).walk_revisions():
        down = script.down_revision
        revisions.append(
            RevisionInfo(
                revision=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                message=script.doc,
                is_head=script.is_head,
            )
        )
    return revisions


async def _run(database_url: str, action: Callable[[Connection], Any]) -> Any:
    async with one_off_engine(database_url) as engine, engine.begin() as connection:
        return await connection.run_sync(action)


async def upgrade(database_url: str, migrations_dir: Path, revision: str = "head") -> None:
    def action(connection: Connection) -> None:
        command.upgrade(alembic_config(migrations_dir, connection), revision)

    await _run(database_url, action)


async def downgrade(database_url: str, migrations_dir: Path, revision: str) -> None:
    def action(connection: Connection) -> None:
        command.downgrade(alembic_config(migrations_dir, connection), revision)

    await _run(database_url, action)


async def current_revision(database_url: str) -> str | None:
    result: str | None = await _run(database_url, database_revision)
    return result


__all__ = [
    "PLAIN_TYPE_RENDERERS",
    "RevisionInfo",
    "UnrenderableTypeError",
    "alembic_config",
    "context_options",
    "current_revision",
    "database_revision",
    "downgrade",
    "head_revision",
    "history",
    "render_item",
    "run_migrations_on",
    "upgrade",
]
