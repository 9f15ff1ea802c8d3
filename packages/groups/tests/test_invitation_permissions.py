"""The permission matrix of the invitation routes: each route, asked by each kind of caller.

The group's routes act on the world's group ("Crew"). The invitee's routes (accept, decline)
use, for each caller, a pending invitation to the caller's own address into another group
("Lobby", where none of them is a member): any signed-in account answers its own invitation,
whatever its role elsewhere. A refused request leaves the database as it was."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_groups.models import GroupInvitation, GroupRole, Membership

from .conftest import World, add_group, add_invitation, unique_email
from .test_permissions import ACTORS, documented_statuses


@dataclass
class Invited:
    world: World
    lobby_id: int
    # In Crew: a pending invitation with the member role, and one with the owner role.
    member_invitation: uuid.UUID
    owner_invitation: uuid.UUID
    # Per actor: the token of their own pending invitation into Lobby.
    tokens: dict[str, str]


def token_for(label: str) -> str:
    return f"matrix-token-{label}-".ljust(43, "x")


@pytest_asyncio.fixture
async def invited(world: World, db_sessionmaker: async_sessionmaker[AsyncSession]) -> Invited:
    lobby_id = await add_group(db_sessionmaker, "Lobby", {world.peer_admin.id: GroupRole.OWNER})
    tokens: dict[str, str] = {}
    for actor in ACTORS:
        if actor == "anonymous":
            continue
        tokens[actor] = token_for(actor)
        await add_invitation(
            db_sessionmaker,
            lobby_id,
            world.person(actor).user.email,
            GroupRole.MEMBER,
            tokens[actor],
        )
    tokens["anonymous"] = token_for("owner")
    return Invited(
        world=world,
        lobby_id=lobby_id,
        member_invitation=await add_invitation(
            db_sessionmaker, world.group_id, unique_email("m"), GroupRole.MEMBER, token_for("m")
        ),
        owner_invitation=await add_invitation(
            db_sessionmaker, world.group_id, unique_email("o"), GroupRole.OWNER, token_for("o")
        ),
        tokens=tokens,
    )


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: Callable[[Invited], str]
    body: Callable[[Invited, str], dict[str, Any]] | None
    # Expected status per actor, in the order of ACTORS.
    expected: tuple[int, int, int, int, int, int]


def crew(suffix: str) -> Callable[[Invited], str]:
    return lambda invited: f"/groups/{invited.world.group_id}{suffix}"


def invite(role: str) -> Callable[[Invited, str], dict[str, Any]]:
    return lambda invited, actor: {"email": invited.world.newcomer.user.email, "role": role}


def own_token(invited: Invited, actor: str) -> dict[str, Any]:
    return {"token": invited.tokens[actor]}


#                                     owner admin member outsider superuser anonymous
ROUTES = [
    Route("invite a member", "POST", crew("/invitations"), invite("member"),
          (201, 201, 403, 404, 201, 401)),
    Route("invite an admin", "POST", crew("/invitations"), invite("admin"),
          (201, 201, 403, 404, 201, 401)),
    Route("invite an owner", "POST", crew("/invitations"), invite("owner"),
          (201, 403, 403, 404, 201, 401)),
    Route("list invitations", "GET", crew("/invitations"), None,
          (200, 200, 403, 404, 200, 401)),
    Route("list pending invitations", "GET", crew("/invitations?status=pending"), None,
          (200, 200, 403, 404, 200, 401)),
    Route("revoke a member's invitation", "DELETE",
          lambda i: f"/groups/{i.world.group_id}/invitations/{i.member_invitation}", None,
          (204, 204, 403, 404, 204, 401)),
    Route("revoke an owner's invitation", "DELETE",
          lambda i: f"/groups/{i.world.group_id}/invitations/{i.owner_invitation}", None,
          (204, 403, 403, 404, 204, 401)),
    Route("my invitations", "GET", lambda i: "/users/me/invitations", None,
          (200, 200, 200, 200, 200, 401)),
    Route("accept my invitation", "POST", lambda i: "/invitations/accept", own_token,
          (200, 200, 200, 200, 200, 401)),
    Route("decline my invitation", "POST", lambda i: "/invitations/decline", own_token,
          (204, 204, 204, 204, 204, 401)),
]  # fmt: skip

ERROR_CODES = {
    403: {"INSUFFICIENT_GROUP_ROLE"},
    404: {"GROUP_NOT_FOUND"},
    401: {"Unauthorized"},
}


async def snapshot(sessionmaker: async_sessionmaker[AsyncSession]) -> object:
    async with sessionmaker() as session:
        invitations = (await session.exec(select(GroupInvitation))).all()
        memberships = (await session.exec(select(Membership))).all()
        return (
            sorted((str(i.id), i.group_id, i.email, i.role.value, i.status) for i in invitations),
            sorted((m.group_id, str(m.user_id), m.role.value) for m in memberships),
        )


@pytest.mark.parametrize(
    ("route", "actor", "expected"),
    [
        pytest.param(route, actor, status, id=f"{route.name}-{actor}")
        for route in ROUTES
        for actor, status in zip(ACTORS, route.expected, strict=True)
    ],
)
async def test_invitation_permission_matrix(
    client: httpx.AsyncClient,
    invited: Invited,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    route: Route,
    actor: str,
    expected: int,
) -> None:
    before = await snapshot(db_sessionmaker)
    response = await client.request(
        route.method,
        route.path(invited),
        json=route.body(invited, actor) if route.body else None,
        headers=invited.world.headers(actor),
    )
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["detail"] in ERROR_CODES[expected]
        assert await snapshot(db_sessionmaker) == before
    elif route.method != "GET":
        assert await snapshot(db_sessionmaker) != before
    if route.name == "accept my invitation" and expected == 200:
        assert response.json()["id"] == invited.lobby_id
        assert response.json()["role"] == "member"
    if route.name == "my invitations" and expected == 200:
        assert [item["group_id"] for item in response.json()["items"]] == [invited.lobby_id]
    if route.name.startswith("list") and expected == 200:
        assert response.json()["total"] == 2


async def test_every_answer_in_the_matrix_is_documented(app: FastAPI, invited: Invited) -> None:
    for route in ROUTES:
        for actor, expected in zip(ACTORS, route.expected, strict=True):
            path = route.path(invited)
            assert expected in documented_statuses(app, route.method, path), (route.name, actor)


def test_every_route_documents_its_refusals(app: FastAPI) -> None:
    """Each invitation route's OpenAPI answers name the codes it can refuse with."""
    paths = app.openapi()["paths"]

    def described(path: str, method: str, status: int) -> str:
        description: str = paths[path][method]["responses"][str(status)]["description"]
        return description

    accept_400 = described("/invitations/accept", "post", 400)
    for code in (
        "INVITATION_NOT_FOUND",
        "INVITATION_EXPIRED",
        "INVITATION_REVOKED",
        "INVITATION_ALREADY_USED",
        "INVITATION_EMAIL_MISMATCH",
    ):
        assert code in accept_400
        assert code in described("/invitations/decline", "post", 400)
    assert "MEMBERSHIP_ALREADY_EXISTS" in described("/invitations/accept", "post", 409)
    create_409 = described("/groups/{group_id}/invitations", "post", 409)
    assert "INVITATION_ALREADY_PENDING" in create_409
    assert "MEMBERSHIP_ALREADY_EXISTS" in create_409
    revoke = "/groups/{group_id}/invitations/{invitation_id}"
    assert "INVITATION_NOT_FOUND" in described(revoke, "delete", 404)
    assert "INVITATION_NOT_PENDING" in described(revoke, "delete", 409)
    assert "EMAIL_NOT_VERIFIED" in described("/users/me/invitations", "get", 403)
