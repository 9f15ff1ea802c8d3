"""One page shape for every paginated endpoint: items, total, limit, offset."""

from typing import Annotated, Final, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 100
# Postgres takes OFFSET as a BIGINT: a larger value is a client error, not a database error.
MAX_OFFSET: Final = 2**63 - 1

ItemT = TypeVar("ItemT")


class PageParams(BaseModel):
    """Where a page starts and how long it is, bounded so a client cannot ask for everything."""

    model_config = ConfigDict(frozen=True)

    limit: int = DEFAULT_LIMIT
    offset: int = 0


# async: a plain `def` dependency would be sent through a worker thread on every request.
async def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int
