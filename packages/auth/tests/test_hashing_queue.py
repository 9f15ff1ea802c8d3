"""Password traffic never starves the rest: a request waiting for a hashing slot holds no
database connection, and a full queue is refused at once (503 PASSWORD_HASHING_BUSY with
Retry-After) instead of queueing for seconds."""

import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest_asyncio
from fastapi_users.password import PasswordHelperProtocol
from httpx import Response
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import OutboxMailer, RosterAuth
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.testing import (
    DEFAULT_PASSWORD,
    config_for_tests,
    create_user,
    fast_password_helper,
)
from roster_db import create_engine, create_sessionmaker

from .conftest import build_app, serve

Sessionmaker = async_sessionmaker[AsyncSession]


class GatedPasswordHelper:
    """Hashes and verifies only once the gate opens: a stand-in for slow production hashing
    whose timing the test decides."""

    def __init__(self, inner: PasswordHelperProtocol) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self.started = 0

    def _wait(self) -> None:
        with self._lock:
            self.started += 1
        # Bounded, so that a failing test cannot hang the run.
        self.gate.wait(timeout=30)

    def verify_and_update(
        self, plain_password: str, hashed_password: str
    ) -> tuple[bool, str | None]:
        self._wait()
        return self.inner.verify_and_update(plain_password, hashed_password)

    def hash(self, password: str) -> str:
        self._wait()
        return self.inner.hash(password)

    def generate(self) -> str:
        return self.inner.generate()


@pytest_asyncio.fixture
async def small_pool(
    database_url: str, committing_sessionmaker: Sessionmaker
) -> AsyncIterator[Sessionmaker]:
    """Sessions on a pool of two connections that gives up after two seconds; tables are
    emptied after the test (by `committing_sessionmaker`)."""
    engine = create_engine(database_url, pool_size=2, max_overflow=0, pool_timeout=2)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `condition()` holds (the requests under test run in other tasks)."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"not true within {within} s")


