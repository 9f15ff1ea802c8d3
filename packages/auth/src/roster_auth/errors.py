"""Refusals that are not about the request's content but about load: the client should come
back later. They are HTTP exceptions carrying their status, code and `Retry-After`, because
they can be raised under FastAPI Users' own routes too (a password change hashes), which
would not map a domain error; FastAPI answers them as `{"detail": code}`, the service's one
error shape."""

import math
from typing import Any, ClassVar, Final

from fastapi import HTTPException, status
from fastapi_users.router.common import ErrorModel

PASSWORD_HASHING_BUSY: Final = "PASSWORD_HASHING_BUSY"  # noqa: S105 (an error code)
TOO_MANY_REQUESTS: Final = "TOO_MANY_REQUESTS"
OAUTH_PROVIDER_UNAVAILABLE: Final = "OAUTH_PROVIDER_UNAVAILABLE"


# The OpenAPI answers of a route for signed-in users, and of one for superusers.
UNAUTHORIZED_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing token or inactive user."},
}
SUPERUSER_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **UNAUTHORIZED_RESPONSES,
    status.HTTP_403_FORBIDDEN: {"description": "Not a superuser."},
}


def bad_request(code: str, reason: str | None = None) -> HTTPException:
    """FastAPI Users' 400 answer: `{"detail": CODE}`, or `{"detail": {"code": CODE, "reason":
    REASON}}` when the code comes with a reason (a password refused, and why)."""
    return HTTPException(
        status.HTTP_400_BAD_REQUEST,
        detail=code if reason is None else {"code": code, "reason": reason},
    )


def retry_after_header(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds, at least 1 (RFC 9110 allows no fractions)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RetryLaterError(HTTPException):
    code: ClassVar[str]
    status_code_of_class: ClassVar[int]

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(
            self.status_code_of_class,
            detail=self.code,
            headers=retry_after_header(retry_after_seconds),
        )
        self.retry_after_seconds = max(1, math.ceil(retry_after_seconds))


class PasswordHashingBusyError(RetryLaterError):
    """Every hashing slot is taken and the queue for them is full."""

    code = PASSWORD_HASHING_BUSY
    status_code_of_class = status.HTTP_503_SERVICE_UNAVAILABLE


class TooManyRequestsError(RetryLaterError):
    """A throttle's limit is reached for this client address or account."""

    code = TOO_MANY_REQUESTS
    status_code_of_class = status.HTTP_429_TOO_MANY_REQUESTS


class OAuthProviderUnavailableError(RetryLaterError):
    """An identity provider did not answer in time, or answered with a server error: only
    that provider's routes refuse."""

    code = OAUTH_PROVIDER_UNAVAILABLE
    status_code_of_class = status.HTTP_503_SERVICE_UNAVAILABLE


_RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


# What each refusal's documented answer says, by status.
_REFUSALS: Final = {
    status.HTTP_429_TOO_MANY_REQUESTS: (
        TOO_MANY_REQUESTS,
        "too many attempts from this client address or for this account",
    ),
    status.HTTP_503_SERVICE_UNAVAILABLE: (
        PASSWORD_HASHING_BUSY,
        "every password hashing slot is taken and the queue for them is full",
    ),
}


def retry_later_responses(
    *, hashes: bool = False, throttled: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that hashes a password (503) or is throttled (429)."""
    statuses = [status.HTTP_429_TOO_MANY_REQUESTS] if throttled else []
    if hashes:
        statuses.append(status.HTTP_503_SERVICE_UNAVAILABLE)
    responses: dict[int | str, dict[str, Any]] = {}
    for status_code in statuses:
        code, reason = _REFUSALS[status_code]
        responses[status_code] = {
            "model": ErrorModel,
            "description": f"`{code}`: {reason}; try again after `Retry-After` seconds.",
            "headers": _RETRY_AFTER,
        }
    return responses


__all__ = [
    "OAUTH_PROVIDER_UNAVAILABLE",
    "PASSWORD_HASHING_BUSY",
    "SUPERUSER_RESPONSES",
    "TOO_MANY_REQUESTS",
    "UNAUTHORIZED_RESPONSES",
    "OAuthProviderUnavailableError",
    "PasswordHashingBusyError",
    "RetryLaterError",
    "TooManyRequestsError",
    "bad_request",
    "retry_later_responses",
]
