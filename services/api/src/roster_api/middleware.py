"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and re-wrap every request).

- `RequestInputMiddleware`: 413 for bodies over the limit, 415 for multipart, 422 for input
  that no route can store or answer about (NUL, lone surrogates, NaN, bodies not UTF-8).
- `ErrorResponseMiddleware`: whatever no route handled becomes 503 (database away) or 500.
- `AccessLogMiddleware`: one structured line per request.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Final
from urllib.parse import unquote_plus

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roster_api.errors import (
    InputProblem,
    RequestBodyTooLargeError,
    ServiceErrorCode,
    error_response,
    response_for_exception,
)
from roster_api.logging import request_fields

access_logger = logging.getLogger("roster_api.access")


# JSON media types, as FastAPI reads them: `application/json` and `application/<anything>+json`.
def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"

# What sends a JSON body through the careful check: an escaped lone surrogate (the only way a
# JSON text can carry a code point that UTF-8 cannot encode) or an escaped NUL, the non-JSON
# constants Python's parser accepts, and a raw NUL (never valid JSON; UTF-16 and UTF-32 bodies
# are full of them). A cheap scan of the raw bytes, so ordinary bodies are never parsed twice.
_SUSPECT_JSON: Final = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)|NaN|Infinity|\x00")
# A NUL in a query string or a urlencoded body: escaped (all Starlette decodes) or raw.
_NUL_URLENCODED: Final = re.compile(rb"%00|\x00")

NUL_MESSAGE: Final = (
    "Text must not contain the NUL character (U+0000): the database cannot store it"
)
SURROGATE_MESSAGE: Final = (
    "Strings must be valid Unicode: the body holds a lone UTF-16 surrogate escape "
    "(\\ud800 to \\udfff)"
)


class _NonJsonConstantError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonJsonConstantError(name)


def _string_problem(value: str) -> tuple[str, str] | None:
    if "\x00" in value:
        return "string_nul", NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "string_unicode", SURROGATE_MESSAGE
    return None


def _document_problem(document: Any) -> InputProblem | None:
    """The first string (key or value) in a parsed JSON document that cannot be stored, in
    document order. Iterative: the parser accepts nesting deeper than a recursive walk could
    follow."""
    pending: list[tuple[Any, list[str | int]]] = [(document, ["body"])]
    while pending:
        value, loc = pending.pop()
        children: list[tuple[Any, list[str | int]]] = []
        if isinstance(value, str):
            found = _string_problem(value)
            if found:
                return InputProblem(found[0], loc, found[1])
        elif isinstance(value, dict):
            for key, item in value.items():
                found = _string_problem(key)
                if found:
                    return InputProblem(found[0], loc, found[1])
                children.append((item, [*loc, key]))
        elif isinstance(value, list):
            children = [(item, [*loc, index]) for index, item in enumerate(value)]
        pending.extend(reversed(children))
    return None


def json_body_problem(body: bytes) -> InputProblem | None:
    """Why a JSON body cannot be taken as it is, or None (for almost every body, after one
    scan of its bytes: `isascii` and a regular expression, both in C)."""
    if not body.isascii():
        try:
            # Python's parser reads UTF-8-encoded surrogates (and other encodings); RFC 8259
            # asks for UTF-8, so anything else is refused here.
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            return InputProblem(
                "json_invalid",
                ["body", error.start],
                "The body is not valid UTF-8 (RFC 8259: JSON is exchanged as UTF-8)",
            )
    if _SUSPECT_JSON.search(body) is None:
        return None
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except _NonJsonConstantError as constant:
        return InputProblem(
            "json_invalid",
            ["body"],
            f"{constant} is not a JSON value (RFC 8259): send a number, a string or null",
        )
    except json.JSONDecodeError as error:
        # FastAPI's own answer for a body it cannot decode, with the position.
        return InputProblem(
            "json_invalid", ["body", error.pos], "JSON decode error", {"error": error.msg}
        )
    except (ValueError, RecursionError):
        return InputProblem("json_invalid", ["body"], "JSON decode error")
    return _document_problem(document)


def urlencoded_problem(encoded: bytes, location: str) -> InputProblem | None:
    """A NUL in a query string or form body (`location`: "query" or "body"), named by its
    field when the field's name is readable."""
    if _NUL_URLENCODED.search(encoded) is None:
        return None
    for pair in encoded.split(b"&"):
        if _NUL_URLENCODED.search(pair):
            # Decoded as Starlette decodes names: bytes as Latin-1, then %-escapes as UTF-8.
            name = unquote_plus(pair.partition(b"=")[0].decode("latin-1"))
            if "\x00" not in name:
                return InputProblem("string_nul", [location, name], NUL_MESSAGE)
    return InputProblem("string_nul", [location], NUL_MESSAGE)


