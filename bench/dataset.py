"""The benchmark's data, loaded in a second or two with COPY: groups of the sizes asked for (10,
100, 1,000 and 10,000 members by default), users with a JWT and a database (cookie) token, and a
group for the write path.

Who is who:
- user 0, the "owner", owns every group and is the member of all of them: the requests of the
  read scenarios are made as this user;
- user `i` (1 <= i < largest size) is a plain member of every group larger than `i`;
- the "loner" belongs to no group (its `/users/me` is compared with the owner's);
- the write candidates are split in two pools (warm-up and measurement); in each pool the last
  `write_lag` users are members of the write group to start with, the others are not (see
  `bench.scenarios.member_toggle_plan`);
- refresh tokens, two pools (warm-up and measurement) of `refresh_pool_size` live sessions
  spread over the users, one unused token each: a refresh uses its token up, so each request
  of the `refresh` scenario presents a token of its own.

Every user has the same password; it is hashed once, with roster-auth's password helper.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from fastapi_users.jwt import generate_jwt
from fastapi_users.password import PasswordHelper

from roster_auth.backends import JWT_AUDIENCE
from roster_auth.password import NormalizingPasswordHelper
from roster_db import encode_cursor_position

# The page size of every listing scenario.
PAGE_SIZE = 50

# Long enough for the run, whatever the service's own (short) lifetime for the tokens it issues.
TOKEN_LIFETIME_S = 3 * 3600


@dataclass(frozen=True)
class DatasetSpec:
    group_sizes: tuple[int, ...]
    write_lag: int  # how far behind its addition a member is removed, in requests
    write_pool_size: int  # candidates per pool

    @property
    def refresh_pool_size(self) -> int:
        """Refresh tokens per pool: each is used once, so as many as a run may send (four
        write pools: 33 thousand in a full run, ten times what one worker refreshes in it)."""
        return 4 * self.write_pool_size

    def __post_init__(self) -> None:
        if not self.group_sizes or min(self.group_sizes) < 1:
            raise ValueError("every group needs at least one member (its owner)")
        if self.write_pool_size < 2 * self.write_lag:
            raise ValueError("a write pool needs at least twice write_lag users")


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    password: str
    owner_id: uuid.UUID
    owner_email: str
    loner_id: uuid.UUID
    group_ids: dict[int, int]  # group size -> group id
    write_group_id: int
    write_pools: tuple[tuple[uuid.UUID, ...], ...]
    owner_jwt: str
    loner_jwt: str
    owner_cookie_token: str
    # The largest group's deep page by cursor: the `after` of the member just before it.
    deep_cursor: str | None
    refresh_pools: tuple[tuple[str, ...], ...]
    user_count: int
    membership_count: int


def user_email(index: int) -> str:
    return f"user{index}@bench.example.com"


def _membership_records(
    group_id: int, user_ids: list[uuid.UUID], start: datetime
) -> list[tuple[int, uuid.UUID, str, datetime]]:
    # Distinct join times keep the listing order (joined_at) deterministic.
    return [
        (
            group_id,
            user_id,
            "owner" if position == 0 else "member",
            start + timedelta(milliseconds=position),
        )
        for position, user_id in enumerate(user_ids)
    ]


def _digest(token: str) -> str:
    """As roster-auth stores a token (roster_auth.sessions.token_digest)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def _load_refresh_tokens(
    connection: asyncpg.Connection, spec: DatasetSpec, user_ids: list[uuid.UUID], now: datetime
) -> tuple[tuple[str, ...], ...]:
    """Two pools of live refresh-token families, one unused token each, spread over the users."""
    count = 2 * spec.refresh_pool_size
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    family_ids = [uuid.uuid4() for _ in range(count)]
    expires_at = now + timedelta(seconds=TOKEN_LIFETIME_S)
    await connection.copy_records_to_table(
        "refresh_token_family",
        columns=["id", "user_id", "created_at", "last_used_at", "expires_at"],
        records=[
            (family_id, user_ids[index % len(user_ids)], now, now, expires_at)
            for index, family_id in enumerate(family_ids)
        ],
    )
    await connection.copy_records_to_table(
        "refresh_token",
        columns=["token_hash", "family_id", "created_at"],
        records=[
            (_digest(token), family_id, now)
            for token, family_id in zip(tokens, family_ids, strict=True)
        ],
    )
    size = spec.refresh_pool_size
    return tuple(tokens[:size]), tuple(tokens[size:])


