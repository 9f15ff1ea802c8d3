"""What a load generator sends: one request over and over, or a fixed cycle of requests issued
in order across all connections (the write path adds a member, later removes it).

Both load generators (wrk through a generated Lua script, and the Python fallback) take the
same plan, so a scenario is written once.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

# In a request's body, each occurrence is replaced by a fresh random hex string (16 digits) every
# time the request is sent: the login flood's unknown emails and passwords, never the same twice.
# Letters and underscores only, so that it survives form encoding and Lua patterns as it is.
RANDOM_TOKEN: Final = "__random__"
RANDOM_HEX_DIGITS: Final = 16


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def randomized(self) -> bool:
        return RANDOM_TOKEN.encode() in self.body

    def body_to_send(self) -> bytes:
        """The body as sent this time: every `RANDOM_TOKEN` replaced by its own random value."""
        if not self.randomized:
            return self.body
        return re.sub(
            re.escape(RANDOM_TOKEN.encode()),
            lambda _: secrets.token_hex(RANDOM_HEX_DIGITS // 2).encode(),
            self.body,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HttpRequest:
        headers = data["headers"]
        assert isinstance(headers, dict)
        return cls(
            method=str(data["method"]),
            path=str(data["path"]),
            headers={str(k): str(v) for k, v in headers.items()},
            body=str(data["body"]).encode(),
        )


@dataclass(frozen=True)
class RequestPlan:
    """Requests issued in this order, starting over at the end. With one outstanding request per
    connection, request `n` has completed before request `n + connections` is issued, which is
    what lets the write cycle remove a member some way after adding it."""

    cycle: tuple[HttpRequest, ...]

    @classmethod
    def repeat(cls, request: HttpRequest) -> RequestPlan:
        return cls((request,))

    def dumps(self) -> str:
        return json.dumps([request.to_json() for request in self.cycle])

    @classmethod
    def loads(cls, text: str) -> RequestPlan:
        return cls(tuple(HttpRequest.from_json(item) for item in json.loads(text)))
