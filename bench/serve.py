"""Roster as production builds it (`roster_api.app.create_app_from_environment`, the factory
`roster serve` hands uvicorn), plus the bench's counters: what uvicorn serves during the benchmark.

`uvicorn bench.serve:create_bench_app --factory`. The service itself carries no bench code: the
counting hooks are SQLAlchemy event listeners registered on the `Engine` and `Pool` classes
(so they see the engine the app builds in its lifespan), and the stats endpoint is an ASGI
wrapper around the app.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from starlette.types import ASGIApp

from bench.counting import Counters, StatsEndpoint


def count_statements(counters: Counters) -> None:
    """Count every statement SQLAlchemy sends, and every other round trip asyncpg makes
    (BEGIN, COMMIT, ROLLBACK, pre-ping), in this process."""

    def before_cursor_execute(*_: Any) -> None:
        counters.statement()
        counters.round_trip()

    def on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # SQLAlchemy's statements go through asyncpg prepared statements, which asyncpg does
        # not report to query loggers; its simple queries (transaction control, the ping) are.
        record.driver_connection.add_query_logger(counters.round_trip)  # type: ignore[union-attr]

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Pool, "connect", on_connect)


def create_bench_app() -> ASGIApp:
    from roster_api.app import create_app_from_environment

    counters = Counters()
    count_statements(counters)
    return StatsEndpoint(create_app_from_environment(), counters)
