"""Input no route can take gets a clear 4xx, never a 500, on every route it can reach: NUL in
any text (path, query, form, JSON), JSON that is not JSON (NaN, Infinity, not UTF-8, nested
beyond reason), multipart bodies; and a 405 names every method of its path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import create_app
from roster_auth.testing import DEFAULT_PASSWORD, config_for_tests, create_user
from roster_db.session import create_sessionmaker

from .conftest import make_settings, serve

Sessionmaker = async_sessionmaker[AsyncSession]

ADMIN_EMAIL: Final = "admin@example.com"
# Stand-ins for path parameters: well formed, so that routing and parsing reach the body.
PATH_VALUES: Final = {"group_id": "1", "user_id": "00000000-0000-4000-8000-000000000000"}
PATH_VALUES["id"] = PATH_VALUES["user_id"]
PATH_VALUES["invitation_id"] = PATH_VALUES["user_id"]
PATH_VALUES["session_id"] = PATH_VALUES["user_id"]


# One app for the whole module, built at import: setting up an app's routes and schema costs
# about half a second, and no test here changes it. Its session maker is bound to each test's
# connection in turn (the `app` fixture), so each test still runs in its own rolled-back
# transaction, as with an app of its own.
SESSIONMAKER: Final = async_sessionmaker(class_=AsyncSession)
APP: Final = create_app(make_settings(), sessionmaker=SESSIONMAKER, auth_config=config_for_tests())
SCHEMA: Final = APP.openapi()


@pytest.fixture
def app(db_connection: AsyncConnection) -> FastAPI:
    """The module's app, its sessions inside this test's outer transaction."""
    SESSIONMAKER.configure(**create_sessionmaker(db_connection).kw)
    return APP


@pytest_asyncio.fixture
async def admin_client(
    app: FastAPI, db_sessionmaker: Sessionmaker
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the whole app, signed in as a superuser (so every route reads its body)."""
    async with db_sessionmaker() as session:
        await create_user(session, email=ADMIN_EMAIL, is_superuser=True)
    async with serve(app) as client:
        login = await client.post(
            "/auth/jwt/login", data={"username": ADMIN_EMAIL, "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield client


def operations(media_type: str | None = None) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation, or of those whose body is `media_type`."""
    found = []
    for template, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if media_type is None or media_type in content:
                found.append((method.upper(), template.format(**PATH_VALUES)))
    return found


JSON_OPERATIONS: Final = operations("application/json")
FORM_OPERATIONS: Final = operations("application/x-www-form-urlencoded")


def the_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert isinstance(error, dict)
    return error


def test_every_kind_of_body_is_covered() -> None:
    assert len(JSON_OPERATIONS) >= 10
    assert {path for _, path in FORM_OPERATIONS} == {"/auth/jwt/login", "/auth/cookie/login"}


# --- JSON that is not JSON ------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("method", "path"), JSON_OPERATIONS)
async def test_nan_and_infinity_are_not_json_on_any_route(
    admin_client: httpx.AsyncClient, method: str, path: str, constant: str
) -> None:
    # Each field name of every JSON body, so that a route's own validation would see it.
    body = (
        "{"
        + ", ".join(
            f'"{field}": {constant}'
            for field in ("name", "email", "password", "token", "role", "user_id", "display_name")
        )
        + "}"
    )
    response = await admin_client.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    error = the_error(response)
    assert error["type"] == "json_invalid"
    assert constant.lstrip("-") in error["msg"]
    assert "RFC 8259" in error["msg"]


async def test_the_word_nan_in_a_string_is_ordinary_text(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post("/groups", json={"name": "NaN Infinity"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "NaN Infinity"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        # UTF-8's encoding of a lone surrogate: Python's parser decodes it, asyncpg cannot
        # encode it again.
        (b'{"name": "\xed\xa0\x80"}', ["body", 10]),
        (b'{"name": "\xff"}', ["body", 10]),
        ('{"name": "utf-16"}'.encode("utf-16"), ["body", 0]),  # its byte-order mark
        # Without the mark, all ASCII and NULs, which Python's parser would also decode.
        ('{"name": "utf-16"}'.encode("utf-16-le"), ["body", 1]),
    ],
)
async def test_a_json_body_that_is_not_utf8_is_a_422(
    admin_client: httpx.AsyncClient, body: bytes, where: list[object]
) -> None:
    response = await admin_client.post(
        "/groups", content=body, headers={"Content-Type": "application/json"}
    )
    error = the_error(response)
    assert error["type"] == "json_invalid"
    assert error["loc"] == where


async def test_non_ascii_utf8_is_ordinary_text(admin_client: httpx.AsyncClient) -> None:
    body = '{"name": "Équipe 東京 \\u00e9"}'.encode()
    response = await admin_client.post(
        "/groups", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Équipe 東京 é"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser's recursion limit
        '{"name": ' + "9" * 5000 + "}",  # more digits than Python converts to an int
    ],
)
async def test_a_body_the_parser_gives_up_on_is_a_422_not_fastapis_400(
    admin_client: httpx.AsyncClient, body: str
) -> None:
    response = await admin_client.post(
        "/groups", content=body, headers={"Content-Type": "application/json"}
    )
    assert the_error(response)["type"] == "json_invalid"


async def test_a_number_too_large_for_a_float_is_a_422_that_renders(
    app: FastAPI,
) -> None:
    # 1e400 parses to inf; the 422 echoes it, and JSON has no inf.
    async with serve(app) as client:
        response = await client.post(
            "/auth/register",
            content=b'{"email": 1e400, "password": "x"}',
            headers={"Content-Type": "application/json"},
        )
    error = the_error(response)
    assert error["loc"] == ["body", "email"]
    assert error["input"] == "inf"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_route_sent_undecodable_bytes_of_another_type_is_a_422(
    admin_client: httpx.AsyncClient, content_type: str
) -> None:
    response = await admin_client.post(
        "/groups", content=b"name=\xff\xfe", headers={"Content-Type": content_type}
    )
    error = the_error(response)
    assert error["loc"] == ["body"]
    assert error["input"] == "name=\ufffd\ufffd"


# --- NUL, wherever text comes in ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('{"name": "a\\u0000b"}', ["body", "name"]),
        ('{"name": "ok", "extra": ["x", {"deep": "\\u0000"}]}', ["body", "extra", 1, "deep"]),
        ('{"name": "ok", "key\\u0000": 1}', ["body"]),
    ],
)
async def test_nul_anywhere_in_a_json_body_is_a_422(
    admin_client: httpx.AsyncClient, body: str, loc: list[object]
) -> None:
    response = await admin_client.post(
        "/groups", content=body, headers={"Content-Type": "application/json"}
    )
    error = the_error(response)
    assert error["type"] == "string_nul"
    assert error["loc"] == loc
    assert "NUL" in error["msg"]


async def test_nul_in_a_password_never_reaches_the_hasher(app: FastAPI) -> None:
    async with serve(app) as client:
        response = await client.post(
            "/auth/register",
            json={"email": "nul@example.com", "password": DEFAULT_PASSWORD + "\x00"},
        )
    assert the_error(response)["loc"] == ["body", "password"]


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(
    admin_client: httpx.AsyncClient,
) -> None:
    # The bytes `\u0000` appear, but they spell a backslash and "u0000".
    response = await admin_client.post(
        "/groups", content=b'{"name": "a\\\\u0000"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "a\\u0000"


@pytest.mark.parametrize(("method", "path"), FORM_OPERATIONS)
@pytest.mark.parametrize(
    ("form", "loc"),
    [
        (b"username=%00&password=x", ["body", "username"]),
        (b"username=a%40example.com&password=pass%00word", ["body", "password"]),
        (b"username=a\x00b&password=x", ["body", "username"]),
    ],
)
async def test_nul_in_a_form_field_is_a_422_on_every_form_route(
    app: FastAPI, method: str, path: str, form: bytes, loc: list[object]
) -> None:
    async with serve(app) as client:
        response = await client.request(
            method,
            path,
            content=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    error = the_error(response)
    assert error["type"] == "string_nul"
    assert error["loc"] == loc


@pytest.mark.parametrize("query", ["email=%00", "email=a%00b@example.com", "limit=1&email=x%00"])
async def test_nul_in_a_query_string_is_a_422(admin_client: httpx.AsyncClient, query: str) -> None:
    response = await admin_client.get(f"/users?{query}")
    error = the_error(response)
    assert error["type"] == "string_nul"
    assert error["loc"] == ["query", "email"]


async def test_a_query_filter_without_nul_still_works(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.get("/users", params={"email": "ADMIN@"})
    assert response.status_code == 200, response.text
    assert [user["email"] for user in response.json()["items"]] == [ADMIN_EMAIL]


@pytest.mark.parametrize("path", ["/users/%00", "/groups/1%00", "/groups/%00/members"])
async def test_nul_in_a_path_segment_is_a_422(admin_client: httpx.AsyncClient, path: str) -> None:
    response = await admin_client.get(path)
    error = the_error(response)
    assert error["type"] == "string_nul"
    assert error["loc"] == ["path"]


# --- multipart ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\\ud800", "\\x00", "plain"])
@pytest.mark.parametrize(("method", "path"), FORM_OPERATIONS)
async def test_a_multipart_login_is_415_whatever_its_parts_declare(
    app: FastAPI, db_sessionmaker: Sessionmaker, method: str, path: str, value: str
) -> None:
    async with db_sessionmaker() as session:
        await create_user(session, email=ADMIN_EMAIL)
    boundary = "roster-boundary"
    # A part whose charset is unicode_escape: Starlette would decode `\ud800` to a lone
    # surrogate and hand it to the password hasher.
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="username"\r\n\r\n'
        f"{ADMIN_EMAIL}\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="password"\r\n'
        "Content-Type: text/plain; charset=unicode_escape\r\n\r\n"
        f"{value}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    async with serve(app) as client:
        response = await client.request(
            method,
            path,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert detail["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/x-www-form-urlencoded" in detail["reason"]


# --- 405 ------------------------------------------------------------------------------------


def documented_methods() -> list[tuple[str, set[str]]]:
    return [
        (template.format(**PATH_VALUES), {method.upper() for method in item})
        for template, item in SCHEMA["paths"].items()
    ]


@pytest.mark.parametrize(("path", "methods"), documented_methods())
async def test_a_405_allows_every_method_of_its_path(
    app: FastAPI, path: str, methods: set[str]
) -> None:
    async with serve(app) as client:
        response = await client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert {method.strip() for method in response.headers["allow"].split(",")} == methods


def test_users_me_has_several_methods() -> None:
    # The case that was wrong: Starlette named only the first route's methods.
    assert dict(documented_methods())["/users/me"] >= {"GET", "PATCH"}


# --- the published schema says all of it -----------------------------------------------------


def test_the_schema_documents_what_the_middleware_answers() -> None:
    for template, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {template}"
            responses = operation["responses"]
            assert "422" in responses, where
            if "requestBody" in operation:
                assert "415" in responses, where


def test_the_schema_rules_out_nul_in_every_text_a_request_carries() -> None:
    components = SCHEMA["components"]["schemas"]
    [email_filter] = [
        parameter
        for parameter in SCHEMA["paths"]["/users"]["get"]["parameters"]
        if parameter["name"] == "email"
    ]
    assert email_filter["schema"]["anyOf"][0]["pattern"] == "^[^\\u0000]*$"
    assert components["UserCreate"]["properties"]["password"]["pattern"] == "^[^\\u0000]*$"
    # Extra properties are ignored, but must not hold NUL either.
    assert components["UserCreate"]["additionalProperties"] == {
        "$ref": "#/components/schemas/NulFreeJson"
    }
    # Fields with a stricter pattern of their own keep it.
    assert "\\u0000-\\u0020" in components["GroupCreate"]["properties"]["name"]["pattern"]


def test_the_schema_describes_form_fields_as_fastapi_reads_them() -> None:
    form_ref = SCHEMA["paths"]["/auth/cookie/login"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]["$ref"]
    form = SCHEMA["components"]["schemas"][form_ref.rsplit("/", 1)[-1]]
    assert "null" not in json.dumps(form["properties"])
    assert form["properties"]["username"]["minLength"] == 1


def test_the_jwt_logout_documents_its_204() -> None:
    assert "204" in SCHEMA["paths"]["/auth/jwt/logout"]["post"]["responses"]


async def test_nul_at_the_bottom_of_the_deepest_document_the_parser_takes_is_a_422(
    admin_client: httpx.AsyncClient,
) -> None:
    depth = 900  # within the parser's limit, beyond what a recursive walk could follow
    body = '{"name": ' + "[" * depth + '"\\u0000"' + "]" * depth + "}"
    response = await admin_client.post(
        "/groups", content=body, headers={"Content-Type": "application/json"}
    )
    error = the_error(response)
    assert error["type"] == "string_nul"
    assert error["loc"] == ["body", "name", *[0] * depth]


async def test_addresses_are_internationalized_in_the_schema_as_they_are_stored(
    app: FastAPI,
) -> None:
    async with serve(app) as client:
        schema = (await client.get("/openapi.json")).json()
        registered = await client.post(
            "/auth/register",
            json={"email": "jörg@xn--bcher-kva.de", "password": DEFAULT_PASSWORD},
        )
    assert registered.status_code == 201, registered.text
    # Stored and answered in Unicode: not the ASCII-only `email` format of JSON Schema.
    assert registered.json()["email"] == "jörg@bücher.de"
    assert '"format": "email"' not in json.dumps(schema)
    components = schema["components"]["schemas"]
    assert components["UserRead"]["properties"]["email"]["format"] == "idn-email"
    assert components["UserCreate"]["properties"]["email"]["format"] == "idn-email"
