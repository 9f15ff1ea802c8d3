"""The application's routes on one flat list, as FastAPI before 0.137 kept them.

Since 0.137, `include_router` keeps each included router as a node of a tree, resolved on every
request: a request walks every earlier router's routes, recomputing each subtree's version on
the way, and then matches again inside the router it chose. roster's members compose their
routers in several levels (FastAPI Users' routers inside roster-auth's, those inside the
application), so routing alone took 140 microseconds of a `/groups/{id}/members` request (the
whole request: about 1,300 at the stack's ceiling), 55 once flat (bench/NOTES.md).

`flatten_routes` re-declares every route of the included routers on the application's own
router, with the attributes the inclusion gave it (its full path, tags, dependencies,
responses, response class), read through FastAPI's public `iter_route_contexts`: what the
OpenAPI document is generated from, so the document stays the same (tests/test_routing.py
holds it to that).

On the flat list, a request is still matched against every route before its own, each match a
route-context lookup, a regular expression and a method check. Each route is declared as a
`FlatRoute`, which turns a request away by the literal start of its path first (`/groups/`
of `/groups/{group_id}/members`): 43 microseconds of matching down to 23 on the members page.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette._utils import get_route_path  # as FastAPI imports it: the path less root_path
from starlette.routing import Match
from starlette.types import Scope


class FlatRoute(APIRoute):
    """An `APIRoute` that answers "no match" at once for a path that does not start with the
    literal part of its own, up to its first parameter: its pattern is anchored there, so
    such a path can match neither in full nor in part (the method aside)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.literal_prefix = path.partition("{")[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self.literal_prefix):
            return Match.NONE, {}
        return super().matches(scope)


def _redeclare(app: FastAPI, context: RouteContext) -> None:
    path, endpoint = context.path, context.endpoint
    if not isinstance(context.original_route, APIRoute) or path is None or endpoint is None:
        # Mounts and websocket routes inside an included router have no flat equivalent
        # here; roster has none, and this refuses one rather than drop it.
        raise TypeError(f"cannot flatten {context.original_route!r}: not an APIRoute")
    app.router.add_api_route(
        path,
        endpoint,
        route_class_override=FlatRoute,
        methods=context.methods,
        name=context.name,
        response_model=context.response_model,
        status_code=context.status_code,
        tags=context.tags,
        dependencies=context.dependencies,
        summary=context.summary,
        description=context.description,
        response_description=context.response_description,
        responses=context.responses,
        deprecated=context.deprecated,
        operation_id=context.operation_id,
        response_model_include=context.response_model_include,
        response_model_exclude=context.response_model_exclude,
        response_model_by_alias=context.response_model_by_alias,
        response_model_exclude_unset=context.response_model_exclude_unset,
        response_model_exclude_defaults=context.response_model_exclude_defaults,
        response_model_exclude_none=context.response_model_exclude_none,
        include_in_schema=context.include_in_schema,
        response_class=context.response_class,
        callbacks=context.callbacks,
        openapi_extra=context.openapi_extra,
        generate_unique_id_function=context.generate_unique_id_function,
        strict_content_type=context.strict_content_type,
        max_body_size=context.max_body_size,
    )


def flatten_routes(app: FastAPI) -> None:
    """Replace each router included in `app` by its routes, in the same order (the order
    decides between routes that match the same path). Call it once every router is included,
    before the OpenAPI document is first generated."""
    routes = list(app.router.routes)
    app.router.routes.clear()
    for route in routes:
        contexts = list(iter_route_contexts([route]))
        if len(contexts) == 1 and contexts[0].original_route is route:
            app.router.routes.append(route)  # the application's own (the docs' routes)
            continue
        for context in contexts:
            _redeclare(app, context)


__all__ = ["FlatRoute", "flatten_routes"]
