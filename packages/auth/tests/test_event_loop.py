"""What runs on the event loop and what does not: a request must never wait for a thread it
does not need, and no request may hold the loop while a password is hashed."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from httpx import AsyncClient

from roster_auth import RosterAuth, User
from roster_auth.testing import bearer_headers

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]


@asynccontextmanager
async def thread_pool_exhausted() -> AsyncIterator[None]:
    """Holds every free token of anyio's default thread limiter, where FastAPI runs plain
    `def` dependencies: within the block, anything that needs that pool waits."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    borrowers = [object() for _ in range(int(limiter.available_tokens))]
    for borrower in borrowers:
        limiter.acquire_on_behalf_of_nowait(borrower)
    try:
        yield
    finally:
        for borrower in borrowers:
            limiter.release_on_behalf_of(borrower)


async def test_authenticated_requests_need_no_worker_thread(
    client: AsyncClient, make_user: MakeUser, auth: RosterAuth, cookie_login: Login
) -> None:
    user = await make_user(email="tess@example.org")
    cookie = {"Cookie": f"roster_auth={await cookie_login(user.email)}"}
    client.cookies.clear()
    jwt = await bearer_headers(auth, user)

    async with thread_pool_exhausted():
        # A dependency run in the pool would wait here until the timeout.
        with anyio.fail_after(5):
            for headers in (jwt, cookie):
                me = await client.get("/users/me", headers=headers)
                assert (me.status_code, me.json()["id"]) == (200, str(user.id))
                probe = await client.get("/probe/me", headers=headers)
                assert probe.json() == str(user.id)
            edited = await client.patch("/users/me", headers=jwt, json={"display_name": "Tess"})
            assert edited.json()["display_name"] == "Tess"
