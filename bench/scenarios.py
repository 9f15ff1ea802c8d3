"""The scenarios: what is requested, as whom, and which of them the ceiling and the floor also
answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from bench.dataset import PAGE_SIZE, Dataset
from bench.plan import RANDOM_TOKEN, HttpRequest, RequestPlan

COOKIE_NAME = "roster_auth"  # roster-auth's default, which the service keeps


class Kind(StrEnum):
    READ = "read"
    WRITE = "write"
    LOGIN = "login"
    # Anonymous logins flood the service while reads are measured beside them (see `Probe`).
    FLOOD = "flood"


@dataclass(frozen=True)
class Probe:
    """A read measured beside a flood, and on its own just before, in the same run."""

    key: str
    title: str
    request: HttpRequest

    @property
    def plan(self) -> RequestPlan:
        return RequestPlan.repeat(self.request)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: Kind
    plan: RequestPlan
    # The write path warms up on other users than it measures with (see member_toggle_plan).
    warmup_plan: RequestPlan
    on_floor: bool = False
    # Also answered by the stack-ceiling app (issue 11's reads).
    on_ceiling: bool = False
    # For a flood: the reads measured beside it.
    probes: tuple[Probe, ...] = ()

    @classmethod
    def reading(
        cls,
        key: str,
        title: str,
        request: HttpRequest,
        *,
        on_floor: bool = False,
        on_ceiling: bool = False,
    ) -> Scenario:
        plan = RequestPlan.repeat(request)
        return cls(key, title, Kind.READ, plan, plan, on_floor, on_ceiling)

    def apps(self) -> list[str]:
        """The apps that answer this scenario, roster first."""
        return [
            "roster",
            *(["ceiling"] if self.on_ceiling else []),
            *(["floor"] if self.on_floor else []),
        ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def member_toggle_plan(
    group_id: int, pool: tuple[uuid.UUID, ...], lag: int, token: str
) -> RequestPlan:
    """Add `pool[k]`, then remove `pool[k - lag]`, for k = 0, 1, ... (wrapping around).

    The dataset starts with the last `lag` users of the pool in the group, so every addition
    finds a non-member and every removal a member, provided that each request has completed
    before the request `2 * lag` places later in the cycle is issued. Connections do not keep
    that order by themselves (a slow request is overtaken by the other connections' requests),
    so `lag` is counted in time: a request still unanswered `2 * lag` requests later, at the
    write path's rate, has exceeded the load generator's timeout and is an error anyway.
    """
    headers = {**bearer(token), "Content-Type": "application/json"}
    cycle: list[HttpRequest] = []
    for index, user_id in enumerate(pool):
        body = json.dumps({"user_id": str(user_id), "role": "member"}).encode()
        cycle.append(HttpRequest("POST", f"/groups/{group_id}/members", headers, body))
        leaving = pool[(index - lag) % len(pool)]
        cycle.append(HttpRequest("DELETE", f"/groups/{group_id}/members/{leaving}", bearer(token)))
    return RequestPlan(tuple(cycle))


def refresh_plan(tokens: tuple[str, ...]) -> RequestPlan:
    """One refresh per token, in order: a refresh uses its token up (a second one would be a
    reuse, answered 401), so the cycle must not come round within a run."""
    headers = {"Content-Type": "application/json"}
    return RequestPlan(
        tuple(
            HttpRequest(
                "POST", "/auth/jwt/refresh", headers, json.dumps({"refresh_token": t}).encode()
            )
            for t in tokens
        )
    )


def scenario_keys(group_sizes: tuple[int, ...]) -> list[str]:
    """The keys `build_scenarios` gives scenarios, in their order, for data of these sizes."""
    members = [f"members-{size}" for size in sorted(set(group_sizes))]
    return ["group-users", *members, "members-deep", "members-deep-cursor", "me-jwt",
            "me-jwt-loner", "me-cookie", "login", "write", "refresh", "login-flood"]  # fmt: skip


def build_scenarios(data: Dataset) -> list[Scenario]:
    owner = bearer(data.owner_jwt)
    sizes = sorted(data.group_ids)
    largest = sizes[-1]
    # The example's scenario: its endpoint on the 1,000-member group (the largest but one
    # when the data set is smaller).
    example_size = 1000 if 1000 in data.group_ids else sizes[-2 if len(sizes) > 1 else -1]
    page = urlencode({"limit": PAGE_SIZE})
    deep_offset = max(0, largest - PAGE_SIZE)
    deep_page = urlencode({"limit": PAGE_SIZE, "offset": deep_offset})
    deep_cursor = urlencode(
        {"limit": PAGE_SIZE}
        if data.deep_cursor is None
        else {"limit": PAGE_SIZE, "after": data.deep_cursor}
    )
    scenarios = [
        Scenario.reading(
            "group-users",
            f"GET /user-groups/{{id}}/users?limit={PAGE_SIZE} ({example_size:,} members)",
            HttpRequest("GET", f"/user-groups/{data.group_ids[example_size]}/users?{page}", owner),
            on_floor=True,
            on_ceiling=True,
        ),
        *(
            Scenario.reading(
                f"members-{size}",
                f"GET /groups/{{id}}/members?limit={PAGE_SIZE} ({size:,} members)",
                HttpRequest("GET", f"/groups/{data.group_ids[size]}/members?{page}", owner),
                # Issue 11 compares the smallest and the largest group.
                on_ceiling=size in (sizes[0], largest),
            )
            for size in sizes
        ),
        Scenario.reading(
            "members-deep",
            f"GET /groups/{{id}}/members?limit={PAGE_SIZE}&offset={deep_offset:,} "
            f"({largest:,} members)",
            HttpRequest("GET", f"/groups/{data.group_ids[largest]}/members?{deep_page}", owner),
            on_ceiling=True,
        ),
        # The same page after a cursor (the ceiling pages by offset only).
        Scenario.reading(
            "members-deep-cursor",
            f"GET /groups/{{id}}/members?limit={PAGE_SIZE}&after=(cursor at {deep_offset:,}) "
            f"({largest:,} members)",
            HttpRequest("GET", f"/groups/{data.group_ids[largest]}/members?{deep_cursor}", owner),
        ),
        Scenario.reading(
            "me-jwt",
            f"GET /users/me, JWT (member of {len(sizes)} groups, up to {largest:,} members)",
            HttpRequest("GET", "/users/me", owner),
            on_floor=True,
            on_ceiling=True,
        ),
        Scenario.reading(
            "me-jwt-loner",
            "GET /users/me, JWT (member of no group)",
            HttpRequest("GET", "/users/me", bearer(data.loner_jwt)),
        ),
        Scenario.reading(
            "me-cookie",
            "GET /users/me, database-token cookie",
            HttpRequest("GET", "/users/me", {"Cookie": f"{COOKIE_NAME}={data.owner_cookie_token}"}),
            on_ceiling=True,
        ),
    ]
    login = HttpRequest(
        "POST",
        "/auth/jwt/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urlencode({"username": data.owner_email, "password": data.password}).encode(),
    )
    scenarios.append(
        Scenario(
            "login",
            "POST /auth/jwt/login (Argon2id)",
            Kind.LOGIN,
            RequestPlan.repeat(login),
            RequestPlan.repeat(login),
        )
    )
    lag = data.spec.write_lag
    measured_pool, warmup_pool = data.write_pools
    scenarios.append(
        Scenario(
            "write",
            "POST + DELETE /groups/{id}/members (add, remove)",
            Kind.WRITE,
            member_toggle_plan(data.write_group_id, measured_pool, lag, data.owner_jwt),
            member_toggle_plan(data.write_group_id, warmup_pool, lag, data.owner_jwt),
        )
    )
    measured_tokens, warmup_tokens = data.refresh_pools
    scenarios.append(
        Scenario(
            "refresh",
            "POST /auth/jwt/refresh (rotation: a token of its own each)",
            Kind.WRITE,
            refresh_plan(measured_tokens),
            refresh_plan(warmup_tokens),
        )
    )
    # Last: the flood's logins can outlast its measurement (a server that queues them works
    # through them afterwards), and once roster throttles failed logins by client address, the
    # failures it leaves behind for 127.0.0.1 must not meet the login scenario's requests.
    scenarios.append(login_flood_scenario(data))
    assert [s.key for s in scenarios] == scenario_keys(tuple(data.group_ids))
    return scenarios


def login_flood_scenario(data: Dataset) -> Scenario:
    """Anonymous logins with unknown emails and random passwords (every one different: the
    attacker of issue 10, not a user retrying), beside `/users/me` (JWT) and `/health/ready`."""
    # No dataset user's email is under this domain (see bench.dataset.user_email).
    body = f"username=flood-{RANDOM_TOKEN}%40unknown.bench.example.com&password={RANDOM_TOKEN}"
    flood = HttpRequest(
        "POST",
        "/auth/jwt/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body.encode(),
    )
    return Scenario(
        "login-flood",
        "POST /auth/jwt/login, unknown emails (the flood)",
        Kind.FLOOD,
        RequestPlan.repeat(flood),
        RequestPlan.repeat(flood),
        probes=(
            Probe(
                "me-jwt",
                "GET /users/me, JWT",
                HttpRequest("GET", "/users/me", bearer(data.owner_jwt)),
            ),
            Probe("health-ready", "GET /health/ready", HttpRequest("GET", "/health/ready")),
        ),
    )
