"""roster-db: the shared data layer."""

from roster_db.audit import AuditAction, audit_event, record_event
from roster_db.base import (
    NAMING_CONVENTION,
    Base,
    SQLModelBase,
    create_with_table,
    mapper_registry,
    metadata,
)
from roster_db.dependencies import ReaderDep, SessionDep, get_reader, get_session, reader_of
from roster_db.errors import (
    SQLState,
    constraint_name_of,
    is_check_violation,
    is_database_unavailable,
    is_foreign_key_violation,
    is_retryable,
    is_time_limit_exceeded,
    is_unique_violation,
    sqlstate_of,
)
from roster_db.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    LimitQuery,
    OffsetQuery,
    Page,
    PageParams,
    PageParamsDep,
)
from roster_db.reading import EngineReader, Reader, SessionReader
from roster_db.responses import RowsJSONResponse
from roster_db.session import (
    create_engine,
    create_sessionmaker,
    one_off_engine,
    session_scope,
    transactional,
)

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "NAMING_CONVENTION",
    "AuditAction",
    "Base",
    "EngineReader",
    "LimitQuery",
    "OffsetQuery",
    "Page",
    "PageParams",
    "PageParamsDep",
    "Reader",
    "ReaderDep",
    "RowsJSONResponse",
    "SQLModelBase",
    "SQLState",
    "SessionDep",
    "SessionReader",
    "audit_event",
    "constraint_name_of",
    "create_engine",
    "create_sessionmaker",
    "create_with_table",
    "get_reader",
    "get_session",
    "is_check_violation",
    "is_database_unavailable",
    "is_foreign_key_violation",
    "is_retryable",
    "is_time_limit_exceeded",
    "is_unique_violation",
    "mapper_registry",
    "metadata",
    "one_off_engine",
    "reader_of",
    "record_event",
    "session_scope",
    "sqlstate_of",
    "transactional",
]
