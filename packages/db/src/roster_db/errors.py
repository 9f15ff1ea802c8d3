"""Database errors in the terms upper layers answer with: conflict (409), missing (404),
unavailable or over a time limit (503). Classified by SQLSTATE, never by driver exception
class."""

import enum
from collections.abc import Iterator
from typing import Final

from sqlalchemy import exc as sa_exc


class SQLState(enum.StrEnum):
    """The SQLSTATE codes we act on (PostgreSQL appendix A)."""

    UNIQUE_VIOLATION = "23505"
    FOREIGN_KEY_VIOLATION = "23503"
    CHECK_VIOLATION = "23514"
    NOT_NULL_VIOLATION = "23502"
    SERIALIZATION_FAILURE = "40001"
    DEADLOCK_DETECTED = "40P01"
    QUERY_CANCELED = "57014"
    LOCK_NOT_AVAILABLE = "55P03"
    IDLE_IN_TRANSACTION_SESSION_TIMEOUT = "25P03"


# statement_timeout (57014), lock_timeout (55P03) and idle_in_transaction_session_timeout
# (25P03, reported when the server ends the session).
_TIME_LIMIT_CODES: Final = frozenset(
    {
        SQLState.QUERY_CANCELED,
        SQLState.LOCK_NOT_AVAILABLE,
        SQLState.IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    }
)


# Class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now), 53300 (too many
# connections): the server is not there for us right now; retrying later may work.
_UNAVAILABLE_CLASSES: Final = ("08",)
_UNAVAILABLE_CODES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: SQLAlchemy's `.orig`, then `__cause__`/`__context__`."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE carried by a database error, whichever layer wrapped it."""
    for current in _chain(error):
        for attribute in ("sqlstate", "pgcode"):
            code = getattr(current, attribute, None)
            if isinstance(code, str) and code:
                return code
    return None


def constraint_name_of(error: BaseException) -> str | None:
    """The name of the violated constraint, when the server reported one."""
    for current in _chain(error):
        name = getattr(current, "constraint_name", None)
        if isinstance(name, str) and name:
            return name
    return None


def is_unique_violation(error: BaseException) -> bool:
    return sqlstate_of(error) == SQLState.UNIQUE_VIOLATION


def is_foreign_key_violation(error: BaseException) -> bool:
    return sqlstate_of(error) == SQLState.FOREIGN_KEY_VIOLATION


def is_check_violation(error: BaseException) -> bool:
    return sqlstate_of(error) == SQLState.CHECK_VIOLATION


def is_retryable(error: BaseException) -> bool:
    """True when the server aborted the transaction to resolve a conflict between concurrent
    transactions (a deadlock, a serialization failure): the same request may succeed if sent
    again, so it deserves a 503 with Retry-After rather than a 500."""
    return sqlstate_of(error) in {SQLState.SERIALIZATION_FAILURE, SQLState.DEADLOCK_DETECTED}


def is_time_limit_exceeded(error: BaseException) -> bool:
    """True when the server gave up on a statement for one of the connection's time limits: it
    ran past `statement_timeout`, waited for a lock past `lock_timeout`, or its transaction sat
    idle past `idle_in_transaction_session_timeout`. Nothing was written; the request may succeed
    later, so it deserves a 503 with Retry-After rather than a 500."""
    return sqlstate_of(error) in _TIME_LIMIT_CODES


def is_database_unavailable(error: BaseException) -> bool:
    """True when the database could not be reached or gave up on us, rather than refusing a
    statement: refused connections, DNS failures, timeouts, an exhausted pool, a server that
    shuts down. These surface as `OSError`/`TimeoutError` from the driver as well as
    SQLAlchemy errors."""
    code = sqlstate_of(error)
    if code is not None:
        return code.startswith(_UNAVAILABLE_CLASSES) or code in _UNAVAILABLE_CODES
    for current in _chain(error):
        if isinstance(current, sa_exc.TimeoutError):  # the pool had no connection for us
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        # OSError covers ConnectionRefusedError and socket.gaierror; TimeoutError also
        # stands for asyncio's on 3.11+.
        if isinstance(current, OSError | TimeoutError):
            return True
        # asyncpg's "connection was closed" errors carry no SQLSTATE and come wrapped as
        # InterfaceError.
        if isinstance(current, sa_exc.InterfaceError):
            return True
    return False
