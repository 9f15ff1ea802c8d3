"""The application's routes on one flat list (`roster_api.routing.flatten_routes`): the same
routes, in the same order, with the same OpenAPI document as the included routers gave."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match, Mount, Route

from roster_api import app as app_module
from roster_api.app import create_app
from roster_api.routing import FlatRoute, flatten_routes

from .conftest import UNREACHABLE_DATABASE_URL, make_settings, serve

# Every optional router on: the identity providers' routes and the linked identities'.
PROVIDERS: dict[str, Any] = {
    "oidc_discovery_url": "https://id.example/.well-known/openid-configuration",
    "oidc_client_id": "roster",
    "oidc_client_secret": "s" * 32,
    "github_client_id": "Iv1.roster",
    "github_client_secret": "g" * 32,
}


def build(flatten: bool, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    with monkeypatch.context() as patch:
        if not flatten:
            patch.setattr(app_module, "flatten_routes", lambda _app: None)
        # Never started: the routes and the document are built without a database.
        settings = make_settings(database_url=UNREACHABLE_DATABASE_URL, **PROVIDERS)
        # The auth configuration from the settings: the providers' routes come from there.
        return create_app(settings)


@pytest.fixture(scope="module")
def apps() -> tuple[FastAPI, FastAPI]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return build(True, monkeypatch), build(False, monkeypatch)


def test_the_openapi_document_is_the_included_routers_one(apps: tuple[FastAPI, FastAPI]) -> None:
    flat, included = apps
    assert flat.openapi() == included.openapi()


def test_every_operation_behind_a_credential_documents_both_schemes_and_401(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    flat, _ = apps
    schema = flat.openapi()
    both: list[dict[str, list[str]]] = [{"APIKeyCookie": []}, {"OAuth2PasswordBearer": []}]
    for path, method in [
        ("/users/me", "get"),
        ("/groups/{group_id}/members", "get"),
        ("/user-groups/{group_id}/users", "get"),
        ("/groups", "post"),
        ("/users/me/oauth-accounts", "get"),
        ("/events", "get"),
    ]:
        operation = schema["paths"][path][method]
        assert operation["security"] == both, (method, path)
        assert "401" in operation["responses"], (method, path)
    for path, method in [("/auth/register", "post"), ("/health/live", "get")]:
        assert "security" not in schema["paths"][path][method], (method, path)
    assert set(schema["components"]["securitySchemes"]) == {"APIKeyCookie", "OAuth2PasswordBearer"}


def test_no_included_router_is_left_and_the_order_is_kept(
    apps: tuple[FastAPI, FastAPI],
) -> None:
    flat, included = apps
    assert all(isinstance(route, APIRoute | Route) for route in flat.router.routes)

    def signature(app: FastAPI) -> list[tuple[str, str, tuple[str, ...]]]:
        return [
            (str(context.path), str(context.name), tuple(sorted(context.methods or ())))
            for context in iter_route_contexts(app.router.routes)
        ]

    # The order decides between routes of one path: `/users/me` before `/users/{id}`.
    assert signature(flat) == signature(included)
    paths = [path for path, _, _ in signature(flat)]
    assert paths.index("/users/me") < paths.index("/users/{id}")
    assert {"/auth/oidc/authorize", "/auth/github/callback", "/users/me/oauth-accounts"} <= set(
        paths
    )


def test_a_route_keeps_what_its_inclusion_gave_it() -> None:
    async def endpoint() -> dict[str, str]:
        return {}

    inner = APIRouter()
    inner.add_api_route("/thing", endpoint, name="thing", responses={418: {"description": "t"}})
    outer = APIRouter(prefix="/outer")
    outer.include_router(inner, prefix="/inner", tags=["things"])
    app = FastAPI()
    app.include_router(outer)
    flatten_routes(app)
    [route] = [route for route in app.router.routes if isinstance(route, APIRoute)]
    assert route.path == "/outer/inner/thing"
    assert route.tags == ["things"]
    assert 418 in route.responses
    assert app.url_path_for("thing") == "/outer/inner/thing"


def test_a_mount_inside_an_included_router_is_refused() -> None:
    router = APIRouter()
    router.routes.append(Mount("/static", app=FastAPI()))
    app = FastAPI()
    app.include_router(router, prefix="/files")
    with pytest.raises(TypeError, match="not an APIRoute"):
        flatten_routes(app)


def scope_of(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


def test_a_flat_route_turns_away_only_paths_it_could_never_match() -> None:
    async def endpoint(group_id: int) -> dict[str, int]:
        return {"group_id": group_id}

    inner = APIRouter()
    inner.add_api_route("/groups/{group_id}/members", endpoint, methods=["GET"])
    app = FastAPI()
    app.include_router(inner)
    flatten_routes(app)
    [route] = [route for route in app.router.routes if isinstance(route, FlatRoute)]
    assert route.literal_prefix == "/groups/"

    def match(method: str, path: str, root_path: str = "") -> Match:
        return route.matches(scope_of(method, path, root_path))[0]

    assert match("GET", "/groups/7/members") is Match.FULL
    # A method the route lacks is still a partial match: the router answers 405, not 404.
    assert match("DELETE", "/groups/7/members") is Match.PARTIAL
    # Behind a proxy's prefix, the path is read as Starlette reads it (less the root path).
    assert match("GET", "/api/groups/7/members", root_path="/api") is Match.FULL
    assert match("GET", "/users/me") is Match.NONE
    assert match("GET", "/group/7/members") is Match.NONE
    assert match("GET", "/groups/7/members/more") is Match.NONE  # the pattern still decides


async def test_the_flat_app_still_answers_405_and_404(apps: tuple[FastAPI, FastAPI]) -> None:
    flat, _ = apps
    async with serve(flat) as client:
        wrong_method = await client.put("/users/me/groups")
        unknown = await client.get("/groups/1/nothing-here")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["allow"]
    assert unknown.status_code == 404