class HttpMiddleware:
    """A pure ASGI middleware that handles HTTP requests (`handle`) and passes anything else
    (lifespan, websockets) straight to the application."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestInputMiddleware(HttpMiddleware):
    """Refuses, before any route sees it, input that no route can store or answer about.

    - 413 for a body larger than `max_body_size`: a declared `Content-Length` is refused before
      a byte is read, a chunked body when it grows past the limit.
    - 415 for a multipart body: no route takes files, and Starlette honours a part's `charset`
      (`unicode_escape` delivers lone surrogates and NULs to whatever reads the field). A route
      that takes files one day needs an exception here.
    - 422, in FastAPI's validation shape, for a NUL in the path, the query string or a
      urlencoded body (Postgres refuses NUL in text: SQLSTATE 22021), and for a JSON body that
      is not UTF-8, holds `NaN` or `Infinity` (not JSON; FastAPI's 422 would echo them and fail
      to render), or holds a string with a NUL or a lone surrogate (which no UTF-8 encoder,
      hence neither the password hasher nor asyncpg, accepts).

    Only JSON and urlencoded bodies are buffered (bounded by the limit) and scanned; others
    are streamed through the limit to the route. One layer for all of it: each ASGI layer
    costs every request."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        super().__init__(app)
        self.max_body_size = max_body_size

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self._target_problem(scope)
        if problem is not None:
            await problem.response()(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            await _too_large()(scope, receive, send)
            return
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type.startswith("multipart/"):
            await _unsupported_media_type(media_type)(scope, receive, send)
            return

        limited = self._limited(receive)
        has_body = (declared is not None and declared != "0") or "transfer-encoding" in headers
        is_json = _is_json(media_type)
        if not has_body or not (is_json or media_type == FORM_MEDIA_TYPE):
            await self.app(scope, limited, send)
            return
        try:
            body = await self._read_body(limited)
        except RequestBodyTooLargeError:
            await _too_large()(scope, receive, send)
            return
        if body is None:
            return  # the client went away before sending its body
        problem = json_body_problem(body) if is_json else urlencoded_problem(body, "body")
        if problem is not None:
            await problem.response()(scope, receive, send)
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
    def _target_problem(scope: Scope) -> InputProblem | None:
        # Servers decode %00 in the path to a NUL; the query string stays encoded.
        if "\x00" in scope.get("path", ""):
            return InputProblem("string_nul", ["path"], NUL_MESSAGE)
        query: bytes = scope.get("query_string", b"")
        return urlencoded_problem(query, "query") if query else None

    def _limited(self, receive: Receive) -> Receive:
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

        return limited_receive

    @staticmethod
    async def _read_body(receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large() -> JSONResponse:
    # The rest of the body is never read: the connection cannot be reused.
    return error_response(
        413, ServiceErrorCode.REQUEST_BODY_TOO_LARGE, headers={"Connection": "close"}
    )


def _unsupported_media_type(media_type: str) -> JSONResponse:
    return error_response(
        415,
        {
            "code": ServiceErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "reason": f"{media_type} bodies are not accepted: send the media type the "
            "operation declares (application/json, or application/x-www-form-urlencoded "
            "for the login forms)",
        },
    )


class ResponseWatch:
    """`send`, passed on, noting the status of the response once it has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


class ErrorResponseMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = ResponseWatch(send)
        try:
            await self.app(scope, receive, watch.send)
        except Exception as exc:
            if watch.status is not None:
                # Too late to answer differently; let the server close the connection.
                raise
            response = response_for_exception(exc, scope.get("path", ""))
            await response(scope, receive, send)


class AccessLogMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            # The access log is off (a level above INFO): nothing to time or watch.
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = ResponseWatch(send)
        try:
            await self.app(scope, receive, watch.send)
        finally:
            access_logger.info(
                "request",
                extra={
                    **request_fields(scope),
                    # No answer at all: the server answers 500 (or closes the connection).
                    "status": watch.status if watch.status is not None else 500,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


__all__ = [
    "AccessLogMiddleware",
    "ErrorResponseMiddleware",
    "RequestInputMiddleware",
    "json_body_problem",
    "urlencoded_problem",
]
