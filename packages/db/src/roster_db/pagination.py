"""One page shape for every paginated endpoint: items, total, limit, offset; and the keyset
cursors of the listings that also page by position (a deep page by offset walks every row it
skips, a page after a cursor starts where the previous one ended)."""

import base64
import binascii
from datetime import UTC, datetime
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

CURSOR_MAX_LENGTH: Final = 128
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]+$"


def encode_cursor_position(moment: datetime, key: object) -> str:
    """An opaque cursor (unpadded base64url) for the page after the item at (`moment`,
    `key`), the two columns a listing is ordered by. Not signed: it only says where to start
    reading, and every read still checks what the caller may see."""
    raw = f"{moment.isoformat()}|{key}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor_position(value: str) -> tuple[datetime, str]:
    """The (time in UTC, key as written) of a cursor; ValueError for anything
    `encode_cursor_position` did not write. The listing checks the key."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        moment_text, separator, key = raw.partition("|")
        moment = datetime.fromisoformat(moment_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ValueError("not a cursor of this listing") from error
    if not separator or moment.tzinfo is None:
        raise ValueError("not a cursor of this listing")
    try:
        return in_utc(moment), key
    except ValueError as error:
        raise ValueError("not a cursor of this listing") from error


def in_utc(moment: datetime) -> datetime:
    """The time in UTC; ValueError when that falls outside Python's years 1..9999 (the driver
    converts to UTC, and would fail on it later with an error that is no client's)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the time is out of range") from error


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
