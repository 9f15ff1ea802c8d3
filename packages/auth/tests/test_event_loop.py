"""What runs on the event loop and what does not: a request must never wait for a thread it
does not need, and no request may hold the loop while a password is hashed."""

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread
import pytest
from fastapi_users.password import PasswordHelper, PasswordHelperProtocol
from httpx import AsyncClient, Response
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import MailKind, OutboxMailer, RosterAuth, User
from roster_auth.testing import (
    DEFAULT_PASSWORD,
    bearer,
    bearer_headers,
    config_for_tests,
    fast_password_helper,
)

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[str]]
ServeWith = Callable[..., Any]
NEW_PASSWORD = "saffron-lighthouse-canoe-77"


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


HasherKind = Literal["hash", "verify"]


@dataclass(frozen=True)
class HasherCall:
    kind: HasherKind
    on_event_loop: bool
    started: float
    ended: float


class RecordingPasswordHelper:
    """Wraps a password helper and notes each hash and verification: when it ran, whether on
    the event loop's thread, and how many ran at once at most."""

    def __init__(self, inner: PasswordHelperProtocol, *, delay_seconds: float = 0.0) -> None:
        self.inner = inner
        # Built on the loop's thread, as the tests that use it run there.
        self.event_loop_thread = threading.get_ident()
        self.delay_seconds = delay_seconds
        self.calls: list[HasherCall] = []
        self.peak_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def _recording(self, kind: HasherKind) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        started = time.perf_counter()
        try:
            time.sleep(self.delay_seconds)
            yield
        finally:
            ended = time.perf_counter()
            on_event_loop = threading.get_ident() == self.event_loop_thread
            with self._lock:
                self._in_flight -= 1
                self.calls.append(HasherCall(kind, on_event_loop, started, ended))

    def take(self) -> list[tuple[HasherKind, bool]]:
        """(kind, on the event loop) of each call since the last `take`."""
        taken = [(call.kind, call.on_event_loop) for call in self.calls]
        self.calls.clear()
        return taken

    def verify_and_update(
        self, plain_password: str, hashed_password: str
    ) -> tuple[bool, str | None]:
        with self._recording("verify"):
            return self.inner.verify_and_update(plain_password, hashed_password)

    def hash(self, password: str) -> str:
        with self._recording("hash"):
            return self.inner.hash(password)

    def generate(self) -> str:
        return self.inner.generate()


OFF_LOOP_HASH: tuple[HasherKind, bool] = ("hash", False)
OFF_LOOP_VERIFY: tuple[HasherKind, bool] = ("verify", False)


async def test_every_request_that_hashes_does_it_off_the_event_loop(
    serve_with: ServeWith, make_user: MakeUser, outbox: OutboxMailer
) -> None:
    hasher = RecordingPasswordHelper(fast_password_helper())
    older = PasswordHelper(
        PasswordHash((Argon2Hasher(time_cost=2, memory_cost=1024, parallelism=1),))
    )
    await make_user(email="root@example.org", is_superuser=True)
    await make_user(email="olga@example.org", password_helper=older)
    async with serve_with(config_for_tests(mailer=outbox, password_helper=hasher)) as client:

        async def login(email: str, password: str = DEFAULT_PASSWORD) -> Response:
            response: Response = await client.post(
                "/auth/jwt/login", data={"username": email, "password": password}
            )
            return response

        registered = await client.post(
            "/auth/register", json={"email": "pia@example.org", "password": DEFAULT_PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        assert hasher.take() == [OFF_LOOP_HASH]

        pia = await login("pia@example.org")
        assert pia.status_code == 200
        assert (await login("pia@example.org", NEW_PASSWORD)).status_code == 400
        assert hasher.take() == [OFF_LOOP_VERIFY, OFF_LOOP_VERIFY]
        # An unknown email costs a hash, as a wrong password costs a verification.
        assert (await login("nobody@example.org")).status_code == 400
        assert hasher.take() == [OFF_LOOP_HASH]
        # Verifying an outdated hash makes the new one in the same call.
        assert (await login("olga@example.org")).status_code == 200
        assert hasher.take() == [OFF_LOOP_VERIFY]

        changed = await client.patch(
            "/users/me", headers=bearer(pia.json()["access_token"]), json={"password": NEW_PASSWORD}
        )
        assert changed.status_code == 200, changed.text
        assert hasher.take() == [OFF_LOOP_HASH]

        root = bearer((await login("root@example.org")).json()["access_token"])
        hasher.take()
        created = await client.post(
            "/users", headers=root, json={"email": "quin@example.org", "password": DEFAULT_PASSWORD}
        )
        assert created.status_code == 201, created.text
        assert hasher.take() == [OFF_LOOP_HASH]

        forgot = await client.post("/auth/forgot-password", json={"email": "pia@example.org"})
        assert forgot.status_code == 202
        assert hasher.take() == [OFF_LOOP_HASH]  # the token's fingerprint of the stored hash
        token = outbox.last_token("pia@example.org", MailKind.RESET_PASSWORD)
        reset = await client.post(
            "/auth/reset-password", json={"token": token, "password": DEFAULT_PASSWORD}
        )
        assert reset.status_code == 200, reset.text
        assert hasher.take() == [OFF_LOOP_VERIFY, OFF_LOOP_HASH]
        assert (await login("pia@example.org")).status_code == 200


@pytest.mark.parametrize(
    ("email", "status_code"),
    [("uma@example.org", 200), ("nobody@example.org", 400)],
    ids=["known email: verifies", "unknown email: hashes"],
)
async def test_the_event_loop_keeps_running_while_a_login_hashes(
    serve_with: ServeWith, make_user: MakeUser, outbox: OutboxMailer, email: str, status_code: int
) -> None:
    # FastAPI Users' default, as in production: 100 ms and more per hash or verification.
    production = PasswordHelper()
    hasher = RecordingPasswordHelper(production)
    await make_user(email="uma@example.org", password_helper=production)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            await anyio.sleep(0.001)

    async with (
        serve_with(config_for_tests(mailer=outbox, password_helper=hasher)) as client,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(tick)
        response = await client.post(
            "/auth/jwt/login", data={"username": email, "password": DEFAULT_PASSWORD}
        )
        tasks.cancel_scope.cancel()
    assert response.status_code == status_code, response.text
    [call] = hasher.calls
    # Had the hashing held the loop, no tick could fall inside it.
    ticks_during_the_hashing = [at for at in ticks if call.started < at < call.ended]
    assert ticks_during_the_hashing, f"the loop stalled for {call.ended - call.started:.3f} s"


async def test_hashes_run_at_most_as_many_at_once_as_configured(
    outbox: OutboxMailer, db_session: AsyncSession
) -> None:
    hasher = RecordingPasswordHelper(fast_password_helper(), delay_seconds=0.05)
    auth = RosterAuth(
        config_for_tests(mailer=outbox, password_helper=hasher, max_concurrent_password_hashes=2)
    )
    manager = auth.user_manager(db_session)
    async with anyio.create_task_group() as tasks:
        for number in range(6):
            tasks.start_soon(manager.hash_password, f"password number {number}")
    assert len(hasher.calls) == 6
    assert hasher.peak_in_flight == 2