def login_form(email: str, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    return {"username": email, "password": password}


async def test_logins_waiting_to_hash_leave_the_pool_to_other_routes(
    small_pool: Sessionmaker, outbox: OutboxMailer
) -> None:
    async with small_pool() as session:
        await create_user(session, email="wendy@example.org")
    hasher = GatedPasswordHelper(fast_password_helper())
    auth = RosterAuth(
        config_for_tests(mailer=outbox, password_helper=hasher, max_concurrent_password_hashes=1)
    )
    answers: list[Response] = []
    async with serve(build_app(auth, small_pool)) as client, anyio.create_task_group() as tasks:

        async def login(email: str) -> None:
            answers.append(await client.post("/auth/jwt/login", data=login_form(email)))

        # One hashes (held at the gate), four wait for the slot (the default queue): more
        # logins than the pool has connections.
        for email in ["wendy@example.org", *(f"nobody{n}@example.org" for n in range(4))]:
            tasks.start_soon(login, email)
        await eventually(lambda: hasher.started == 1)
        await anyio.sleep(0.3)  # time for the others to reach their wait

        with anyio.fail_after(1.5):
            probe = await client.get("/probe/db")
        assert (probe.status_code, probe.json()) == (200, 1)

        hasher.gate.set()
    assert sorted(answer.status_code for answer in answers) == [200, 400, 400, 400, 400]


async def test_a_full_hashing_queue_answers_503_at_once(
    committing_sessionmaker: Sessionmaker, outbox: OutboxMailer
) -> None:
    # Sessions on connections of their own: the two logins finish together once the gate
    # opens, and the successful one writes its session.
    async with committing_sessionmaker() as session:
        await create_user(session, email="xena@example.org")
    hasher = GatedPasswordHelper(fast_password_helper())
    config = config_for_tests(
        mailer=outbox,
        password_helper=hasher,
        max_concurrent_password_hashes=1,
        max_waiting_password_hashes=1,
    )
    auth = RosterAuth(config)
    async with (
        serve(build_app(auth, committing_sessionmaker)) as client,
        anyio.create_task_group() as tasks,
    ):
        answers: list[Response] = []

        async def login(email: str) -> None:
            answers.append(await client.post("/auth/jwt/login", data=login_form(email)))

        # One request at a time, until each is at the gate.
        tasks.start_soon(login, "xena@example.org")
        await eventually(lambda: hasher.started == 1)
        tasks.start_soon(login, "nobody@example.org")
        await eventually(lambda: auth.hashing_queue.admitted == 2)

        for path in ("/auth/jwt/login", "/auth/cookie/login"):
            started = time.perf_counter()
            busy = await client.post(path, data=login_form("xena@example.org"))
            assert time.perf_counter() - started < 1
            assert busy.status_code == 503, busy.text
            assert busy.json() == {"detail": "PASSWORD_HASHING_BUSY"}
            assert busy.headers["retry-after"] == "1"
            assert "set-cookie" not in busy.headers
        assert hasher.started == 1

        hasher.gate.set()
    assert sorted(answer.status_code for answer in answers) == [200, 400]


async def test_64_concurrent_logins_beyond_capacity_are_answered_within_a_second(
    committing_sessionmaker: Sessionmaker, outbox: OutboxMailer
) -> None:
    hasher = GatedPasswordHelper(fast_password_helper())
    config = config_for_tests(mailer=outbox, password_helper=hasher)
    auth = RosterAuth(config)
    capacity = config.max_concurrent_password_hashes + config.max_waiting_password_hashes
    refused: list[float] = []
    admitted: list[int] = []
    async with (
        serve(build_app(auth, committing_sessionmaker)) as client,
        anyio.create_task_group() as tasks,
    ):
        started = time.perf_counter()

        async def login(number: int) -> None:
            answer = await client.post(
                "/auth/jwt/login", data=login_form(f"flood{number}@example.org")
            )
            if answer.status_code == 503:
                assert answer.headers["retry-after"] == "1"
                refused.append(time.perf_counter() - started)
            else:
                admitted.append(answer.status_code)

        for number in range(64):
            tasks.start_soon(login, number)
        # Every login beyond capacity is answered while the admitted ones are still held.
        await eventually(lambda: len(refused) == 64 - capacity, within=10)
        assert max(refused) < 1.0, sorted(refused)[-5:]
        assert auth.hashing_queue.admitted == capacity
        hasher.gate.set()
    assert admitted == [400] * capacity


async def test_hashing_ends_a_read_only_transaction_and_keeps_pending_changes(
    committing_sessionmaker: Sessionmaker, outbox: OutboxMailer
) -> None:
    """The connection goes back to the pool only when nothing would be written early."""
    async with committing_sessionmaker() as session:
        user = await create_user(session, email="zoe@example.org")
    auth = RosterAuth(config_for_tests(mailer=outbox))
    async with committing_sessionmaker() as session:
        manager = auth.user_manager(session)
        reader = await manager.get(user.id)
        assert session.in_transaction()
        await manager.hash_password(DEFAULT_PASSWORD)
        assert not session.in_transaction()

        reader = await manager.get(user.id)
        reader.display_name = "Zoe"  # a change not flushed yet
        await manager.hash_password(DEFAULT_PASSWORD)
        assert session.in_transaction()
        async with committing_sessionmaker() as elsewhere:
            stored = await elsewhere.get(type(user), user.id)
            assert stored is not None
            assert stored.display_name is None
        await session.rollback()


def _own_niceness() -> int:
    # On Linux, PRIO_PROCESS with the thread's id is that thread's nice value alone.
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_hashes_run_below_the_event_loop_s_priority() -> None:
    assert sys.platform == "linux", "the hashing threads are niced on Linux only"
    loop_niceness = _own_niceness()
    queue = PasswordHashingQueue(capacity=1, max_waiting=0, niceness=19)
    seen = [await queue.run(_own_niceness) for _ in range(2)]
    # Both on the queue's one thread, niced when it started; the loop's thread is untouched.
    assert seen == [19, 19]
    assert _own_niceness() == loop_niceness
    plain = PasswordHashingQueue(capacity=1, max_waiting=0, niceness=0)
    assert await plain.run(_own_niceness) == loop_niceness
