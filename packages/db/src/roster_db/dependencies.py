"""The request-scoped session for FastAPI routes.

The application's lifespan yields its session maker as lifespan state under `SESSIONMAKER_STATE`
(`{"sessionmaker": ...}`), which Starlette copies into every request's `request.state`.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db.session import session_scope

SESSIONMAKER_STATE: Final = "sessionmaker"


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request: committed when the route succeeds, rolled back when it fails."""
    sessionmaker: async_sessionmaker[AsyncSession] = getattr(request.state, SESSIONMAKER_STATE)
    async with session_scope(sessionmaker) as session:
        yield session


# scope="function" commits before the response is sent, so a client never sees a success
# for work whose commit then failed (the default scope exits only after the response).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
