"""The current-user dependencies read both credentials themselves (no security-scheme
dependency for FastAPI to solve), and `document_credentials` documents them as FastAPI
documents such a dependency: both schemes on each operation, the cookie first."""

from typing import Any

from fastapi import FastAPI

from roster_auth import RosterAuth, document_credentials

BOTH_SCHEMES: list[dict[str, list[str]]] = [{"APIKeyCookie": []}, {"OAuth2PasswordBearer": []}]


def operation(schema: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    found: dict[str, Any] = schema["paths"][path][method]
    return found


def test_routes_on_the_current_user_document_both_schemes(app: FastAPI, auth: RosterAuth) -> None:
    undocumented = app.openapi()
    # FastAPI sees no scheme through these dependencies any more.
    assert "security" not in operation(undocumented, "/probe/me")
    app.openapi_schema = None
    schema = document_credentials(app.openapi(), app.routes)
    for path, method in [
        ("/probe/me", "get"),
        ("/probe/admin", "get"),
        ("/users/me", "get"),
        ("/users/me", "patch"),
        ("/users/me/sessions", "get"),
        ("/events", "get"),
    ]:
        assert operation(schema, path, method)["security"] == BOTH_SCHEMES, (method, path)
    # Routes with no current user stay open; FastAPI Users' logout keeps its own scheme.
    assert "security" not in operation(schema, "/probe/db")
    assert "security" not in operation(schema, "/auth/register", "post")
    assert operation(schema, "/auth/jwt/logout", "post")["security"] == [
        {"OAuth2PasswordBearer": []}
    ]
    assert schema["components"]["securitySchemes"] == {
        "APIKeyCookie": {"type": "apiKey", "in": "cookie", "name": auth.config.cookie_name},
        "OAuth2PasswordBearer": {
            "type": "oauth2",
            "flows": {"password": {"scopes": {}, "tokenUrl": "auth/jwt/login"}},
        },
    }
