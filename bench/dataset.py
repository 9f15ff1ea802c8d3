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
  `bench.scenarios.member_toggle_plan`).

Every user has the same password; it is hashed once, with roster-auth's password helper.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from fastapi_users.jwt import generate_jwt
from fastapi_users.password import PasswordHelper

from roster_auth.backends import JWT_AUDIENCE
from roster_auth.password import NormalizingPasswordHelper

# Long enough for the run, whatever the service's own (short) lifetime for the tokens it issues.
TOKEN_LIFETIME_S = 3 * 3600


@dataclass(frozen=True)
class DatasetSpec:
    group_sizes: tuple[int, ...]
    write_lag: int  # how far behind its addition a member is removed, in requests
    write_pool_size: int  # candidates per pool

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
            records=[(owner_cookie_token, owner_id, now)],
        )
    # Fresh statistics, as autovacuum would have gathered on a live database.
    await connection.execute("ANALYZE")

    def mint(user_id: uuid.UUID) -> str:
        return generate_jwt(
            {"sub": str(user_id), "aud": [JWT_AUDIENCE]}, jwt_secret, TOKEN_LIFETIME_S
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
        user_count=user_count,
        membership_count=len(memberships),
    )
