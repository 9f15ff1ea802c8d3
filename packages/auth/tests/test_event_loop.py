"""What runs on the event loop and what does not: a request must never wait for a thread it
does not need, and no request may hold the loop while a password is hashed."""

import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
import pytest
from fastapi_users.password import PasswordHelper, PasswordHelperProtocol
from httpx import AsyncClient, Response
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import MailKind, OutboxMailer, PasswordPolicy, RosterAuth, User
from roster_auth.password import MAX_RAW_PASSWORD_LENGTH
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

        as_pia = bearer(pia.json()["access_token"])
        wrong = await client.patch(
            "/users/me", headers=as_pia, json={"password": NEW_PASSWORD, "current_password": "x"}
        )
        assert wrong.status_code == 400, wrong.text
        assert hasher.take() == [OFF_LOOP_VERIFY]
        changed = await client.patch(
            "/users/me",
            headers=as_pia,
            json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
        )
        assert changed.status_code == 200, changed.text
        assert hasher.take() == [OFF_LOOP_VERIFY, OFF_LOOP_HASH]

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


@dataclass(frozen=True)
class PolicyCall:
    on_event_loop: bool
    started: float
    ended: float


@dataclass(frozen=True, kw_only=True)
class RecordingPasswordPolicy(PasswordPolicy):
    """The default policy, noting when each full check (normalising, context words, zxcvbn)
    ran and whether on the event loop's thread. Built on that thread, as the tests run there.
    `delay_seconds` stretches each check."""

    delay_seconds: float = 0.0
    event_loop_thread: int = field(default_factory=threading.get_ident)
    calls: list[PolicyCall] = field(default_factory=list, compare=False)

    def reason_to_reject(self, password: str, **words: Any) -> str | None:
        started = time.perf_counter()
        time.sleep(self.delay_seconds)
        try:
            return super().reason_to_reject(password, **words)
        finally:
            on_event_loop = threading.get_ident() == self.event_loop_thread
            self.calls.append(PolicyCall(on_event_loop, started, time.perf_counter()))


# The longest password the schemas admit, as long as any policy allows once normalised:
# 128 Greek letters with three marks each (such as U+1F82), arriving decomposed, which is
# 512 code points.
CONTRACTED = [
    char
    for char in map(chr, range(0x1F00, 0x2000))
    if unicodedata.normalize("NFKC", char) == char and len(unicodedata.normalize("NFD", char)) == 4
]
MAXIMAL_PASSWORD = unicodedata.normalize(
    "NFD", "".join(CONTRACTED + CONTRACTED[::-1] + CONTRACTED * 2)[: MAX_RAW_PASSWORD_LENGTH // 4]
)
TOO_LONG_PASSWORD = "ﷺ" * (MAX_RAW_PASSWORD_LENGTH + 1)


async def test_a_password_too_long_to_be_acceptable_is_refused_before_any_work(
    serve_with: ServeWith, make_user: MakeUser, outbox: OutboxMailer, auth: RosterAuth
) -> None:
    # 1 MiB of U+FDFA once took half a second of the event loop per registration (NFKC
    # makes it 18 times longer); any input longer than can be acceptable is a 422 now.
    hasher = RecordingPasswordHelper(fast_password_helper())
    policy = RecordingPasswordPolicy()
    root = await make_user(email="root@example.org", is_superuser=True)
    vera = await make_user(email="vera@example.org")
    config = config_for_tests(mailer=outbox, password_helper=hasher, password_policy=policy)
    async with serve_with(config) as client:
        as_root = await bearer_headers(auth, root)
        as_vera = await bearer_headers(auth, vera)
        too_long = {"password": TOO_LONG_PASSWORD}
        requests: list[tuple[str, str, dict[str, str], dict[str, Any], list[str]]] = [
            ("POST", "/auth/register", {}, {"email": "wes@example.org", **too_long}, ["password"]),
            ("POST", "/users", as_root, {"email": "xan@example.org", **too_long}, ["password"]),
            ("PATCH", f"/users/{vera.id}", as_root, too_long, ["password"]),
            (
                "PATCH",
                "/users/me",
                as_vera,
                {"current_password": DEFAULT_PASSWORD, **too_long},
                ["password"],
            ),
            (
                "PATCH",
                "/users/me",
                as_vera,
                {"email": "vera@new.org", "current_password": TOO_LONG_PASSWORD},
                ["current_password"],
            ),
        ]
        for method, path, headers, body, refused_fields in requests:
            response = await client.request(method, path, headers=headers, json=body)
            where = f"{method} {path}"
            assert response.status_code == 422, f"{where}: {response.text[:200]}"
            errors = response.json()["detail"]
            assert [error["loc"][-1] for error in errors] == refused_fields, where
            assert [error["type"] for error in errors] == ["string_too_long"], where
    assert hasher.calls == []
    assert policy.calls == []
    assert outbox.messages == []


async def test_the_event_loop_keeps_running_while_a_maximal_password_is_checked(
    serve_with: ServeWith, outbox: OutboxMailer
) -> None:
    # The check (zxcvbn: about 10 ms of Python holding the GIL) is stretched by a sleep so
    # that the loop's turns during it can be counted; on the loop, there would be none.
    policy = RecordingPasswordPolicy(delay_seconds=0.05)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            await anyio.sleep(0.001)

    config = config_for_tests(mailer=outbox, password_policy=policy)
    async with serve_with(config) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        response = await client.post(
            "/auth/register", json={"email": "yara@example.org", "password": MAXIMAL_PASSWORD}
        )
        tasks.cancel_scope.cancel()
    assert len(MAXIMAL_PASSWORD) == MAX_RAW_PASSWORD_LENGTH
    assert response.status_code == 201, response.text
    [call] = policy.calls
    assert not call.on_event_loop
    ticks_during_the_check = [at for at in ticks if call.started < at < call.ended]
    assert ticks_during_the_check, f"the loop stalled for {call.ended - call.started:.3f} s"


async def test_every_password_check_runs_off_the_event_loop(
    serve_with: ServeWith, make_user: MakeUser, outbox: OutboxMailer, auth: RosterAuth
) -> None:
    policy = RecordingPasswordPolicy()
    root = await make_user(email="root@example.org", is_superuser=True)
    zoe = await make_user(email="zoe@example.org")
    async with serve_with(config_for_tests(mailer=outbox, password_policy=policy)) as client:
        as_root = await bearer_headers(auth, root)
        as_zoe = await bearer_headers(auth, zoe)
        answers = [
            await client.post(
                "/auth/register", json={"email": "ada@example.org", "password": DEFAULT_PASSWORD}
            ),
            await client.post(
                "/users", headers=as_root, json={"email": "bo@example.org", "password": "weak"}
            ),
            await client.patch(
                "/users/me",
                headers=as_zoe,
                json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
            ),
            await client.patch(
                f"/users/{zoe.id}", headers=as_root, json={"password": DEFAULT_PASSWORD}
            ),
        ]
        await client.post("/auth/forgot-password", json={"email": zoe.email})
        token = outbox.last_token(zoe.email, MailKind.RESET_PASSWORD)
        answers.append(
            await client.post(
                "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
            )
        )
    assert [answer.status_code for answer in answers] == [201, 400, 200, 200, 200]
    assert [call.on_event_loop for call in policy.calls] == [False] * 5
