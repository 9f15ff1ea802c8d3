"""Sessions: the cookie backend's stored tokens and the bearer clients' refresh-token families,
in Core statements built once.

Refresh tokens (after the OAuth 2.0 Security Best Current Practice, section 4.14):

- a login starts a family with one token; `secrets.token_urlsafe(32)` (256 bits), stored only
  as its SHA-256 digest;
- a refresh exchanges the family's newest token for a new one, and marks the old one used, in
  one `UPDATE ... WHERE used_at IS NULL ... RETURNING`: of two refreshes of one token, the
  database lets exactly one through (the other waits for the first's row lock, then finds the
  token used). The same statement checks the family (not revoked, not past its lifetime), the
  token's idle timeout and that the user is active;
- presenting a token that was already exchanged is a reuse: whoever holds the newest token,
  the thief or the client, one of them holds a copy, so the whole family is revoked and the
  answer is 401. A client must therefore never send two refreshes of one token at once: the
  loser of such a race revokes the family too, as a thief would;
- a family ends `refresh_token_lifetime_seconds` after its login, whatever its use, or once
  its newest token waited `refresh_token_idle_seconds`.

The access tokens (JWTs) a family issued carry its id as the `sid` claim, so that the session
routes can tell a bearer caller's own session; they stay valid until they expire (15 minutes
by default) when the family is revoked: the current-user path never reads these tables.

Ended rows are deleted at every login (the user's own, one statement) and by
`roster sessions prune` (everyone's).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

from fastapi import Request
from sqlalchemy import (
    CTE,
    DateTime,
    Insert,
    Interval,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from roster_auth.config import AuthConfig
from roster_auth.models import (
    CLIENT_ADDRESS_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    AccessToken,
    RefreshToken,
    RefreshTokenFamily,
    User,
)
from roster_auth.throttle import peer_address

REFRESH_TOKEN_BYTES: Final = 32
# token_urlsafe(32) is 43 characters; room for any token a client may send by mistake (a JWT
# is a 401 like any unknown token), and nothing longer is hashed (422).
REFRESH_TOKEN_MAX_LENGTH: Final = 1024

TOKENS: Final = cast(Table, AccessToken.__table__)
FAMILIES: Final = cast(Table, RefreshTokenFamily.__table__)
REFRESH_TOKENS: Final = cast(Table, RefreshToken.__table__)
USERS: Final = cast(Table, User.__table__)

_TIME = DateTime(timezone=True)


def _time(name: str) -> Any:
    return bindparam(name, type_=_TIME)


def _user_id() -> Any:
    return bindparam("uid", type_=Uuid())


def token_digest(token: str) -> str:
    """The SHA-256 digest (hex) of a token, as stored: enough for a random token of 256 bits,
    which no dictionary holds. The migration that hashed the stored cookie tokens computes the
    same in SQL: `encode(sha256(convert_to(token, 'UTF8')), 'hex')`."""
    # surrogatepass: whatever string a client manages to send, it hashes (and matches nothing).
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


@dataclass(frozen=True)
class Origin:
    """Where a session began, as the request showed it: its `User-Agent` and the client
    address the throttle counts (the socket's peer, or a trusted proxy's forwarded one)."""

    user_agent: str | None
    client_address: str | None

    @classmethod
    def of(cls, request: Request | None) -> Origin:
        if request is None:
            return cls(None, None)
        agent = request.headers.get("user-agent")
        if agent is not None:
            # Shown to the user as text: no control characters (Postgres refuses NUL), bounded.
            agent = "".join(c for c in agent if c.isprintable())[:USER_AGENT_MAX_LENGTH]
        address = peer_address(request)[:CLIENT_ADDRESS_MAX_LENGTH] or None
        return cls(agent or None, address)

    def values(self) -> dict[str, str | None]:
        return {"user_agent": self.user_agent, "client_address": self.client_address}


# A login: a family and its first token, in one statement.
_NEW_FAMILY = (
    insert(FAMILIES)
    .values(
        id=bindparam("fid", type_=Uuid()),
        user_id=_user_id(),
        created_at=_time("now"),
        last_used_at=_time("now"),
        expires_at=_time("expires"),
        user_agent=bindparam("agent", type_=String()),
        client_address=bindparam("address", type_=String()),
    )
    .returning(FAMILIES.c.id)
    .cte("family")
)


def _insert_token(digest: str, family: CTE) -> Insert:
    """A new token (its digest the parameter `digest`) of the family that `family` returns."""
    return (
        insert(REFRESH_TOKENS)
        .from_select(
            ["token_hash", "family_id", "created_at"],
            select(bindparam(digest, type_=String()), family.c.id, _time("now")),
        )
        .add_cte(family)
    )


START_FAMILY: Final = _insert_token("digest", _NEW_FAMILY)

# A refresh: the token marked used, if it is the usable newest of a live family of an active
# user. Postgres re-checks `used_at IS NULL` on a row another transaction changed meanwhile,
# so of concurrent refreshes of one token exactly one gets the row.
ROTATE: Final = (
    update(REFRESH_TOKENS)
    .values(used_at=_time("now"))
    .where(
        REFRESH_TOKENS.c.token_hash == bindparam("digest", type_=String()),
        REFRESH_TOKENS.c.used_at.is_(None),
        REFRESH_TOKENS.c.created_at > _time("idle_before"),
        FAMILIES.c.id == REFRESH_TOKENS.c.family_id,
        FAMILIES.c.revoked_at.is_(None),
        FAMILIES.c.expires_at > _time("now"),
        USERS.c.id == FAMILIES.c.user_id,
        USERS.c.is_active.is_(True),
    )
    .returning(REFRESH_TOKENS.c.family_id, FAMILIES.c.user_id)
)
# Then the family's next token, unless the family was revoked meanwhile (a password change
# committed between the two statements: the family's row lock orders them).
_TOUCHED = (
    update(FAMILIES)
    .values(last_used_at=_time("now"))
    .where(FAMILIES.c.id == bindparam("fid", type_=Uuid()), FAMILIES.c.revoked_at.is_(None))
    .returning(FAMILIES.c.id)
    .cte("touched")
)
ADVANCE: Final = _insert_token("new_digest", _TOUCHED).returning(REFRESH_TOKENS.c.family_id)
# A refresh that found no usable token: if the token was exchanged already, its family is
# revoked (reuse detection).
REVOKE_REUSED: Final = (
    update(FAMILIES)
    .values(revoked_at=func.now())
    .where(
        FAMILIES.c.id == REFRESH_TOKENS.c.family_id,
        REFRESH_TOKENS.c.token_hash == bindparam("digest", type_=String()),
        REFRESH_TOKENS.c.used_at.is_not(None),
        FAMILIES.c.revoked_at.is_(None),
    )
    .returning(FAMILIES.c.id, FAMILIES.c.user_id)
)
# Logout with a refresh token: its family, whichever of its tokens it is, if it is the user's
# (when the request names one).
_OWNER = bindparam("owner_id", type_=Uuid())
REVOKE_FAMILY_OF_TOKEN: Final = (
    update(FAMILIES)
    .values(revoked_at=func.coalesce(FAMILIES.c.revoked_at, func.now()))
    .where(
        FAMILIES.c.id == REFRESH_TOKENS.c.family_id,
        REFRESH_TOKENS.c.token_hash == bindparam("digest", type_=String()),
        _OWNER.is_(None) | (FAMILIES.c.user_id == _OWNER),
    )
    .returning(FAMILIES.c.id, FAMILIES.c.user_id)
)

# A password change, a reset, a deactivation: every cookie session deleted and every family
# revoked, in one statement (in the transaction of the change). A deletion needs nothing: both
# tables' rows go with the user (ON DELETE CASCADE).
_DELETED_COOKIES = delete(TOKENS).where(TOKENS.c.user_id == _user_id()).cte("deleted_cookies")
REVOKE_ALL_OF_USER: Final = (
    update(FAMILIES)
    .values(revoked_at=func.now())
    .where(FAMILIES.c.user_id == _user_id(), FAMILIES.c.revoked_at.is_(None))
    .add_cte(_DELETED_COOKIES)
)


def _cookie_dead() -> Any:
    return TOKENS.c.created_at < _time("cookie_not_before")


def _family_dead() -> Any:
    return (
        FAMILIES.c.revoked_at.is_not(None)
        | (FAMILIES.c.expires_at <= _time("now"))
        | (FAMILIES.c.last_used_at <= _time("idle_before"))
    )


# At every login, the user's own ended sessions, in one statement.
_USERS_DEAD_COOKIES = (
    delete(TOKENS).where(TOKENS.c.user_id == _user_id(), _cookie_dead()).cte("dead_cookies")
)
PURGE_USER: Final = (
    delete(FAMILIES)
    .where(FAMILIES.c.user_id == _user_id(), _family_dead())
    .add_cte(_USERS_DEAD_COOKIES)
)
PRUNE_COOKIES: Final = delete(TOKENS).where(_cookie_dead())
PRUNE_FAMILIES: Final = delete(FAMILIES).where(_family_dead())

# The user's live sessions, newest first, with which one is the caller's (`current`).
_LIVE_COOKIES = select(
    TOKENS.c.id,
    literal("cookie", String()).label("kind"),
    TOKENS.c.created_at,
    TOKENS.c.last_used_at,
    (TOKENS.c.created_at + bindparam("cookie_lifetime", type_=Interval())).label("expires_at"),
    TOKENS.c.user_agent,
    TOKENS.c.client_address,
    func.coalesce(TOKENS.c.token == bindparam("cookie_hash", type_=String()), false()).label(
        "current"
    ),
).where(TOKENS.c.user_id == _user_id(), TOKENS.c.created_at >= _time("cookie_not_before"))
_LIVE_FAMILIES = select(
    FAMILIES.c.id,
    literal("refresh", String()).label("kind"),
    FAMILIES.c.created_at,
    FAMILIES.c.last_used_at,
    func.least(
        FAMILIES.c.expires_at, FAMILIES.c.last_used_at + bindparam("idle", type_=Interval())
    ).label("expires_at"),
    FAMILIES.c.user_agent,
    FAMILIES.c.client_address,
    func.coalesce(FAMILIES.c.id == bindparam("fid", type_=Uuid()), false()).label("current"),
).where(
    FAMILIES.c.user_id == _user_id(),
    FAMILIES.c.revoked_at.is_(None),
    FAMILIES.c.expires_at > _time("now"),
    FAMILIES.c.last_used_at > _time("idle_before"),
)
_LIVE = union_all(_LIVE_COOKIES, _LIVE_FAMILIES).subquery("live")
LIST_SESSIONS: Final = select(_LIVE).order_by(_LIVE.c.created_at.desc(), _LIVE.c.id)
COOKIE_IS_LIVE: Final = select(
    select(TOKENS.c.id)
    .where(
        TOKENS.c.token == bindparam("cookie_hash", type_=String()),
        TOKENS.c.created_at >= _time("cookie_not_before"),
    )
    .exists()
)

_session_id = bindparam("sid", type_=Uuid())
END_COOKIE: Final = (
    delete(TOKENS)
    .where(TOKENS.c.id == _session_id, TOKENS.c.user_id == _user_id())
    .returning(TOKENS.c.id)
)
END_FAMILY: Final = (
    update(FAMILIES)
    .values(revoked_at=func.now())
    .where(
        FAMILIES.c.id == _session_id,
        FAMILIES.c.user_id == _user_id(),
        FAMILIES.c.revoked_at.is_(None),
    )
    .returning(FAMILIES.c.id)
)
# Every session of the user but the one kept (none when both are NULL).
_OTHER_COOKIES = (
    delete(TOKENS)
    .where(
        TOKENS.c.user_id == _user_id(),
        TOKENS.c.token.is_distinct_from(bindparam("keep_cookie_hash", type_=String())),
    )
    .cte("other_cookies")
)
END_OTHERS: Final = (
    update(FAMILIES)
    .values(revoked_at=func.now())
    .where(
        FAMILIES.c.user_id == _user_id(),
        FAMILIES.c.revoked_at.is_(None),
        FAMILIES.c.id.is_distinct_from(bindparam("keep_family_id", type_=Uuid())),
    )
    .add_cte(_OTHER_COOKIES)
)


@dataclass(frozen=True)
class Rotation:
    """A refresh that succeeded: the family and user, and the family's new token."""

    family_id: uuid.UUID
    user_id: uuid.UUID
    refresh_token: str


