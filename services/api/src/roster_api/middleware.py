"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and re-wrap every request).

- `BodySizeLimitMiddleware`: 413 in the common error shape, for a declared `Content-Length`
  and for chunked bodies that grow past the limit while they are read.
- `LoneSurrogateMiddleware`: 422 for a JSON body whose strings hold a lone UTF-16 surrogate.
- `ErrorResponseMiddleware`: whatever no route handled becomes 503 (database away) or 500.
- `AccessLogMiddleware`: one structured line per request.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Final

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
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


# `\ud800` to `\udfff` escapes: the only way a JSON text can carry a code point that UTF-8 cannot
# encode. A cheap scan of the raw bytes, so that ordinary bodies are never parsed twice.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _holds_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(item) for item in value)
    return False


class LoneSurrogateMiddleware:
    """`{"password": "\\ud800"}` is valid JSON, and Python decodes it to a string that no
    UTF-8 encoder (the password hasher, asyncpg) accepts: without this, any free-text field is
    a 500 waiting to happen. Schemas cannot all opt in (FastAPI Users brings its own), so JSON
    bodies are checked once, here, and refused with a 422 in FastAPI's validation shape. A
    surrogate *pair* (an escaped emoji) decodes to one valid code point and passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = (
            Headers(scope=scope).get("content-type", "") if scope["type"] == "http" else ""
        )
        if "json" not in content_type:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _SURROGATE_ESCAPE.search(body) and self._lone_surrogate_in(body):
            response = JSONResponse(
                {
                    "detail": [
                        {
                            "type": "string_unicode",
                            "loc": ["body"],
                            "msg": "Strings must be valid Unicode: the body holds a lone "
                            "UTF-16 surrogate escape (\\ud800 to \\udfff)",
                            "input": None,
                        }
                    ]
                },
                status_code=422,
            )
            await response(scope, receive, send)
            return

        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay_receive, send)

    @staticmethod
    def _lone_surrogate_in(body: bytes) -> bool:
        try:
            document = json.loads(body)
        except ValueError:
            return False  # not JSON at all: the route's own 422 says so
        return _holds_lone_surrogate(document)


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


__all__ = [
    "AccessLogMiddleware",
    "BodySizeLimitMiddleware",
    "ErrorResponseMiddleware",
    "LoneSurrogateMiddleware",
]
