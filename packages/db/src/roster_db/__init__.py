"""roster-db: the shared data layer."""

from roster_db.base import NAMING_CONVENTION, Base, SQLModelBase, mapper_registry, metadata
from roster_db.dependencies import SessionDep, get_session
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
from roster_db.pagination import MAX_LIMIT, Page, PageParams, PageParamsDep, page_params
from roster_db.session import create_engine, create_sessionmaker, one_off_engine, session_scope

__all__ = [
    "MAX_LIMIT",
    "NAMING_CONVENTION",
    "Base",
    "Page",
    "PageParams",
    "PageParamsDep",
    "SQLModelBase",
    "SQLState",
    "SessionDep",
    "constraint_name_of",
    "create_engine",
    "create_sessionmaker",
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
    "page_params",
    "session_scope",
    "sqlstate_of",
]
