"""The published schema says which errors each route really returns.

The members' routers declare their own (401, 403, 404, 409, 400 and 422 from FastAPI); the
service adds what its middleware answers for any route: 503 when the database is away (every
route but the liveness probe touches it), 413 wherever a body is accepted, and 401 on every
route that takes credentials and does not say so already. A route's own 503 (a full password
hashing queue) is kept, with the database's named next to it."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from roster_api.errors import DATABASE_UNAVAILABLE, REQUEST_BODY_TOO_LARGE, ErrorBody
from roster_api.health import LIVE_PATH

HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
ERROR_SCHEMA_NAME: Final = ErrorBody.__name__
ERROR_REF: Final = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}

SERVICE_ERRORS: Final = {
    "401": "Missing token or inactive user.",
    "413": f"The request body is larger than the configured limit (`{REQUEST_BODY_TOO_LARGE}`).",
    "503": f"The database cannot be reached (`{DATABASE_UNAVAILABLE}`, with `Retry-After`).",
}


def _error_response(code: str) -> dict[str, Any]:
    return {
        "description": SERVICE_ERRORS[code],
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _add_database_unavailable(responses: dict[str, Any]) -> None:
    """503 for an unreachable database; a route that documents a 503 of its own (a full
    password hashing queue) keeps it, and its description names both."""
    own = responses.get("503")
    if own is None:
        responses["503"] = _error_response("503")
        return
    own["description"] = f"{own.get('description', '').rstrip()} Or: {SERVICE_ERRORS['503']}"


def document_service_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the service's own error answers to every operation of `schema` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        ERROR_SCHEMA_NAME, ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", _error_response("401"))
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("413"))
            if path != LIVE_PATH:
                _add_database_unavailable(responses)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` publish the service's error answers too."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_service_errors(build_schema())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["document_service_errors", "install_openapi"]