async def load(connection: asyncpg.Connection, spec: DatasetSpec, jwt_secret: str) -> Dataset:
    """Fill an empty, migrated database; return what the scenarios need to know about it."""
    password = secrets.token_urlsafe(24)
    hashed_password = NormalizingPasswordHelper(PasswordHelper()).hash(password)
    now = datetime.now(UTC)
    largest = max(spec.group_sizes)
    pools = 2
    user_count = largest + 1 + pools * spec.write_pool_size
    user_ids = [uuid.uuid4() for _ in range(user_count)]
    owner_id, loner_id = user_ids[0], user_ids[largest]
    write_pools = tuple(
        tuple(user_ids[largest + 1 + pool * spec.write_pool_size :][: spec.write_pool_size])
        for pool in range(pools)
    )

    group_ids: dict[int, int] = {}
    memberships: list[tuple[int, uuid.UUID, str, datetime]] = []
    async with connection.transaction():
        await connection.copy_records_to_table(
            "user",
            columns=[
                "id",
                "email",
                "hashed_password",
                "is_active",
                "is_superuser",
                "is_verified",
                "display_name",
                "created_at",
            ],
            records=[
                (
                    user_id,
                    user_email(index),
                    hashed_password,
                    True,
                    False,
                    True,
                    f"Bench User {index}",
                    now,
                )
                for index, user_id in enumerate(user_ids)
            ],
        )
        for size in sorted(set(spec.group_sizes)):
            group_ids[size] = await connection.fetchval(
                "INSERT INTO user_group (name, description) VALUES ($1, $2) RETURNING id",
                f"bench {size}",
                f"A group of {size} members",
            )
            memberships += _membership_records(group_ids[size], user_ids[:size], now)
        write_group_id = await connection.fetchval(
            "INSERT INTO user_group (name) VALUES ('bench writes') RETURNING id"
        )
        preset = [user_id for pool in write_pools for user_id in pool[-spec.write_lag :]]
        memberships += _membership_records(write_group_id, [owner_id, *preset], now)
        await connection.copy_records_to_table(
            "membership",
            columns=["group_id", "user_id", "role", "joined_at"],
            records=memberships,
        )
        owner_cookie_token = secrets.token_urlsafe(32)
        await connection.copy_records_to_table(
            "accesstoken",
            columns=["token", "user_id", "created_at"],
            records=[(_digest(owner_cookie_token), owner_id, now)],
        )
        refresh_pools = await _load_refresh_tokens(connection, spec, user_ids, now)
    # Fresh statistics, as autovacuum would have gathered on a live database.
    await connection.execute("ANALYZE")

    def mint(user_id: uuid.UUID) -> str:
        return generate_jwt(
            {"sub": str(user_id), "aud": [JWT_AUDIENCE]}, jwt_secret, TOKEN_LIFETIME_S
        )

    # The member just before the deep page (the last PAGE_SIZE members), as roster writes a
    # cursor; none when the group is one page.
    before_deep = largest - PAGE_SIZE - 1
    deep_cursor = (
        encode_cursor_position(now + timedelta(milliseconds=before_deep), user_ids[before_deep])
        if before_deep >= 0
        else None
    )
    return Dataset(
        spec=spec,
        password=password,
        owner_id=owner_id,
        owner_email=user_email(0),
        loner_id=loner_id,
        group_ids=group_ids,
        write_group_id=write_group_id,
        write_pools=write_pools,
        owner_jwt=mint(owner_id),
        loner_jwt=mint(loner_id),
        owner_cookie_token=owner_cookie_token,
        deep_cursor=deep_cursor,
        refresh_pools=refresh_pools,
        user_count=user_count,
        membership_count=len(memberships),
    )
