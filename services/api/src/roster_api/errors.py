"""One error body everywhere: `{"detail": ...}`, FastAPI's own shape, which FastAPI Users fills
with UPPER_SNAKE codes. The service adds its own codes for what happens outside the routes."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any, Final

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from roster_db import is_database_unavailable, is_retryable, is_time_limit_exceeded, sqlstate_of

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE: Final = "DATABASE_UNAVAILABLE"
DATABASE_NOT_MIGRATED: Final = "DATABASE_NOT_MIGRATED"
REQUEST_BODY_TOO_LARGE: Final = "REQUEST_BODY_TOO_LARGE"
INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"

# How long a client should wait before retrying while the database is away.
RETRY_AFTER_SECONDS: Final = 5


class ErrorBody(BaseModel):
    """The body of every error answer. `detail` is a code such as `DATABASE_UNAVAILABLE`, an
    object with `code` and `reason`, or (422) FastAPI's list of validation errors."""

    detail: str | dict[str, Any] | list[dict[str, Any]]


class RequestBodyTooLargeError(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, REQUEST_BODY_TOO_LARGE)


def error_response(
    status_code: int, detail: Any, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def database_unavailable_response() -> JSONResponse:
    return error_response(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        DATABASE_UNAVAILABLE,
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
    return error_response(status.HTTP_500_INTERNAL_SERVER_ERROR, INTERNAL_SERVER_ERROR)


__all__ = [
    "DATABASE_NOT_MIGRATED",
    "DATABASE_UNAVAILABLE",
    "INTERNAL_SERVER_ERROR",
    "REQUEST_BODY_TOO_LARGE",
    "RETRY_AFTER_SECONDS",
    "ErrorBody",
    "RequestBodyTooLargeError",
    "database_unavailable_response",
    "error_response",
    "response_for_exception",
]
