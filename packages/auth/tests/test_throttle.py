"""The throttle on real Postgres: failed logins per account and address, per address and per
account; registrations; mail requests. Counters are shared by replicas, survive the failed
request's rollback, are time-boxed, and never let strangers lock a victim out."""

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import AuthConfig, OutboxMailer, RosterAuth, ThrottleConfig
from roster_auth.models import ThrottleCounter
from roster_auth.testing import DEFAULT_PASSWORD, bearer_headers, config_for_tests, create_user
from roster_auth.throttle import client_address

from .conftest import BASE_URL, build_app

Sessionmaker = async_sessionmaker[AsyncSession]
WRONG_PASSWORD = "not-the-right-password-at-all"
VICTIM = "vera@example.org"
ATTACKER = "203.0.113.7"
OWNER_ADDRESS = "198.51.100.20"


class Clock:
    """The throttle's time, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Replica:
    """One running application; `client(address)` speaks to it from that client address."""

    def __init__(self, app: Any, stack: AsyncExitStack) -> None:
        self._app = app
        self._stack = stack

    async def client(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self._app, client=(address, 40000))
        return await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        )


@asynccontextmanager
async def running(auth: RosterAuth, sessionmaker: Sessionmaker) -> AsyncIterator[Replica]:
    async with AsyncExitStack() as stack:
        manager = await stack.enter_async_context(LifespanManager(build_app(auth, sessionmaker)))
        yield Replica(manager.app, stack)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttled_config(outbox: OutboxMailer, clock: Clock) -> AuthConfig:
    return config_for_tests(mailer=outbox, throttle=ThrottleConfig(clock=clock))


async def login(
    client: httpx.AsyncClient, email: str, password: str, backend: str = "jwt"
) -> httpx.Response:
    return await client.post(
        f"/auth/{backend}/login", data={"username": email, "password": password}
    )


def assert_throttled(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": "TOO_MANY_REQUESTS"}
    assert response.headers["retry-after"] == str(retry_after)


async def test_failures_from_one_address_on_one_account_are_limited_for_a_while(
    throttled_config: AuthConfig,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
    clock: Clock,
) -> None:
    await make_user(email=VICTIM)
    limit = throttled_config.throttle.login_failures_per_account_and_address
    window = throttled_config.throttle.login_window_seconds
    async with running(RosterAuth(throttled_config), db_sessionmaker) as replica:
        attacker = await replica.client(ATTACKER)
        for _ in range(limit):
            assert (await login(attacker, VICTIM, WRONG_PASSWORD)).status_code == 400
        clock.advance(60)
        # Refused before the password is looked at, the right one too, on both backends.
        assert_throttled(await login(attacker, VICTIM, DEFAULT_PASSWORD), window - 60)
        assert_throttled(
            await login(attacker, "VERA@example.org", DEFAULT_PASSWORD, "cookie"), window - 60
        )

        owner = await replica.client(OWNER_ADDRESS)
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD)).status_code == 200

        clock.advance(window - 60)
        assert (await login(attacker, VICTIM, DEFAULT_PASSWORD)).status_code == 200


async def test_replicas_share_the_counts_which_outlive_the_failed_request(
    throttled_config: AuthConfig, committing_sessionmaker: Sessionmaker
) -> None:
    """Two applications (two `RosterAuth`, as two replicas or workers) on sessions that really
    commit: each failed login rolls its request back, and the count stays."""
    async with committing_sessionmaker() as session:
        await create_user(session, email=VICTIM)
    async with (
        running(RosterAuth(throttled_config), committing_sessionmaker) as first,
        running(RosterAuth(throttled_config), committing_sessionmaker) as second,
    ):
        clients = [await first.client(ATTACKER), await second.client(ATTACKER)]
        limit = throttled_config.throttle.login_failures_per_account_and_address
        for attempt in range(limit):
            response = await login(clients[attempt % 2], VICTIM, WRONG_PASSWORD)
            assert response.status_code == 400
        for client in clients:
            assert (await login(client, VICTIM, DEFAULT_PASSWORD)).status_code == 429
    async with committing_sessionmaker() as session:
        count = await session.scalar(
            select(ThrottleCounter.count).where(ThrottleCounter.scope == "login:account+address")
        )
    assert count == limit


async def test_strangers_failing_from_many_addresses_cannot_lock_the_owner_out(
    throttled_config: AuthConfig,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
    clock: Clock,
) -> None:
    await make_user(email=VICTIM)
    per_account = throttled_config.throttle.login_failures_per_account
    window = throttled_config.throttle.login_window_seconds
    async with running(RosterAuth(throttled_config), db_sessionmaker) as replica:
        strangers = [await replica.client(f"203.0.113.{n}") for n in range(1, per_account + 1)]
        for stranger in strangers:
            assert (await login(stranger, VICTIM, WRONG_PASSWORD)).status_code == 400

        # The account is under attack: every address that failed on it is refused now...
        for stranger in strangers:
            assert_throttled(await login(stranger, VICTIM, WRONG_PASSWORD), window)
        # ...a new one gets one try, no more...
        newcomer = await replica.client("192.0.2.99")
        assert (await login(newcomer, VICTIM, WRONG_PASSWORD)).status_code == 400
        assert (await login(newcomer, VICTIM, DEFAULT_PASSWORD)).status_code == 429
        # ...and the owner, from an address with no failures, logs in on both backends.
        owner = await replica.client(OWNER_ADDRESS)
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD)).status_code == 200
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD, "cookie")).status_code == 204
        # Other accounts are untouched, from the strangers' addresses too.
        assert (await login(strangers[0], "other@example.org", WRONG_PASSWORD)).status_code == 400

        clock.advance(window)
        assert (await login(strangers[0], VICTIM, WRONG_PASSWORD)).status_code == 400


async def test_failures_from_one_address_across_accounts_are_limited(
    outbox: OutboxMailer, clock: Clock, db_sessionmaker: Sessionmaker
) -> None:
    config = config_for_tests(
        mailer=outbox, throttle=ThrottleConfig(clock=clock, login_failures_per_address=4)
    )
    async with running(RosterAuth(config), db_sessionmaker) as replica:
        sprayer = await replica.client(ATTACKER)
        for number in range(4):
            response = await login(sprayer, f"user{number}@example.org", WRONG_PASSWORD)
            assert response.status_code == 400
        assert_throttled(await login(sprayer, "user9@example.org", WRONG_PASSWORD), 900)
        neighbour = await replica.client("203.0.113.8")
        assert (await login(neighbour, "user9@example.org", WRONG_PASSWORD)).status_code == 400


async def test_a_success_forgets_the_address_failures_on_the_account(
    throttled_config: AuthConfig,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
) -> None:
    await make_user(email=VICTIM)
    limit = throttled_config.throttle.login_failures_per_account_and_address
    async with running(RosterAuth(throttled_config), db_sessionmaker) as replica:
        owner = await replica.client(OWNER_ADDRESS)
        for _ in range(limit - 1):
            assert (await login(owner, VICTIM, WRONG_PASSWORD)).status_code == 400
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD)).status_code == 200
        for _ in range(limit):
            assert (await login(owner, VICTIM, WRONG_PASSWORD)).status_code == 400
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD)).status_code == 429


async def test_logins_below_the_limits_are_unaffected(
    throttled_config: AuthConfig,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
) -> None:
    await make_user(email=VICTIM)
    async with running(RosterAuth(throttled_config), db_sessionmaker) as replica:
        owner = await replica.client(OWNER_ADDRESS)
        # Successes are not counted: as many as one likes.
        for _ in range(3 * throttled_config.throttle.login_failures_per_account_and_address):
            response = await login(owner, VICTIM, DEFAULT_PASSWORD)
            assert response.status_code == 200, response.text
            assert response.json()["token_type"] == "bearer"
    async with db_sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ThrottleCounter)) == 0


async def test_every_registration_attempt_counts_per_address_and_per_email(
    outbox: OutboxMailer, clock: Clock, db_sessionmaker: Sessionmaker
) -> None:
    throttle = ThrottleConfig(clock=clock, registrations_per_address=4, registrations_per_email=2)
    config = config_for_tests(mailer=outbox, throttle=throttle)
    window = throttle.registration_window_seconds
    async with running(RosterAuth(config), db_sessionmaker) as replica:
        client = await replica.client(ATTACKER)

        async def register(email: str, password: str = DEFAULT_PASSWORD) -> httpx.Response:
            return await client.post("/auth/register", json={"email": email, "password": password})

        assert (await register("nina@example.org")).status_code == 201
        # A refusal (taken, in any letter case) counts too.
        assert (await register("NINA@example.org")).status_code == 400
        assert_throttled(await register("nina@example.org", "short"), window)

        assert (await register("omar@example.org")).status_code == 201
        assert_throttled(await register("paul@example.org"), window)  # the address's limit

        elsewhere = await replica.client("203.0.113.9")
        response = await elsewhere.post(
            "/auth/register", json={"email": "paul@example.org", "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 201
        clock.advance(window)
        assert (await register("quinn@example.org")).status_code == 201


async def test_mail_requests_count_per_email_whether_or_not_it_has_an_account(
    outbox: OutboxMailer,
    clock: Clock,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
) -> None:
    await make_user(email=VICTIM, is_verified=False)
    throttle = ThrottleConfig(clock=clock, mail_requests_per_email=3, mail_requests_per_address=8)
    config = config_for_tests(mailer=outbox, throttle=throttle)
    window = throttle.mail_window_seconds
    async with running(RosterAuth(config), db_sessionmaker) as replica:
        client = await replica.client(ATTACKER)

        async def ask(path: str, email: str) -> httpx.Response:
            return await client.post(f"/auth/{path}", json={"email": email})

        for email in (VICTIM, "nobody@example.org"):
            assert (await ask("forgot-password", email)).status_code == 202
            assert (await ask("request-verify-token", email)).status_code == 202
            assert (await ask("forgot-password", email)).status_code == 202
            # The same answer for an account and for no account.
            assert_throttled(await ask("request-verify-token", email), window)
        # Three mails reached the victim, no more.
        assert len([m for m in outbox.messages if m.to == VICTIM]) == 3

        # Eight requests from this address, refused ones included: its limit for any email.
        assert_throttled(await ask("forgot-password", "third@example.org"), window)
        other = await replica.client("203.0.113.10")
        response = await other.post("/auth/forgot-password", json={"email": "third@example.org"})
        assert response.status_code == 202

        clock.advance(window)
        assert (await ask("forgot-password", VICTIM)).status_code == 202


async def test_counters_hold_keyed_hashes_and_expired_ones_are_purged(
    throttled_config: AuthConfig, db_sessionmaker: Sessionmaker, clock: Clock
) -> None:
    async with running(RosterAuth(throttled_config), db_sessionmaker) as replica:
        client = await replica.client(ATTACKER)
        assert (await login(client, VICTIM, WRONG_PASSWORD)).status_code == 400
        async with db_sessionmaker() as session:
            rows = (
                await session.execute(select(ThrottleCounter.scope, ThrottleCounter.subject))
            ).all()
        assert {scope for scope, _ in rows} == {
            "login:account+address",
            "login:address",
            "login:account",
        }
        for _, subject in rows:
            assert len(subject) == 32
            assert VICTIM.encode() not in subject
            assert ATTACKER.encode() not in subject
            # Not a plain (unkeyed) hash of the values either.
            assert subject not in {
                hashlib.sha256(value.encode()).digest() for value in (VICTIM, ATTACKER)
            }

        clock.advance(throttled_config.throttle.login_window_seconds + 1)
        assert (await login(client, "someone@example.org", WRONG_PASSWORD)).status_code == 400
        async with db_sessionmaker() as session:
            scopes = (await session.execute(select(ThrottleCounter.scope))).scalars().all()
        # The victim's expired counters are gone; the address's was counted again.
        assert sorted(scopes) == ["login:account", "login:account+address", "login:address"]
        async with db_sessionmaker() as session:
            total = await session.scalar(select(func.sum(ThrottleCounter.count)))
        assert total == 3


async def test_a_disabled_throttle_counts_nothing(
    outbox: OutboxMailer,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
) -> None:
    await make_user(email=VICTIM)
    config = config_for_tests(mailer=outbox, throttle=ThrottleConfig(enabled=False))
    async with running(RosterAuth(config), db_sessionmaker) as replica:
        client = await replica.client(ATTACKER)
        for _ in range(2 * config.throttle.login_failures_per_account_and_address):
            assert (await login(client, VICTIM, WRONG_PASSWORD)).status_code == 400
        assert (await login(client, VICTIM, DEFAULT_PASSWORD)).status_code == 200
        for _ in range(config.throttle.mail_requests_per_email + 1):
            response = await client.post("/auth/forgot-password", json={"email": VICTIM})
            assert response.status_code == 202
    async with db_sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ThrottleCounter)) == 0


def test_throttle_limits_must_be_positive(throttled_config: AuthConfig) -> None:
    with pytest.raises(ValueError, match="login_window_seconds"):
        replace(throttled_config.throttle, login_window_seconds=0)


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
    ],
    ids=["IPv4", "IPv6", "same /64", "IPv4-mapped", "not an address"],
)
def test_client_addresses_are_counted_by_what_one_client_holds(host: str, counted_as: str) -> None:
    request = Request({"type": "http", "client": (host, 40000), "headers": []})
    assert client_address(request) == counted_as


async def test_wrong_current_passwords_are_throttled_like_failed_logins(
    throttled_config: AuthConfig,
    db_sessionmaker: Sessionmaker,
    make_user: Callable[..., Awaitable[Any]],
    clock: Clock,
) -> None:
    """A stolen token cannot guess the current password at leisure: wrong ones on
    `PATCH /users/me` count with the login failures of that account and address."""
    auth = RosterAuth(throttled_config)
    victim = await make_user(email=VICTIM)
    headers = await bearer_headers(auth, victim)
    limit = throttled_config.throttle.login_failures_per_account_and_address
    window = throttled_config.throttle.login_window_seconds
    change = {"display_name": "Taken Over", "email": "thief@example.net"}
    async with running(auth, db_sessionmaker) as replica:
        thief = await replica.client(ATTACKER)
        for _ in range(limit):
            response = await thief.patch(
                "/users/me", headers=headers, json={**change, "current_password": WRONG_PASSWORD}
            )
            assert response.status_code == 400, response.text
            assert response.json()["detail"]["code"] == "UPDATE_USER_BAD_CURRENT_PASSWORD"
        # Now even the right password is refused from that address, and so is a login.
        right = {**change, "current_password": DEFAULT_PASSWORD}
        assert_throttled(await thief.patch("/users/me", headers=headers, json=right), window)
        assert_throttled(await login(thief, VICTIM, DEFAULT_PASSWORD), window)
        # The owner, elsewhere, is not locked out.
        owner = await replica.client(OWNER_ADDRESS)
        assert (await login(owner, VICTIM, DEFAULT_PASSWORD)).status_code == 200
        me = await owner.get("/users/me", headers=headers)
        assert me.json()["email"] == VICTIM
