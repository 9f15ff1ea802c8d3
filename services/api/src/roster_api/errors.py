"""One error body everywhere: `{"detail": ...}`, FastAPI's own shape, which FastAPI Users fills
with UPPER_SNAKE codes. The service adds its own codes for what happens outside the routes."""

from __future__ import annotations

import enum
import logging
import math
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from roster_db import is_database_unavailable, is_retryable, is_time_limit_exceeded, sqlstate_of

logger = logging.getLogger(__name__)


class ServiceErrorCode(enum.StrEnum):
    """The service's own `detail` codes, beside FastAPI Users' `ErrorCode` and the groups'."""

    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    DATABASE_NOT_MIGRATED = "DATABASE_NOT_MIGRATED"
    REQUEST_BODY_TOO_LARGE = "REQUEST_BODY_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


# How long a client should wait before retrying while the database is away.
RETRY_AFTER_SECONDS: Final = 5


class ErrorBody(BaseModel):
    """The body of every error answer. `detail` is a code such as `DATABASE_UNAVAILABLE`, an
    object with `code` and `reason`, or (422) FastAPI's list of validation errors."""

    detail: str | dict[str, Any] | list[dict[str, Any]]


class RequestBodyTooLargeError(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, ServiceErrorCode.REQUEST_BODY_TOO_LARGE)


@dataclass(frozen=True)
class InputProblem:
    """One input error, answered as a 422 in FastAPI's validation shape (`detail`: a list of
    errors with `type`, `loc`, `msg`), so clients read it like any other validation error."""

    type: str
    loc: list[str | int]
    msg: str
    ctx: dict[str, Any] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"type": self.type, "loc": self.loc, "msg": self.msg}
        # Never echoed: the input is what could not be stored or rendered.
        error["input"] = None
        if self.ctx:
            error["ctx"] = self.ctx
        return JSONResponse({"detail": [error]}, status_code=422)


def error_response(
    status_code: int, detail: Any, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def database_unavailable_response() -> JSONResponse:
    return error_response(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        ServiceErrorCode.DATABASE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _database_error_in(exc: BaseException) -> sa_exc.DBAPIError | None:
    for current in (exc, exc.__cause__, exc.__context__):
        if isinstance(current, sa_exc.DBAPIError):
            return current
    return None


def log_unhandled(exc: Exception, path: str) -> None:
    """Log an unexpected error with its traceback. A database error's message quotes the
    statement's parameters and the server's DETAIL (row values: password hashes, tokens), so
    for those the log keeps the type, the SQLSTATE and the stack frames only."""
    database_error = _database_error_in(exc)
    if database_error is None:
        logger.error("unhandled error", exc_info=exc, extra={"path": path})
        return
    logger.error(
        "unhandled error",
        extra={
            "path": path,
            "error": type(database_error).__name__,
            "sqlstate": sqlstate_of(database_error),
            "traceback": "".join(traceback.format_tb(exc.__traceback__)),
        },
    )


def response_for_exception(exc: Exception, path: str) -> JSONResponse:
    """The answer for an exception no route handled: 503 when the database is away (asyncpg's
    OSError/TimeoutError as well as SQLAlchemy's errors, from our code or FastAPI Users'), when
    it aborted a transaction for a concurrent one, or when a time limit cut a statement short;
    an HTTP exception's own status; and otherwise a logged 500."""
    if isinstance(exc, StarletteHTTPException):
        return error_response(exc.status_code, exc.detail, headers=exc.headers)
    if is_database_unavailable(exc):
        # Expected while the database is down: one line, no traceback per request.
        logger.warning(
            "database unavailable",
            extra={"path": path, "error": type(exc).__name__},
        )
        return database_unavailable_response()
    if is_retryable(exc):
        # Postgres aborted this transaction to break a deadlock (or a serialization
        # conflict) with a concurrent one; nothing was written and a retry may succeed.
        logger.warning(
            "transaction aborted by a concurrent one",
            extra={"path": path, "sqlstate": sqlstate_of(exc)},
        )
        return database_unavailable_response()
    if is_time_limit_exceeded(exc):
        # A statement, a lock wait or an idle transaction ran past the connection's limit:
        # the server rolled it back; the database is busy for this request, not broken.
        logger.warning(
            "database time limit exceeded",
            extra={"path": path, "sqlstate": sqlstate_of(exc)},
        )
        return database_unavailable_response()
    log_unhandled(exc, path)
    return error_response(
        status.HTTP_500_INTERNAL_SERVER_ERROR, ServiceErrorCode.INTERNAL_SERVER_ERROR
    )


# What FastAPI answers (400) when reading a body fails other than by a JSON syntax error: nesting
# deeper than the parser's recursion limit, an integer of more than 4,300 digits.
FASTAPI_BODY_PARSE_ERROR: Final = "There was an error parsing the body"

# The 422 body echoes each error's input; JSON cannot hold bytes that are not UTF-8 (a body sent
# as text/plain) nor non-finite floats (1e400 parses to inf), which would make the answer a 500.
_RENDERABLE_INPUT: Final[dict[Any, Any]] = {
    bytes: lambda value: value.decode("utf-8", "replace"),
    float: lambda value: value if math.isfinite(value) else str(value),
}


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with inputs that JSON can always render."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"detail": jsonable_encoder(exc.errors(), custom_encoder=_RENDERABLE_INPUT)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


_PATH_ITEMS_STATE: Final = "roster_path_items"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _path_items(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    """The published paths as regular expressions with their methods, most specific first:
    OpenAPI matches a concrete path (`/users/me`) before a template (`/users/{id}`)."""
    items: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, _PATH_ITEMS_STATE, None
    )
    if items is None:
        paths = app.openapi().get("paths", {})
        ordered = sorted(paths.items(), key=lambda entry: entry[0].count("{"))
        items = [
            (
                compile_path(template)[0],
                sorted(method.upper() for method in item if method in _HTTP_METHODS),
            )
            for template, item in ordered
        ]
        setattr(app.state, _PATH_ITEMS_STATE, items)
    return items


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """The methods of the published path that `path` is, or None for a path that is not
    published (the docs). Starlette names only the methods of the first route whose path
    matched, and `/users/me` is also matched by `/users/{id}`."""
    for pattern, methods in _path_items(app):
        if pattern.match(path):
            return methods
    return None


async def http_error_handler(request: Request, exc: Exception) -> Any:
    """FastAPI's answer for HTTP exceptions, with an `Allow` that lists every method of the
    path, and 422 (as for every other body that cannot be read) instead of FastAPI's 400."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        methods = allowed_methods(request.app, request.scope.get("path", ""))
        if methods is not None:
            headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
            exc = StarletteHTTPException(exc.status_code, exc.detail, headers=headers)
    elif exc.status_code == status.HTTP_400_BAD_REQUEST and exc.detail == FASTAPI_BODY_PARSE_ERROR:
        return InputProblem(
            "json_invalid",
            ["body"],
            "The body could not be parsed (nested too deeply, or a number too long)",
        ).response()
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)


__all__ = [
    "RETRY_AFTER_SECONDS",
    "ErrorBody",
    "InputProblem",
    "RequestBodyTooLargeError",
    "ServiceErrorCode",
    "allowed_methods",
    "database_unavailable_response",
    "error_response",
    "install_error_handlers",
    "response_for_exception",
]
