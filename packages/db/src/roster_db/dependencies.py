"""The request-scoped session and reader for FastAPI routes.

The application's lifespan yields its session maker as lifespan state under `SESSIONMAKER_STATE`
(`{"sessionmaker": ...}`), which Starlette copies into every request's `request.state`, and
optionally a `Reader` under `READER_STATE` (without one, reads go through the session maker).
"""

from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db.reading import Reader, SessionReader
from roster_db.session import session_scope

SESSIONMAKER_STATE: Final = "sessionmaker"
READER_STATE: Final = "reader"


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request: committed when the route succeeds, rolled back when it fails."""
    sessionmaker: async_sessionmaker[AsyncSession] = getattr(request.state, SESSIONMAKER_STATE)
    async with session_scope(sessionmaker) as session:
        yield session


# scope="function" commits before the response is sent, so a client never sees a success
# for work whose commit then failed (the default scope exits only after the response).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def reader_of(request: Request) -> Reader:
    """The application's reader for single-statement reads (see `roster_db.reading`)."""
    reader: Reader | None = getattr(request.state, READER_STATE, None)
    if reader is None:
        reader = SessionReader(getattr(request.state, SESSIONMAKER_STATE))
    return reader


async def get_reader(request: Request) -> Reader:
    """`reader_of` as a dependency."""
    return reader_of(request)


ReaderDep = Annotated[Reader, Depends(get_reader)]
