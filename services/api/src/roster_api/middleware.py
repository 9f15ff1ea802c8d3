"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and re-wrap every request).

- `BodySizeLimitMiddleware`: 413 in the common error shape, for a declared `Content-Length`
  and for chunked bodies that grow past the limit while they are read.
- `ErrorResponseMiddleware`: whatever no route handled becomes 503 (database away) or 500.
- `AccessLogMiddleware`: one structured line per request.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roster_api.errors import (
    REQUEST_BODY_TOO_LARGE,
    RequestBodyTooLargeError,
    error_response,
    response_for_exception,
)
from roster_api.logging import request_fields

access_logger = logging.getLogger("roster_api.access")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            # Refused before a byte of the body is read.
            response = error_response(413, REQUEST_BODY_TOO_LARGE, headers={"Connection": "close"})
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    # Raised where the body is read: FastAPI answers an HTTPException raised
                    # there with its status and detail.
                    raise RequestBodyTooLargeError()
            return message

        await self.app(scope, limited_receive, send)


class ErrorResponseMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def watching_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as exc:
            if response_started:
                # Too late to answer differently; let the server close the connection.
                raise
            response = response_for_exception(exc, scope.get("path", ""))
            await response(scope, receive, send)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def recording_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            access_logger.info(
                "request",
                extra={
                    **request_fields(scope),
                    "status": status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


__all__ = ["AccessLogMiddleware", "BodySizeLimitMiddleware", "ErrorResponseMiddleware"]
