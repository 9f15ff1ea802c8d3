"""`require_group_role`: an application's own group-scoped route gets the same rules in one
line."""

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups import GroupAccess, GroupRole, RosterGroups, require_group_role

from .conftest import World, build_app, serve


@pytest_asyncio.fixture
async def app_client(
    auth: RosterAuth, db_sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = build_app(auth, db_sessionmaker)
    groups = RosterGroups(auth.current_active_user)
    AdminAccess = Annotated[GroupAccess, Depends(groups.require_role(GroupRole.ADMIN))]  # noqa: N806
    MemberAccess = Annotated[  # noqa: N806
        GroupAccess, Depends(require_group_role(auth.current_active_user))
    ]

    @app.get("/groups/{group_id}/reports")
    async def reports(access: AdminAccess) -> dict[str, object]:
        return {
            "group": access.group.name,
            "role": access.role,
            "caller": access.user.email,
        }

    @app.get("/groups/{group_id}/noticeboard")
    async def noticeboard(access: MemberAccess) -> dict[str, object]:
        return {"group_id": access.group_id}

    async with serve(app) as client:
        yield client


@pytest.mark.parametrize(
    ("actor", "admin_route", "member_route"),
    [
        ("owner", 200, 200),
        ("admin", 200, 200),
        ("member", 403, 200),
        ("outsider", 404, 404),
        ("superuser", 200, 200),
        ("anonymous", 401, 401),
    ],
)
async def test_an_applications_route_gets_the_group_rules(
    app_client: httpx.AsyncClient,
    world: World,
    actor: str,
    admin_route: int,
    member_route: int,
) -> None:
    headers = world.headers(actor)
    reports = await app_client.get(f"/groups/{world.group_id}/reports", headers=headers)
    assert reports.status_code == admin_route
    if admin_route == 200:
        assert reports.json() == {
            "group": "Crew",
            "role": None if actor == "superuser" else actor,
            "caller": world.person(actor).user.email,
        }
    elif admin_route in {403, 404}:
        assert (
            reports.json()["detail"]
            == {
                403: "INSUFFICIENT_GROUP_ROLE",
                404: "GROUP_NOT_FOUND",
            }[admin_route]
        )
    board = await app_client.get(f"/groups/{world.group_id}/noticeboard", headers=headers)
    assert board.status_code == member_route
    if member_route == 200:
        assert board.json() == {"group_id": world.group_id}


@pytest.mark.parametrize(("group_id", "status"), [("0", 422), ("x", 422), (str(2**31 - 1), 404)])
async def test_the_dependency_validates_the_group_id(
    app_client: httpx.AsyncClient, world: World, group_id: str, status: int
) -> None:
    response = await app_client.get(f"/groups/{group_id}/reports", headers=world.superuser.headers)
    assert response.status_code == status
