"""The published schema says which errors each route really returns, and which input it takes.

The members' routers declare their own (401, 403, 404, 409, 400 and 422 from FastAPI); the
service adds what its middleware answers for any route: 503 when the database is away (every
route but the liveness probe touches it), 413 and 415 wherever a body is accepted, 422 on every
route (a NUL in the path or the query is refused before routing), and 401 on every route that
takes credentials and does not say so already. A route's own 503 (a full password hashing
queue) is kept, with the database's named next to it. Every free-text string a request carries
gets a `pattern` that rules out NUL, as the middleware does, unless it already has a stricter
one, form fields are described as FastAPI reads them (no null; empty means absent), and addresses
as email-validator reads them (internationalized: `idn-email`)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from roster_api.errors import ErrorBody, ServiceErrorCode
from roster_api.health import LIVE_PATH
from roster_auth import document_credentials

HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
ERROR_SCHEMA_NAME: Final = ErrorBody.__name__
ERROR_REF: Final = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}

VALIDATION_ERROR_REF: Final = {"$ref": "#/components/schemas/HTTPValidationError"}

SERVICE_ERRORS: Final = {
    "401": "Missing token or inactive user.",
    "413": (
        "The request body is larger than the configured limit "
        f"(`{ServiceErrorCode.REQUEST_BODY_TOO_LARGE}`)."
    ),
    "415": (
        f"A multipart body (`{ServiceErrorCode.UNSUPPORTED_MEDIA_TYPE}`): "
        "send the media type declared here."
    ),
    "503": (
        f"The database cannot be reached (`{ServiceErrorCode.DATABASE_UNAVAILABLE}`, "
        "with `Retry-After`)."
    ),
}
INPUT_ERROR_DESCRIPTION: Final = (
    "Validation Error: input no route can take, such as a NUL character in the path or the "
    "query string."
)

# What the service refuses in any text it is sent (Postgres cannot store it), as JSON Schema.
NUL_FREE_PATTERN: Final = "^[^\\u0000]*$"
# Any JSON value without a NUL in its strings or keys: what an object that takes extra
# properties (FastAPI Users' schemas ignore them) may carry in them.
NUL_FREE_JSON_NAME: Final = "NulFreeJson"
NUL_FREE_JSON_REF: Final = {"$ref": f"#/components/schemas/{NUL_FREE_JSON_NAME}"}
# No `type` and no `anyOf`: each keyword applies to the values of its own type only (a pattern
# to strings, items to arrays), so the schema takes any value and says only where NUL may not be.
NUL_FREE_JSON: Final = {
    "title": NUL_FREE_JSON_NAME,
    "description": "Any JSON value whose strings and keys hold no NUL character (U+0000).",
    "pattern": NUL_FREE_PATTERN,
    "items": NUL_FREE_JSON_REF,
    "propertyNames": {"pattern": NUL_FREE_PATTERN},
    "additionalProperties": NUL_FREE_JSON_REF,
}
# String formats whose own syntax already rules out NUL.
_FORMATS_WITHOUT_NUL: Final = frozenset(
    {"email", "idn-email", "uuid", "date", "date-time", "time", "duration", "uri", "ipv4", "ipv6"}
)


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


def _is_free_text(schema: dict[str, Any]) -> bool:
    types = schema.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    return (
        is_string
        and not {"pattern", "enum", "const"} & schema.keys()
        and schema.get("format") not in _FORMATS_WITHOUT_NUL
    )


def forbid_nul(schema: Any, components: dict[str, Any], visited: set[str]) -> None:
    """Give every free-text string in `schema` (following `$ref`s into `components`, each once)
    the NUL-free pattern, and every object that takes extra properties the rule that they hold
    no NUL either, in place."""
    if not isinstance(schema, dict):
        return
    reference = schema.get("$ref")
    if isinstance(reference, str):
        name = reference.rsplit("/", 1)[-1]
        if name not in visited and name in components:
            visited.add(name)
            forbid_nul(components[name], components, visited)
        return
    if _is_free_text(schema):
        schema["pattern"] = NUL_FREE_PATTERN
    if schema.get("type") == "object" and schema.get("additionalProperties", True) is True:
        schema["propertyNames"] = {"pattern": NUL_FREE_PATTERN}
        schema["additionalProperties"] = NUL_FREE_JSON_REF
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for part in schema.get(keyword, ()):
            forbid_nul(part, components, visited)
    for part in schema.get("properties", {}).values():
        forbid_nul(part, components, visited)
    for keyword in ("items", "additionalProperties"):
        forbid_nul(schema.get(keyword), components, visited)


FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"


def internationalize_emails(node: Any) -> None:
    """Say `idn-email` where pydantic says `email`, in place. email-validator (behind
    FastAPI Users' EmailStr) accepts internationalized addresses (RFC 6531: UTF-8 local parts,
    IDN domains) and returns them in Unicode, as they are stored and answered; JSON Schema's
    `email` is ASCII only."""
    if isinstance(node, dict):
        if node.get("format") == "email":
            node["format"] = "idn-email"
        for value in node.values():
            internationalize_emails(value)
    elif isinstance(node, list):
        for value in node:
            internationalize_emails(value)


def _resolved(schema: Any, components: dict[str, Any]) -> Any:
    reference = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(reference, str):
        return components.get(reference.rsplit("/", 1)[-1])
    return schema


def document_form_fields(schema: Any, components: dict[str, Any]) -> None:
    """Say what FastAPI does with a urlencoded form, in place: a form has no null (an optional
    field is left out, or sent empty), and an empty value counts as absent, so a required text
    field needs at least one character."""
    form = _resolved(schema, components)
    if not isinstance(form, dict):
        return
    required = set(form.get("required", ()))
    for name, field in form.get("properties", {}).items():
        alternatives = field.get("anyOf")
        if isinstance(alternatives, list):
            kept = [part for part in alternatives if part != {"type": "null"}]
            if len(kept) == 1:
                del field["anyOf"]
                field.update(kept[0])
            else:
                field["anyOf"] = kept
        if name in required and field.get("type") == "string":
            field.setdefault("minLength", 1)


def document_service_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the service's own error answers to every operation of `schema`, and the NUL-free
    pattern to what requests send (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        ERROR_SCHEMA_NAME, ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    components.setdefault(NUL_FREE_JSON_NAME, NUL_FREE_JSON)
    visited: set[str] = {NUL_FREE_JSON_NAME}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("401", _error_response("401"))
            if "requestBody" in operation:
                responses.setdefault("413", _error_response("413"))
                responses.setdefault("415", _error_response("415"))
                for media_type, media in operation["requestBody"].get("content", {}).items():
                    if media_type == FORM_MEDIA_TYPE:
                        document_form_fields(media.get("schema"), components)
                    forbid_nul(media.get("schema"), components, visited)
            responses.setdefault(
                "422",
                {
                    "description": INPUT_ERROR_DESCRIPTION,
                    "content": {"application/json": {"schema": VALIDATION_ERROR_REF}},
                },
            )
            for parameter in operation.get("parameters", ()):
                forbid_nul(parameter.get("schema"), components, visited)
            if path != LIVE_PATH:
                _add_database_unavailable(responses)
    internationalize_emails(schema)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` publish the security of the routes that read credentials
    (`roster_auth.document_credentials`) and the service's error answers too."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = document_credentials(build_schema(), app.routes)
            # After the security: an operation with security may answer 401.
            app.openapi_schema = document_service_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["NUL_FREE_PATTERN", "document_service_errors", "forbid_nul", "install_openapi"]