@dataclass(frozen=True)
class Refused:
    """A refresh that failed; `reused_family_id` is the family revoked for a reuse."""

    reused_family_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


@dataclass(frozen=True)
class CallerSession:
    """Which session a request comes from (at most one of the two): its cookie's token digest
    or the `sid` of its JWT (see `Sessions.caller`)."""

    cookie_hash: str | None = None
    family_id: uuid.UUID | None = None


SessionKind = Literal["cookie", "refresh"]


class Sessions:
    """The session statements, on the configuration's lifetimes and clock."""

    def __init__(self, config: AuthConfig) -> None:
        self.clock = config.clock
        self.refresh_lifetime = timedelta(seconds=config.refresh_token_lifetime_seconds)
        self.refresh_idle = timedelta(seconds=config.refresh_token_idle_seconds)
        self.cookie_lifetime = timedelta(seconds=config.cookie_token_lifetime_seconds)

    def _times(self, now: datetime) -> dict[str, Any]:
        return {
            "now": now,
            "idle_before": now - self.refresh_idle,
            "cookie_not_before": now - self.cookie_lifetime,
        }

    async def start_family(
        self, session: AsyncSession, user_id: uuid.UUID, origin: Origin
    ) -> tuple[uuid.UUID, str]:
        """A new family for a login, after deleting the user's ended sessions: its id and its
        first refresh token."""
        now = self.clock()
        await self.purge_user(session, user_id, now)
        family_id, token = uuid.uuid4(), new_refresh_token()
        await session.execute(
            START_FAMILY,
            {
                "fid": family_id,
                "uid": user_id,
                "now": now,
                "expires": now + self.refresh_lifetime,
                "digest": token_digest(token),
                "agent": origin.user_agent,
                "address": origin.client_address,
            },
        )
        return family_id, token

    async def purge_user(
        self, session: AsyncSession, user_id: uuid.UUID, now: datetime | None = None
    ) -> None:
        """Delete the user's ended cookie sessions and refresh families (one statement)."""
        times = self._times(now or self.clock())
        await session.execute(PURGE_USER, {"uid": user_id, **times})

    async def rotate(self, session: AsyncSession, token: str) -> Rotation | Refused:
        """Exchange a refresh token for the next of its family, or say why not. A refusal for
        a reuse has revoked the family in the session's transaction: commit it."""
        digest = token_digest(token)
        now = self.clock()
        found = (await session.execute(ROTATE, {"digest": digest, **self._times(now)})).first()
        if found is None:
            reused = (await session.execute(REVOKE_REUSED, {"digest": digest})).first()
            if reused is None:
                return Refused()
            return Refused(reused.id, reused.user_id)
        new_token = new_refresh_token()
        advanced = (
            await session.execute(
                ADVANCE,
                {
                    "fid": found.family_id,
                    "new_digest": token_digest(new_token),
                    "now": now,
                },
            )
        ).first()
        if advanced is None:  # revoked between the two statements
            return Refused()
        return Rotation(found.family_id, found.user_id, new_token)

    async def revoke_family_of(
        self, session: AsyncSession, token: str, owner_id: uuid.UUID | None = None
    ) -> tuple[uuid.UUID, uuid.UUID] | None:
        """Revoke the family of any of its tokens (logout), if it is `owner_id`'s when given:
        (family id, user id), or None for a token that is no such family's."""
        parameters = {"digest": token_digest(token), "owner_id": owner_id}
        row = (await session.execute(REVOKE_FAMILY_OF_TOKEN, parameters)).first()
        return None if row is None else (row.id, row.user_id)

    async def caller(
        self,
        session: AsyncSession,
        cookie_token: str | None,
        family_id: uuid.UUID | None,
    ) -> CallerSession:
        """The request's session, as the current-user dependencies chose it: its cookie's when
        the cookie is live, else its JWT's family (`sid`)."""
        if cookie_token is None:
            return CallerSession(family_id=family_id)
        cookie_hash = token_digest(cookie_token)
        if family_id is None:
            return CallerSession(cookie_hash=cookie_hash)
        parameters = {"cookie_hash": cookie_hash, **self._times(self.clock())}
        if await session.scalar(COOKIE_IS_LIVE, parameters):
            return CallerSession(cookie_hash=cookie_hash)
        return CallerSession(family_id=family_id)

    async def live(
        self, session: AsyncSession, user_id: uuid.UUID, caller: CallerSession
    ) -> list[dict[str, Any]]:
        """The user's live sessions, newest first, `current` set on the caller's."""
        rows = await session.execute(
            LIST_SESSIONS,
            {
                "uid": user_id,
                "cookie_hash": caller.cookie_hash,
                "fid": caller.family_id,
                "cookie_lifetime": self.cookie_lifetime,
                "idle": self.refresh_idle,
                **self._times(self.clock()),
            },
        )
        return [dict(row._mapping) for row in rows]

    async def end(self, session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> bool:
        """End one of the user's sessions; False when the user has no such session."""
        parameters = {"uid": user_id, "sid": session_id}
        if (await session.execute(END_COOKIE, parameters)).first() is not None:
            return True
        return (await session.execute(END_FAMILY, parameters)).first() is not None

    async def end_others(
        self, session: AsyncSession, user_id: uuid.UUID, caller: CallerSession
    ) -> None:
        """End every session of the user but the caller's (all of them for another user's)."""
        await session.execute(
            END_OTHERS,
            {
                "uid": user_id,
                "keep_cookie_hash": caller.cookie_hash,
                "keep_family_id": caller.family_id,
            },
        )


async def revoke_all_sessions(session: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> None:
    """Delete the user's cookie sessions and revoke its refresh families, in the caller's
    transaction (one statement)."""
    await session.execute(REVOKE_ALL_OF_USER, {"uid": user_id})


@dataclass(frozen=True)
class Pruned:
    cookie_sessions: int
    refresh_families: int


async def prune_sessions(connection: AsyncConnection, config: AuthConfig) -> Pruned:
    """Delete every ended session: cookie tokens past their lifetime, refresh families revoked,
    past their lifetime or idle (their tokens go with them)."""
    times = Sessions(config)._times(config.clock())
    cookies = await connection.execute(PRUNE_COOKIES, times)
    families = await connection.execute(PRUNE_FAMILIES, times)
    return Pruned(cookies.rowcount, families.rowcount)


__all__ = [
    "REFRESH_TOKEN_MAX_LENGTH",
    "CallerSession",
    "Origin",
    "Pruned",
    "Refused",
    "Rotation",
    "SessionKind",
    "Sessions",
    "new_refresh_token",
    "prune_sessions",
    "revoke_all_sessions",
    "token_digest",
]
