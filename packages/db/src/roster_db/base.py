"""One metadata, one registry: the ground that SQLAlchemy and SQLModel models share.

`Base` is for plain SQLAlchemy models (FastAPI Users' `User`), `SQLModelBase` for SQLModel
table models. Both map into `mapper_registry`, so a model of either kind can name a model of
the other in `relationship()`, and one `metadata` holds every table for Alembic.
"""

from collections.abc import Iterable
from typing import Final

from sqlalchemy import DDL, FromClause, MetaData, event
from sqlalchemy.orm import DeclarativeBase, registry
from sqlmodel import SQLModel

# Deterministic constraint names, so that migrations can refer to (and drop) them by name.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def create_registry() -> registry:
    """A registry on a fresh metadata that follows `NAMING_CONVENTION`."""
    return registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


mapper_registry: Final = create_registry()
metadata: Final = mapper_registry.metadata


class Base(DeclarativeBase):
    """Declarative base for plain SQLAlchemy models."""

    registry = mapper_registry
    metadata = metadata


class SQLModelBase(SQLModel, registry=mapper_registry):
    """Base for SQLModel table models, bound to the shared registry (not SQLModel's default)."""


def create_with_table(table: FromClause, create: Iterable[str], drop: Iterable[str]) -> None:
    """Run the `create` statements (functions, triggers: what autogenerate does not see) after
    `metadata.create_all` creates `table`, and the `drop` statements before it drops it, on
    Postgres only. The tests build their schema that way; migrations run the same statements."""
    for when, statements in (("after_create", create), ("before_drop", drop)):
        for statement in statements:
            event.listen(
                table,
                when,
                DDL(statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
            )
