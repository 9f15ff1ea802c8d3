"""How the plugin chooses its Postgres: unit tests of the selection logic (no Docker needed)."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from roster_db.testing import ProviderUnavailableError, choose_provider
from roster_db.testkit import Provider


def _docker(answers: bool):  # type: ignore[no-untyped-def]
    calls: list[None] = []

    def available() -> bool:
        calls.append(None)
        return answers

    available.calls = calls  # type: ignore[attr-defined]
    return available


def test_a_database_url_wins_over_docker() -> None:
    docker = _docker(True)
    choice = choose_provider({"ROSTER_TEST_DATABASE_URL": "postgresql://x/y"}, docker)
    assert choice.provider is Provider.URL
    assert not choice.forced
    assert docker.calls == []  # no need to ask Docker at all


def test_docker_is_used_when_it_answers() -> None:
    assert choose_provider({}, _docker(True)).provider is Provider.DOCKER


def test_embedded_is_the_last_resort() -> None:
    choice = choose_provider({}, _docker(False))
    assert choice.provider is Provider.EMBEDDED
    assert "no Docker engine" in choice.reason


@pytest.mark.parametrize("value", ["embedded", "EMBEDDED", " embedded "])
def test_forcing_embedded_skips_the_url_and_docker(value: str) -> None:
    choice = choose_provider(
        {"ROSTER_TEST_DB": value, "ROSTER_TEST_DATABASE_URL": "postgresql://x/y"}, _docker(True)
    )
    assert choice.provider is Provider.EMBEDDED
    assert choice.forced


def test_forcing_docker_without_an_engine_fails_loudly() -> None:
    with pytest.raises(ProviderUnavailableError, match="no Docker engine"):
        choose_provider({"ROSTER_TEST_DB": "docker"}, _docker(False))


def test_forcing_url_without_a_url_fails_loudly() -> None:
    with pytest.raises(ProviderUnavailableError, match="ROSTER_TEST_DATABASE_URL"):
        choose_provider({"ROSTER_TEST_DB": "url"}, _docker(True))


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ProviderUnavailableError, match="not one of"):
        choose_provider({"ROSTER_TEST_DB": "sqlite"}, _docker(True))


async def test_the_session_database_is_a_real_postgres(db_engine: AsyncEngine) -> None:
    async with db_engine.connect() as connection:
        version = (await connection.execute(text("SHOW server_version_num"))).scalar_one()
        database = (await connection.execute(text("SELECT current_database()"))).scalar_one()
    assert int(version) >= 130000
    assert database.startswith("roster_test_")
