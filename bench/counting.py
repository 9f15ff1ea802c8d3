"""Counters inside a served app, read over HTTP by the driver: requests served, SQL statements
and database round trips, and the process's resident memory.

`StatsEndpoint` wraps an ASGI app: it counts every HTTP request and answers
`GET /__bench__/stats` itself (not counted). Both the roster app (`bench.serve`) and the floor
use it, so the two are measured by the same code.

- statements: the SQL the application's code sends (for roster, every SQLAlchemy cursor
  execute; for the floor, every query its handlers run);
- round trips: statements plus what the driver sends around them: BEGIN, COMMIT, ROLLBACK, the
  pool's pre-ping, the pool's reset. Those go through asyncpg's simple-query path, which asyncpg
  reports to query loggers (SQLAlchemy's statements go through prepared statements, which it
  does not report, hence two sources).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Final

import psutil
from starlette.types import ASGIApp, Receive, Scope, Send

STATS_PATH: Final = "/__bench__/stats"


@dataclass
class Counters:
    requests: int = 0
    in_flight: int = 0  # requests started and not yet finished
    statements: int = 0
    round_trips: int = 0

    def statement(self) -> None:
        self.statements += 1

    def round_trip(self, *_: Any) -> None:
        """Also usable as an asyncpg query logger callback (it passes a LoggedQuery)."""
        self.round_trips += 1

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "statements": self.statements,
            "round_trips": self.round_trips,
            "rss_bytes": psutil.Process().memory_info().rss,
            "pid": os.getpid(),
        }


class StatsEndpoint:
    """ASGI middleware: counts HTTP requests, serves the counters at `STATS_PATH`."""

    def __init__(self, app: ASGIApp, counters: Counters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] == STATS_PATH:
                body = json.dumps(self.counters.snapshot()).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
            self.counters.requests += 1
            self.counters.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.counters.in_flight -= 1
            return
        await self.app(scope, receive, send)
