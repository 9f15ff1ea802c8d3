"""One page shape for every paginated endpoint: items, total, limit, offset."""

from typing import Annotated, Final, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
# Postgres takes OFFSET as a BIGINT: a larger value is a client error, not a database error.
MAX_OFFSET: Final = 2**63 - 1

ItemT = TypeVar("ItemT")


# The two query parameters of a page, for a route that declares them itself (the hot
# listings, which build their `PageParams` from them).
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")
]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]


class PageParams(BaseModel):
    """Where a page starts and how long it is, bounded so a client cannot ask for everything."""

    model_config = ConfigDict(frozen=True)

    limit: LimitQuery = DEFAULT_LIMIT
    offset: OffsetQuery = 0


# The query's `limit` and `offset`, validated as one model: a parameter of the route, not a
# dependency, which would cost twice as much. The hottest listings declare the two parameters
# themselves, which costs less still (bench/NOTES.md: a third of what a dependency costs).
PageParamsDep = Annotated[PageParams, Query()]


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int
