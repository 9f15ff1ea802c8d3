"""Throttles on what an anonymous client can repeat: failed logins, registrations and the
requests that send a mail (forgot-password, request-verify-token).

The counters live in Postgres (`throttle_counter`), so every worker and replica shares them,
and they are written on a connection of their own in autocommit, one statement per check or
record: a failed login answers 400 and rolls the request's session back, and its count must
survive that. Subjects are keyed hashes (HMAC-SHA256) of the email and the client address.

Each counter is a fixed window that starts with its first event and ends `*_window_seconds`
later; the next event after the end starts a new one. So every limit is time-boxed, and a
refusal says, in `Retry-After`, when it lifts.

Failed logins, after OWASP's Authentication Cheat Sheet (lock out temporarily, count per
account as well as per address, and do not hand strangers a way to lock a victim out):

- per account and address: `login_failures_per_account_and_address` in the window, then that
  address may not try that account until the window ends;
- per address across accounts: `login_failures_per_address` (password spraying, credential
  stuffing from one address);
- per account across addresses: once `login_failures_per_account` is reached (an attack
  spread over many addresses), every address that has failed on that account itself is
  refused, after one failure already; an address with no failures of its own on it (the
  owner's, usually) may still log in.

A success clears its own address's count on the account. Checks and records are separate
statements around the password verification, so concurrent attempts can each pass the same
check: at most the hashing queue's size per process can overshoot a limit, once.

The client address is `request.client.host`, the socket's peer unless the server is told to
trust a proxy's forwarded header. IPv6 addresses count by their /64 network, which one
client usually holds whole.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from fastapi import Request
from sqlalchemy import case, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from roster_auth.config import Secret, ThrottleConfig, secret_value
from roster_auth.errors import TooManyRequestsError
from roster_auth.models import ThrottleCounter
from roster_db.dependencies import SESSIONMAKER_STATE

logger = logging.getLogger(__name__)


class Scope(enum.StrEnum):
    """What a counter counts, stored in `throttle_counter.scope` and hashed into its subject."""

    LOGIN_ACCOUNT_ADDRESS = "login:account+address"
    LOGIN_ADDRESS = "login:address"
    LOGIN_ACCOUNT = "login:account"
    REGISTRATION_ADDRESS = "register:address"
    REGISTRATION_EMAIL = "register:email"
    MAIL_ADDRESS = "mail:address"
    MAIL_EMAIL = "mail:email"


# Expired rows deleted per purge, so that one purge stays short.
PURGE_BATCH_SIZE: Final = 1000
_IPV6_CLIENT_PREFIX: Final = 64
_SUBJECT_KEY_LABEL: Final = b"roster-auth throttle subject key v1"


def subject_key(secret: Secret) -> bytes:
    """The HMAC key for subjects, derived from an application secret (the access-token
    secret), so that every replica derives the same one and nothing more is configured."""
    return hmac.new(secret_value(secret).encode(), _SUBJECT_KEY_LABEL, hashlib.sha256).digest()


def peer_address(request: Request) -> str:
    """The request's client address: the socket's peer (or what a trusted proxy forwarded,
    when the server is configured to believe it), an IPv4-mapped IPv6 address as IPv4."""
    host = request.client.host if request.client is not None else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket, a test client): as given
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_address(request: Request) -> str:
    """The address the throttle counts for this request: `peer_address`, IPv6 by /64."""
    host = peer_address(request)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a Unix socket, a test client): counted as given
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, _IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def account_name(email: str) -> str:
    """The account an email names, as the user lookup matches it (ignoring letter case)."""
    return email.lower()


@dataclass(frozen=True)
class Count:
    scope: str
    count: int
    window_ends_at: datetime


@dataclass(frozen=True)
class _Subject:
    scope: str
    digest: bytes


class Throttle:
    """Counts and refuses; one per application (`RosterAuth.throttle`). Every method takes
    the request: its client address, and the session maker of its lifespan state, whose
    engine gives the counters a connection of their own."""

    def __init__(self, config: ThrottleConfig, key: bytes) -> None:
        self.config = config
        self._key = key
        self._next_purge_at: datetime | None = None

    async def check_login(self, request: Request, email: str) -> LoginAttempt:
        """Before a password is verified for `email` (a login, or anything that must be
        throttled like one): raises `TooManyRequestsError` when this client may not try
        this account now. Record the outcome on the attempt returned."""
        address = client_address(request)
        account = account_name(email)
        subjects = (
            self._subject(Scope.LOGIN_ACCOUNT_ADDRESS, f"{account}\x00{address}"),
            self._subject(Scope.LOGIN_ADDRESS, address),
            self._subject(Scope.LOGIN_ACCOUNT, account),
        )
        attempt = LoginAttempt(self, request, subjects)
        if not self.config.enabled:
            return attempt
        now = self.config.clock()
        query = select(
            ThrottleCounter.scope, ThrottleCounter.count, ThrottleCounter.window_ends_at
        ).where(
            tuple_(ThrottleCounter.scope, ThrottleCounter.subject).in_(
                [(subject.scope, subject.digest) for subject in subjects]
            ),
            ThrottleCounter.window_ends_at > now,
        )
        async with _counter_connection(request) as connection:
            rows = (await connection.execute(query)).all()
        counts = {scope: Count(scope, count, ends_at) for scope, count, ends_at in rows}
        attempt.failed_before = Scope.LOGIN_ACCOUNT_ADDRESS in counts
        self._refuse_login(counts, now)
        return attempt

    async def check_sign_in(self, request: Request) -> LoginAttempt:
        """Before an identity provider's callback is handled: raises `TooManyRequestsError`
        when this client address has failed too many logins (of any kind) in the window.
        A callback carries no password to guess, so only its address is counted: each
        failure (a bad state, a refused code, an account it may not use) counts as a failed
        login of the address."""
        subjects = (self._subject(Scope.LOGIN_ADDRESS, client_address(request)),)
        attempt = LoginAttempt(self, request, subjects)
        if not self.config.enabled:
            return attempt
        now = self.config.clock()
        query = select(ThrottleCounter.count, ThrottleCounter.window_ends_at).where(
            ThrottleCounter.scope == subjects[0].scope,
            ThrottleCounter.subject == subjects[0].digest,
            ThrottleCounter.window_ends_at > now,
        )
        async with _counter_connection(request) as connection:
            row = (await connection.execute(query)).first()
        if row is not None:
            count, window_ends_at = row
            if count >= self.config.login_failures_per_address:
                self._refuse("sign-in", window_ends_at, now)
        return attempt

    async def count_registration(self, request: Request, email: str) -> None:
        """Count a registration attempt, whatever its outcome; raises
        `TooManyRequestsError` when the address or the email is over its limit."""
        config = self.config
        await self._count_address_and_email(
            request,
            email,
            config.registration_window_seconds,
            (Scope.REGISTRATION_ADDRESS, config.registrations_per_address),
            (Scope.REGISTRATION_EMAIL, config.registrations_per_email),
        )

    async def count_mail_request(self, request: Request, email: str) -> None:
        """Count a request that may send a mail to `email` (forgot-password,
        request-verify-token), whether or not the address has an account, so that a refusal
        reveals nothing; raises `TooManyRequestsError` over a limit."""
        config = self.config
        await self._count_address_and_email(
            request,
            email,
            config.mail_window_seconds,
            (Scope.MAIL_ADDRESS, config.mail_requests_per_address),
            (Scope.MAIL_EMAIL, config.mail_requests_per_email),
        )

    async def _count_address_and_email(
        self,
        request: Request,
        email: str,
        window_seconds: int,
        per_address: tuple[Scope, int],
        per_email: tuple[Scope, int],
    ) -> None:
        """Count one event for the client's address and for the email's account, each in its
        scope and against its limit (a pair of scope and limit), in one window."""
        address_scope, address_limit = per_address
        email_scope, email_limit = per_email
        await self._count_and_refuse(
            request,
            window_seconds,
            {
                self._subject(address_scope, client_address(request)): address_limit,
                self._subject(email_scope, account_name(email)): email_limit,
            },
        )

    def _subject(self, scope: Scope, value: str) -> _Subject:
        # surrogatepass: whatever string a client manages to send, it hashes.
        message = f"{scope}\x00{value}".encode("utf-8", "surrogatepass")
        return _Subject(scope, hmac.new(self._key, message, hashlib.sha256).digest())

    def _refuse_login(self, counts: dict[str, Count], now: datetime) -> None:
        config = self.config
        pair = counts.get(Scope.LOGIN_ACCOUNT_ADDRESS)
        address = counts.get(Scope.LOGIN_ADDRESS)
        account = counts.get(Scope.LOGIN_ACCOUNT)
        # When each refusal that applies lifts; the answer waits for the last of them.
        lifts: list[datetime] = []
        if pair is not None and pair.count >= config.login_failures_per_account_and_address:
            lifts.append(pair.window_ends_at)
        if address is not None and address.count >= config.login_failures_per_address:
            lifts.append(address.window_ends_at)
        if (
            account is not None
            and pair is not None
            and account.count >= config.login_failures_per_account
        ):
            lifts.append(min(account.window_ends_at, pair.window_ends_at))
        if lifts:
            self._refuse("login", max(lifts), now)

    def _refuse(self, what: str, lifts_at: datetime, now: datetime) -> None:
        logger.info("throttled: %s", what)
        raise TooManyRequestsError((lifts_at - now).total_seconds())

    async def _record(
        self,
        request: Request,
        window_seconds: int,
        subjects: Sequence[_Subject],
    ) -> list[Count]:
        """Add one event to each subject's counter (a new window where the last one ended),
        in one statement; the counts after it."""
        now = self.config.clock()
        window_ends_at = now + timedelta(seconds=window_seconds)
        values = insert(ThrottleCounter).values(
            [
                {
                    "scope": subject.scope,
                    "subject": subject.digest,
                    "count": 1,
                    "window_ends_at": window_ends_at,
                }
                for subject in subjects
            ]
        )
        expired = ThrottleCounter.window_ends_at <= now
        statement = values.on_conflict_do_update(
            index_elements=[ThrottleCounter.scope, ThrottleCounter.subject],
            set_={
                "count": case((expired, 1), else_=ThrottleCounter.count + 1),
                "window_ends_at": case(
                    (expired, values.excluded.window_ends_at), else_=ThrottleCounter.window_ends_at
                ),
            },
        ).returning(ThrottleCounter.scope, ThrottleCounter.count, ThrottleCounter.window_ends_at)
        async with _counter_connection(request) as connection:
            rows = (await connection.execute(statement)).all()
            if self._purge_due(now):
                await connection.execute(_purge_statement(now))
        return [Count(scope, count, ends_at) for scope, count, ends_at in rows]

    async def _count_and_refuse(
        self, request: Request, window_seconds: int, limits: dict[_Subject, int]
    ) -> None:
        if not self.config.enabled:
            return
        counts = await self._record(request, window_seconds, list(limits))
        limit_of = {subject.scope: limit for subject, limit in limits.items()}
        over = [count for count in counts if count.count > limit_of[count.scope]]
        if over:
            self._refuse(
                over[0].scope.partition(":")[0],
                max(count.window_ends_at for count in over),
                self.config.clock(),
            )

    async def _clear(self, request: Request, subject: _Subject) -> None:
        async with _counter_connection(request) as connection:
            await connection.execute(
                delete(ThrottleCounter).where(
                    ThrottleCounter.scope == subject.scope,
                    ThrottleCounter.subject == subject.digest,
                )
            )

    def _purge_due(self, now: datetime) -> bool:
        # Per process, and decided before the purge is awaited, so concurrent requests of
        # one process do not purge together.
        if self._next_purge_at is not None and now < self._next_purge_at:
            return False
        self._next_purge_at = now + timedelta(seconds=self.config.purge_interval_seconds)
        return True


class LoginAttempt:
    """One password verification that `Throttle.check_login` let through: say how it went."""

    def __init__(
        self, throttle: Throttle, request: Request, subjects: tuple[_Subject, ...]
    ) -> None:
        self._throttle = throttle
        self._request = request
        self._subjects = subjects
        # Whether this address had failed on this account within the window.
        self.failed_before = False

    async def failed(self) -> None:
        """The password was wrong (or the account unknown or inactive): count it for each
        subject (the account and address, the address, and the account; a provider's
        callback: the address)."""
        throttle = self._throttle
        if throttle.config.enabled:
            await throttle._record(
                self._request, throttle.config.login_window_seconds, self._subjects
            )

    async def succeeded(self) -> None:
        """The password was right: this address's failures on this account are forgotten
        (the address's and the account's totals stay)."""
        if self._throttle.config.enabled and self.failed_before:
            await self._throttle._clear(self._request, self._subjects[0])


def _purge_statement(now: datetime) -> Any:
    expired = (
        select(ThrottleCounter.scope, ThrottleCounter.subject)
        .where(ThrottleCounter.window_ends_at <= now)
        .order_by(ThrottleCounter.window_ends_at)
        .limit(PURGE_BATCH_SIZE)
        # Rows another transaction is counting on are left for the next purge.
        .with_for_update(skip_locked=True)
    )
    return delete(ThrottleCounter).where(
        tuple_(ThrottleCounter.scope, ThrottleCounter.subject).in_(expired)
    )


@asynccontextmanager
async def _counter_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection for the counters, outside the request's own transaction: from the
    engine of the request's session maker, in autocommit (one round trip a statement, and no
    rollback of the request undoes it). A session maker bound to a connection already in a
    transaction (tests that roll back an outer one) gets a savepoint on it instead."""
    sessionmaker: async_sessionmaker[Any] = getattr(request.state, SESSIONMAKER_STATE)
    # What the request's sessions are bound to; a session connects only when it is used.
    async with sessionmaker() as session:
        bind = session.bind
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")
    elif isinstance(bind, AsyncConnection):
        async with bind.begin_nested():
            yield bind
    else:
        raise TypeError(f"the session maker is bound to {bind!r}, not an engine or connection")


__all__ = [
    "Count",
    "LoginAttempt",
    "Scope",
    "Throttle",
    "client_address",
    "subject_key",
]
