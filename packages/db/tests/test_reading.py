"""The reader: single statements without a transaction, on the generic plans' engine when a
statement asks for it."""

from sqlalchemy import text

from roster_db import EngineReader, create_engine, with_generic_plan

SHOW_PLAN_MODE = text("SHOW plan_cache_mode")


async def test_statements_marked_for_a_generic_plan_run_on_the_generic_plans_engine(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, autocommit=True)
    generic = create_engine(
        database_url, pool_size=1, max_overflow=0, autocommit=True, generic_plans=True
    )
    reader = EngineReader(engine, generic)
    try:
        assert [tuple(row) for row in await reader.all(SHOW_PLAN_MODE)] == [("auto",)]
        marked = with_generic_plan(SHOW_PLAN_MODE)
        assert [tuple(row) for row in await reader.all(marked)] == [("force_generic_plan",)]
        # Marking returns a copy: the statement as written keeps the default.
        assert [tuple(row) for row in await reader.all(SHOW_PLAN_MODE)] == [("auto",)]
    finally:
        await generic.dispose()
        await engine.dispose()


async def test_without_a_generic_plans_engine_every_statement_runs_on_the_one_engine(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0, autocommit=True)
    try:
        reader = EngineReader(engine)
        marked = with_generic_plan(SHOW_PLAN_MODE)
        assert [tuple(row) for row in await reader.all(marked)] == [("auto",)]
    finally:
        await engine.dispose()
