"""The shared registry: SQLAlchemy and SQLModel models on one metadata, related both ways."""

import uuid

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload
from sqlmodel import Field, Relationship, SQLModel, select

from roster_db import Base, SQLModelBase, mapper_registry, metadata
from roster_db.base import NAMING_CONVENTION, create_registry
from roster_db.session import create_sessionmaker

# Models for these tests live on a registry of their own, built exactly like the shared one,
# so that they never join the application's metadata (and its migrations).
demo_registry = create_registry()


class DemoBase(DeclarativeBase):
    registry = demo_registry
    metadata = demo_registry.metadata


class DemoSQLModelBase(SQLModel, registry=demo_registry):
    pass


class Author(DemoBase):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True, index=True)


class Book(DemoSQLModelBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=100)
    author_id: int = Field(foreign_key="author.id", ondelete="CASCADE")

    author: "Author" = Relationship(sa_relationship=relationship(Author, lazy="raise"))


# The other direction: the SQLAlchemy model learns about the SQLModel one from outside, the
# way roster-groups adds `User.groups` without roster-auth importing it.
Author.books = relationship(Book, lazy="raise", viewonly=True)


def test_sqlalchemy_and_sqlmodel_bases_share_one_metadata_and_registry() -> None:
    assert Base.metadata is metadata
    assert Base.registry is mapper_registry
    assert SQLModelBase.metadata is metadata
    assert SQLModelBase._sa_registry is mapper_registry
    # SQLModel's own default registry stays untouched.
    assert SQLModel.metadata is not metadata
    assert metadata.naming_convention == {**metadata.naming_convention, **NAMING_CONVENTION}


def test_constraint_names_follow_the_convention() -> None:
    author, book = demo_registry.metadata.tables["author"], demo_registry.metadata.tables["book"]
    assert author.primary_key.name == "pk_author"
    assert {index.name for index in author.indexes} == {"ix_author_email"}
    (foreign_key,) = book.foreign_key_constraints
    assert foreign_key.name == "fk_book_author_id_author"


async def test_relationship_across_models_loads_both_ways(
    db_connection: AsyncConnection,
) -> None:
    await db_connection.run_sync(demo_registry.metadata.create_all)
    sessionmaker = create_sessionmaker(db_connection)
    async with sessionmaker() as session:
        author = Author(email=f"{uuid.uuid4().hex}@example.com")
        session.add(author)
        await session.flush()
        session.add_all(
            [Book(title="One", author_id=author.id), Book(title="Two", author_id=author.id)]
        )
        await session.commit()

    async with sessionmaker() as session:
        loaded = (
            await session.exec(
                select(Author).where(Author.id == author.id).options(selectinload(Author.books))  # type: ignore[attr-defined]
            )
        ).one()
        assert sorted(book.title for book in loaded.books) == ["One", "Two"]  # type: ignore[attr-defined]

        book = (
            await session.exec(select(Book).options(selectinload(Book.author)).limit(1))  # type: ignore[arg-type]
        ).one()
        assert book.author.email == author.email

    # Constraint names reach the database as declared.
    names = await db_connection.run_sync(
        lambda sync: {
            row[0]
            for row in sync.exec_driver_sql(
                # contype: primary key, foreign key, unique, check (PG 18 also lists NOT NULL).
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = 'book'::regclass AND contype IN ('p', 'f', 'u', 'c')"
            )
        }
    )
    assert names == {"pk_book", "fk_book_author_id_author"}
