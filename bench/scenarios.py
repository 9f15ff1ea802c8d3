"""The scenarios: what is requested, as whom, and which of them the floor also answers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from bench.dataset import Dataset
from bench.plan import HttpRequest, RequestPlan

PAGE_SIZE = 50
COOKIE_NAME = "roster_auth"  # roster-auth's default, which the service keeps


class Kind(StrEnum):
    READ = "read"
    WRITE = "write"
    LOGIN = "login"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: Kind
    plan: RequestPlan
    # The write path warms up on other users than it measures with (see member_toggle_plan).
    warmup_plan: RequestPlan
    on_floor: bool = False

    @classmethod
    def reading(
        cls, key: str, title: str, request: HttpRequest, *, on_floor: bool = False
    ) -> Scenario:
        plan = RequestPlan.repeat(request)
        return cls(key, title, Kind.READ, plan, plan, on_floor)


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


def scenario_keys(group_sizes: tuple[int, ...]) -> list[str]:
    """The keys `build_scenarios` gives scenarios, in their order, for data of these sizes."""
    members = [f"members-{size}" for size in sorted(set(group_sizes))]
    return ["group-users", *members, "members-deep", "me-jwt", "me-jwt-loner", "me-cookie",
            "login", "write"]  # fmt: skip


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
    scenarios = [
        Scenario.reading(
            "group-users",
            f"GET /user-groups/{{id}}/users?limit={PAGE_SIZE} ({example_size:,} members)",
            HttpRequest("GET", f"/user-groups/{data.group_ids[example_size]}/users?{page}", owner),
            on_floor=True,
        ),
        *(
            Scenario.reading(
                f"members-{size}",
                f"GET /groups/{{id}}/members?limit={PAGE_SIZE} ({size:,} members)",
                HttpRequest("GET", f"/groups/{data.group_ids[size]}/members?{page}", owner),
            )
            for size in sizes
        ),
        Scenario.reading(
            "members-deep",
            f"GET /groups/{{id}}/members?limit={PAGE_SIZE}&offset={deep_offset:,} "
            f"({largest:,} members)",
            HttpRequest("GET", f"/groups/{data.group_ids[largest]}/members?{deep_page}", owner),
        ),
        Scenario.reading(
            "me-jwt",
            f"GET /users/me, JWT (member of {len(sizes)} groups, up to {largest:,} members)",
            HttpRequest("GET", "/users/me", owner),
            on_floor=True,
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
    assert [s.key for s in scenarios] == scenario_keys(tuple(data.group_ids))
    return scenarios
