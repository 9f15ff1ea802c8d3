"""Queries FastAPI Users does not offer."""

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.models import User
from roster_db import PageParams


async def list_users(
    session: AsyncSession, page: PageParams, *, email_contains: str | None = None
) -> tuple[list[User], int]:
    """A page of users in a stable order (oldest first), and how many match in all.

    `email_contains` keeps users whose email contains it, ignoring letter case; `%` and `_`
    are matched literally."""
    # Through the table's columns: the FastAPI Users mixin types `email` and `id` as plain
    # values for type checkers.
    columns = User.__table__.c
    query: Select[tuple[User]] = select(User)
    if email_contains:
        query = query.where(columns.email.icontains(email_contains, autoescape=True))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(columns.created_at, columns.id).limit(page.limit).offset(page.offset)
    )
    return list(rows), total or 0
