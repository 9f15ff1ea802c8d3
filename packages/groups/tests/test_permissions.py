"""The permission matrix: every route, asked by each kind of caller, on a fresh group.

A refused request must also leave the database as it was."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_db.audit import AUDIT_EVENTS
from roster_groups.models import Membership, UserGroup

from .conftest import World

ACTORS = ("owner", "admin", "member", "outsider", "superuser", "anonymous")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    # The path, given the world (so that it can name the group and the targets).
    path: Callable[[World, str], str]
    body: Callable[[World], dict[str, Any]] | None
    # Expected status per actor, in the order of ACTORS.
    expected: tuple[int, int, int, int, int, int]


def group_path(suffix: str = "") -> Callable[[World, str], str]:
    return lambda world, actor: f"/groups/{world.group_id}{suffix}"


def member_path(target: str) -> Callable[[World, str], str]:
    def path(world: World, actor: str) -> str:
        # "self" is the caller's own membership (anonymous has none: any id will do).
        person = world.person(actor if target == "self" and actor != "anonymous" else "newcomer")
        if target != "self":
            person = world.person(target)
        return f"/groups/{world.group_id}/members/{person.id}"

    return path


#                                     owner admin member outsider superuser anonymous
ROUTES = [
    Route("create group", "POST", lambda w, a: "/groups", lambda w: {"name": "New"},
          (201, 201, 201, 201, 201, 401)),
    Route("list my groups", "GET", lambda w, a: "/groups", None,
          (200, 200, 200, 200, 200, 401)),
    Route("list all groups", "GET", lambda w, a: "/groups?all=true", None,
          (403, 403, 403, 403, 200, 401)),
    Route("get group", "GET", group_path(), None,
          (200, 200, 200, 404, 200, 401)),
    Route("update group", "PATCH", group_path(), lambda w: {"description": "Changed"},
          (200, 200, 403, 404, 200, 401)),
    Route("delete group", "DELETE", group_path(), None,
          (204, 403, 403, 404, 204, 401)),
    Route("list members", "GET", group_path("/members"), None,
          (200, 200, 200, 404, 200, 401)),
    Route("add member", "POST", group_path("/members"),
          lambda w: {"user_id": str(w.newcomer.id), "role": "member"},
          (201, 201, 403, 404, 201, 401)),
    Route("add admin", "POST", group_path("/members"),
          lambda w: {"user_id": str(w.newcomer.id), "role": "admin"},
          (201, 201, 403, 404, 201, 401)),
    Route("add owner", "POST", group_path("/members"),
          lambda w: {"user_id": str(w.newcomer.id), "role": "owner"},
          (201, 403, 403, 404, 201, 401)),
    Route("change a role", "PATCH", member_path("peer_member"), lambda w: {"role": "admin"},
          (200, 403, 403, 404, 200, 401)),
    Route("remove a member", "DELETE", member_path("peer_member"), None,
          (204, 204, 403, 404, 204, 401)),
    Route("remove an admin", "DELETE", member_path("peer_admin"), None,
          (204, 403, 403, 404, 204, 401)),
    # The owner is the only owner: leaving would orphan the group. The superuser is no member.
    Route("leave", "DELETE", member_path("self"), None,
          (409, 204, 204, 404, 404, 401)),
    Route("my groups", "GET", lambda w, a: "/users/me/groups", None,
          (200, 200, 200, 200, 200, 401)),
    Route("group users (example)", "GET", lambda w, a: f"/user-groups/{w.group_id}/users", None,
          (200, 200, 200, 404, 200, 401)),
    Route("group events", "GET", group_path("/events"), None,
          (200, 200, 403, 404, 200, 401)),
]  # fmt: skip

ERROR_CODES = {
    403: {"INSUFFICIENT_GROUP_ROLE", "SUPERUSER_REQUIRED"},
    404: {"GROUP_NOT_FOUND", "MEMBER_NOT_FOUND"},
    409: {"LAST_OWNER"},
    401: {"Unauthorized"},
}


async def snapshot(sessionmaker: async_sessionmaker[AsyncSession]) -> object:
    async with sessionmaker() as session:
        groups = (await session.exec(select(UserGroup))).all()
        memberships = (await session.exec(select(Membership))).all()
        # A refused change writes no audit event either.
        events = (await session.exec(select(AUDIT_EVENTS.id))).all()
        return (
            sorted((g.id, g.name, g.description) for g in groups),
            sorted((m.group_id, str(m.user_id), m.role.value) for m in memberships),
            sorted(events),
        )


@pytest.mark.parametrize(
    ("route", "actor", "expected"),
    [
        pytest.param(route, actor, status, id=f"{route.name}-{actor}")
        for route in ROUTES
        for actor, status in zip(ACTORS, route.expected, strict=True)
    ],
)
async def test_permission_matrix(
    client: httpx.AsyncClient,
    world: World,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    route: Route,
    actor: str,
    expected: int,
) -> None:
    before = await snapshot(db_sessionmaker)
    response = await client.request(
        route.method,
        route.path(world, actor),
        json=route.body(world) if route.body else None,
        headers=world.headers(actor),
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["detail"] in ERROR_CODES[expected]
        assert await snapshot(db_sessionmaker) == before
    elif route.method != "GET":
        assert await snapshot(db_sessionmaker) != before


def documented_statuses(app: FastAPI, method: str, path: str) -> set[int]:
    """The statuses the OpenAPI document lists for the route that serves `path`."""
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path.split("?")[0]):
            return {int(code) for code in operations[method.lower()]["responses"]}
    raise AssertionError(f"no route documented for {path}")


async def test_every_answer_in_the_matrix_is_documented(app: FastAPI, world: World) -> None:
    for route in ROUTES:
        for actor, expected in zip(ACTORS, route.expected, strict=True):
            path = route.path(world, actor)
            assert expected in documented_statuses(app, route.method, path), (route.name, actor)
