"""The service's configuration: the only place in roster that reads the environment.

Every variable starts with `ROSTER_` and may also come from a `.env` file in the working
directory. The environment is production unless `ROSTER_ENVIRONMENT=development` asks otherwise.
The secrets are checked here and only here (roster-auth takes them as given): a secret that is set
must be at least 32 bytes, counted in UTF-8 as the HS256 key it becomes, and differ from the
others; production also refuses a missing or placeholder one. The message names the variable to
fix.

Identity providers (OpenID Connect, GitHub, Google) are configured by their variables: all of a
provider's or none, in every environment, and checked here by roster-auth's own `OAuthProvider`,
so that a refusal names the variables instead of failing later with a traceback.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from roster_auth import AuthConfigError, OAuthProvider, ThrottleConfig
from roster_db.embedded import asyncpg_url

ENV_PREFIX: Final = "ROSTER_"
# An HS256 key shorter than the hash output (256 bits) weakens the signature (RFC 7518, 3.2).
MIN_SECRET_BYTES: Final = 32
# How every production refusal begins, so that the command line can add what to do instead.
PRODUCTION_REFUSAL: Final = "refusing to start in production"

# Lower-cased fragments that mark a value someone meant to replace.
PLACEHOLDER_FRAGMENTS: Final = (
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "placeholder",
    "your-secret",
    "your_secret",
    "example",
    "development-",
)
PLACEHOLDER_VALUES: Final = frozenset({"secret", "password", "dev", "test", "default"})
# The throttle settings' defaults are roster-auth's own, written once there.
_THROTTLE_DEFAULTS: Final = ThrottleConfig()

# Development runs without configuring secrets: these fixed values are stable across restarts,
# `--reload` and workers (so tokens keep working), and production refuses them by their prefix.
DEVELOPMENT_SECRETS: Final = {
    "access_token_secret": "development-access-token-secret-never-use-in-production",
    "reset_password_secret": "development-reset-password-secret-never-use-in-production",
    "verify_secret": "development-verify-secret-never-use-in-production",
}
SECRET_FIELDS: Final = tuple(DEVELOPMENT_SECRETS)

# Each identity provider's settings that must be set together.
OAUTH_PROVIDER_FIELDS: Final = {
    "OpenID Connect": ("oidc_discovery_url", "oidc_client_id", "oidc_client_secret"),
    "GitHub": ("github_client_id", "github_client_secret"),
    "Google": ("google_client_id", "google_client_secret"),
}
# Settings with defaults that only mean something with a provider: set without it, they are
# a partial set too (a forgotten variable), not ignored.
OAUTH_PROVIDER_OPTIONS: Final = {"OpenID Connect": ("oidc_name", "oidc_scopes")}
_SCOPE_SEPARATORS: Final = re.compile(r"[\s,]+")


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    JSON = "json"
    CONSOLE = "console"


def variable_name(field_name: str) -> str:
    """The environment variable that sets a field."""
    return f"{ENV_PREFIX}{field_name.upper()}"


def secret_problem(value: str | None, *, production: bool) -> str | None:
    """Why a secret is unfit, or None when it is fine. Unset is fine in development only,
    where the marked development value stands in."""
    if value is None:
        return "is not set" if production else None
    if not value.strip():
        return "is empty"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    lowered = value.strip().lower()
    placeholder = lowered in PLACEHOLDER_VALUES or any(
        part in lowered for part in PLACEHOLDER_FRAGMENTS
    )
    if production and placeholder:
        return "is a placeholder value"
    return None


def find_project_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` that holds the Alembic tree."""
    for directory in (start, *start.parents):
        if (directory / "migrations" / "env.py").is_file():
            return directory
    return None


def _source_checkout_root() -> Path | None:
    """The repository this package was installed from in editable mode, if any."""
    # services/api/src/roster_api/settings.py -> the repository is four levels up.
    candidate = Path(__file__).resolve().parents[4]
    return candidate if (candidate / "migrations" / "env.py").is_file() else None


class Settings(BaseSettings):
    """Every `ROSTER_*` variable. README.md's configuration table lists them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # The .env file also holds docker compose's variables (POSTGRES_*): not ours, not errors.
        extra="ignore",
        frozen=True,
    )

    # Production unless development is asked for: a deployment that forgets the variable must
    # refuse the published development secrets, not sign tokens with them.
    environment: Environment = Environment.PRODUCTION

    # Database. Unset: the `roster` command starts an embedded Postgres (development only).
    database_url: SecretStr | None = None
    # Sized for one worker's concurrency: connections beyond the pool are opened and closed
    # per request, which costs more than the request itself under load.
    database_pool_size: PositiveInt = 15
    database_max_overflow: NonNegativeInt = 5
    # A second pool, with the same overflow, for the statements planned once per connection
    # (the group listings, see roster_db.with_generic_plan). Sized as the first: requests
    # that wait for a pooled connection are not served in turn, so a pool smaller than the
    # worker's concurrency gives the slowest of them several times the median's latency (at
    # 5 connections under 32 clients, a p99 9x the p50).
    database_generic_plan_pool_size: PositiveInt = 15
    # Off by default: a ping is three extra round trips per request. A connection the server
    # dropped fails its request with a 503 and SQLAlchemy replaces the whole pool, so the
    # service still recovers by itself; recycling retires connections before servers or
    # proxies drop idle ones.
    database_pool_pre_ping: bool = False
    database_pool_recycle_seconds: PositiveFloat = 1800.0
    database_pool_timeout_seconds: PositiveFloat = 10.0
    database_connect_timeout_seconds: PositiveFloat = 5.0
    # Time limits on each of the service's connections (0: none). `roster migrate` runs without
    # them: a migration may rewrite a whole table, and it waits on purpose for the migration
    # lock of a concurrent run. Past a limit a request answers 503 with Retry-After.
    # Every statement roster sends reads through an index, at most one page of rows (the tests
    # check the plans): one still running after 10 s is a fault or an attack, and it holds one
    # of the pool's 20 connections that long.
    database_statement_timeout_seconds: NonNegativeFloat = 10.0
    # Writers hold a group's row lock for one short transaction (milliseconds); a request that
    # waits 3 s for it is queued behind something wrong, holding a pooled connection meanwhile.
    database_lock_timeout_seconds: NonNegativeFloat = 3.0
    # Longer than any pause inside a request's transaction (a password hash, a mail sent within
    # the SMTP timeout of 10 s); ends a transaction a stuck request left open, and its locks.
    database_idle_in_transaction_timeout_seconds: NonNegativeFloat = 30.0
    data_dir: Path | None = None
    migrations_dir: Path | None = None

    # Authentication.
    access_token_secret: SecretStr | None = None
    reset_password_secret: SecretStr | None = None
    verify_secret: SecretStr | None = None
    access_token_lifetime_seconds: PositiveInt = 15 * 60
    cookie_token_lifetime_seconds: PositiveInt = 14 * 24 * 3600
    # Bearer clients' refresh tokens: a session's lifetime from its login, and how long its
    # newest token may wait unused (roster_auth.sessions).
    refresh_token_lifetime_seconds: PositiveInt = 30 * 24 * 3600
    refresh_token_idle_seconds: PositiveInt = 7 * 24 * 3600
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    registration_enabled: bool = True
    public_base_url: str = "http://localhost:8000"
    # Invitations into groups: how long one stays valid, and the path of the front end's page
    # that the mail's link opens (ROSTER_PUBLIC_BASE_URL + this + ?token=...).
    invitation_lifetime_seconds: PositiveInt = 7 * 24 * 3600
    invitation_accept_path: str = Field(default="/invitations/accept", pattern=r"^/")
    # Password hashing, per process: hashes at once, and requests that may wait for one
    # (beyond them: 503 PASSWORD_HASHING_BUSY at once).
    max_concurrent_password_hashes: PositiveInt = 1
    max_waiting_password_hashes: NonNegativeInt = 4
    # The hashing threads' nice value (Linux), and how long a refusal of password traffic
    # (429, 503) is held before it is sent (see roster_auth.AuthConfig).
    password_hashing_niceness: int = Field(default=15, ge=0, le=19)
    refusal_pause_seconds: float = Field(default=0.5, ge=0, lt=1)

    # Throttles, counted in Postgres per client address and per account (roster_auth's
    # ThrottleConfig says how, and holds the defaults). The client address is the socket's
    # peer, or the forwarded one when the server trusts the proxy (ROSTER_FORWARDED_ALLOW_IPS).
    throttle_enabled: bool = _THROTTLE_DEFAULTS.enabled
    throttle_login_window_seconds: PositiveInt = _THROTTLE_DEFAULTS.login_window_seconds
    throttle_login_failures_per_account_and_address: PositiveInt = (
        _THROTTLE_DEFAULTS.login_failures_per_account_and_address
    )
    throttle_login_failures_per_address: PositiveInt = _THROTTLE_DEFAULTS.login_failures_per_address
    throttle_login_failures_per_account: PositiveInt = _THROTTLE_DEFAULTS.login_failures_per_account
    throttle_registration_window_seconds: PositiveInt = (
        _THROTTLE_DEFAULTS.registration_window_seconds
    )
    throttle_registrations_per_address: PositiveInt = _THROTTLE_DEFAULTS.registrations_per_address
    throttle_registrations_per_email: PositiveInt = _THROTTLE_DEFAULTS.registrations_per_email
    throttle_mail_window_seconds: PositiveInt = _THROTTLE_DEFAULTS.mail_window_seconds
    throttle_mail_requests_per_address: PositiveInt = _THROTTLE_DEFAULTS.mail_requests_per_address
    throttle_mail_requests_per_email: PositiveInt = _THROTTLE_DEFAULTS.mail_requests_per_email

    # Identity providers to sign in with (roster_auth.oauth): each one is configured when its
    # variables are set, all of them (OAUTH_PROVIDER_FIELDS). The name is the path segment of
    # the generic OpenID Connect provider's routes (/auth/{name}/...).
    oidc_discovery_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_name: str = "oidc"
    oidc_scopes: Annotated[tuple[str, ...], NoDecode] = ("openid", "email")
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    # Off: a provider's identity never takes over an existing account with its address.
    oauth_associate_by_email: bool = False
    # Each call to a provider; roster-auth allows up to a minute.
    oauth_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Mail: SMTP when a host is set; otherwise development logs whole mails and production
    # logs only that a mail was due.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "Roster <no-reply@localhost>"
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"

    # HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: PositiveInt = 1
    cors_origins: Annotated[list[str], NoDecode] = []
    max_body_size: NonNegativeInt = 1024 * 1024

    # Connections, per worker process (`roster serve` hands them to uvicorn). Production runs
    # behind a reverse proxy (README): these bound what reaches this process, not the internet.
    # Past this many open connections or running requests, uvicorn answers 503 at once. One
    # worker serves about 100 to 300 requests a second through its 20 pooled connections
    # (bench/RESULTS.md): 100 in flight is already a queue of up to a second, and answering 503
    # at once beats queueing towards the 10 s pool timeout. Idle keep-alive connections count too,
    # so keep it above the proxy's upstream keep-alive pool. At least 2: uvicorn counts the
    # asking connection itself, so N serves N - 1 at once.
    limit_concurrency: int = Field(default=100, ge=2)
    # uvicorn's own default: an idle keep-alive connection is closed after 5 s, so idle clients
    # give their place under `limit_concurrency` back. A proxy's upstream idle timeout must be
    # shorter, or it may reuse a connection just as it is closed.
    timeout_keep_alive_seconds: PositiveInt = 5
    # h11 (uvicorn's pure-Python parser) refuses a request line and headers larger than this
    # with a 400 (h11's own default, 16 KiB: a JWT and a cookie fit many times over).
    # httptools, faster by ~50 us a request, a percent or two of roster's cost per request,
    # accepts any size (10 MB of one header, tried): choose it only behind a proxy that bounds
    # request heads itself.
    h11_max_incomplete_event_size: int = Field(default=16 * 1024, ge=1024)
    http_parser: Literal["h11", "httptools"] = "h11"
    # The proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or networks, `*` for any). Unset, nobody's are: the client is the socket's
    # peer (uvicorn on its own would trust 127.0.0.1).
    forwarded_allow_ips: str | None = None

    # Logs: JSON lines in production, readable lines in development, unless set.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: LogFormat | None = None

    # The `roster` command.
    superuser_email: str | None = None
    superuser_password: SecretStr | None = None
    seed_password: SecretStr | None = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # Comma-separated in the environment; a list when built in code.
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("oidc_scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        # OAuth separates scopes with spaces; commas are accepted too, as in ROSTER_CORS_ORIGINS.
        if isinstance(value, str):
            return tuple(scope for scope in _SCOPE_SEPARATORS.split(value) if scope)
        return value

    @field_validator(
        "forwarded_allow_ips",
        "oidc_discovery_url",
        "oidc_client_id",
        "oidc_client_secret",
        "github_client_id",
        "github_client_secret",
        "google_client_id",
        "google_client_secret",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # docker compose passes an unset `${VARIABLE:-}` as an empty string.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _asyncpg_driver(cls, value: Any) -> Any:
        # postgres:// and postgresql:// (what hosting providers hand out) mean asyncpg here.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return asyncpg_url(value.strip()) if value.strip() else None
        return value

    @model_validator(mode="after")
    def _is_configured(self) -> Settings:
        # Refused in every environment, so not under the production refusal.
        messages = self._oauth_problems()
        problems = self._secret_problems()
        if self.is_production:
            problems.extend(self._production_problems())
        if problems:
            refusal = f"{PRODUCTION_REFUSAL}: " if self.is_production else ""
            messages.append(refusal + "; ".join(problems))
        if messages:
            raise ValueError("; ".join(messages))
        return self

    def _oauth_problems(self) -> list[str]:
        problems: list[str] = []
        for provider, names in OAUTH_PROVIDER_FIELDS.items():
            missing = [variable_name(name) for name in names if getattr(self, name) is None]
            options = OAUTH_PROVIDER_OPTIONS.get(provider, ())
            partial = len(missing) < len(names) or not self.model_fields_set.isdisjoint(options)
            if missing and partial:
                problems.append(
                    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                    f"the {provider} provider needs "
                    f"{' and '.join(variable_name(name) for name in names)}, or none of them"
                )
        if problems:
            return problems
        try:
            providers = self.oauth_providers()
        except AuthConfigError as error:
            # Only the OpenID Connect provider takes values that roster-auth can refuse; its
            # message says which and why.
            return [
                f"{variable_name('oidc_name')}, {variable_name('oidc_discovery_url')} or "
                f"{variable_name('oidc_scopes')} is refused: {error}"
            ]
        provider_names = [provider.name for provider in providers]
        if len(set(provider_names)) != len(provider_names):
            problems.append(
                f"{variable_name('oidc_name')} {self.oidc_name!r} is the name of another "
                "configured provider: choose another"
            )
        return problems

    def _secret_problems(self) -> list[str]:
        problems: list[str] = []
        seen: dict[str, str] = {}
        for name in SECRET_FIELDS:
            secret: SecretStr | None = getattr(self, name)
            value = secret.get_secret_value() if secret is not None else None
            problem = secret_problem(value, production=self.is_production)
            if problem is not None:
                problems.append(
                    f"{variable_name(name)} {problem}: generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
            elif value in seen:
                problems.append(
                    f"{variable_name(name)} has the same value as {variable_name(seen[value])}"
                )
            if value is not None:
                seen.setdefault(value, name)
        return problems

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        if self.database_url is None:
            problems.append(
                f"{variable_name('database_url')} is not set (production never starts the "
                f"embedded Postgres: set {variable_name('environment')}=development for it)"
            )
        if self.smtp_host is not None and (self.smtp_username is None) != (
            self.smtp_password is None
        ):
            problems.append(
                f"set both {variable_name('smtp_username')} and "
                f"{variable_name('smtp_password')}, or neither"
            )
        return problems

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def resolved_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.JSON if self.is_production else LogFormat.CONSOLE

    def secret(self, name: str) -> SecretStr:
        """A secret by field name; in development an unset one is its marked default."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            return value
        if self.is_production:  # pragma: no cover - the validator refuses this
            raise RuntimeError(f"{variable_name(name)} is not set")
        return SecretStr(DEVELOPMENT_SECRETS[name])

    def uses_development_secrets(self) -> list[str]:
        """The variables left unset, for which the marked development values stand in."""
        return [variable_name(name) for name in SECRET_FIELDS if getattr(self, name) is None]

    def oauth_providers(self) -> tuple[OAuthProvider, ...]:
        """The identity providers whose variables are set (the validator has refused a partial
        set): the OpenID Connect provider, GitHub, Google, in that order."""
        providers: list[OAuthProvider] = []
        if (
            self.oidc_discovery_url is not None
            and self.oidc_client_id is not None
            and self.oidc_client_secret is not None
        ):
            providers.append(
                OAuthProvider.openid(
                    discovery_url=self.oidc_discovery_url,
                    client_id=self.oidc_client_id,
                    client_secret=self.oidc_client_secret,
                    name=self.oidc_name,
                    scopes=self.oidc_scopes,
                )
            )
        if self.github_client_id is not None and self.github_client_secret is not None:
            providers.append(
                OAuthProvider.github(
                    client_id=self.github_client_id, client_secret=self.github_client_secret
                )
            )
        if self.google_client_id is not None and self.google_client_secret is not None:
            providers.append(
                OAuthProvider.google(
                    client_id=self.google_client_id, client_secret=self.google_client_secret
                )
            )
        return tuple(providers)

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url is not None else None

    def resolved_migrations_dir(self, cwd: Path | None = None) -> Path:
        """Where the Alembic tree is: the setting, else `migrations/` in the working directory
        or one of its parents, else the source checkout this package runs from."""
        if self.migrations_dir is not None:
            return self.migrations_dir.resolve()
        root = find_project_root((cwd or Path.cwd()).resolve()) or _source_checkout_root()
        if root is None:
            raise FileNotFoundError(
                "cannot find the migrations/ directory: run from the project directory or set "
                f"{variable_name('migrations_dir')}"
            )
        return root / "migrations"

    def resolved_data_dir(self, cwd: Path | None = None) -> Path:
        """Where the embedded Postgres keeps its data: the setting, else `.roster/postgres`
        in the project directory (or in the working directory outside a project)."""
        if self.data_dir is not None:
            return self.data_dir.resolve()
        start = (cwd or Path.cwd()).resolve()
        root = find_project_root(start) or _source_checkout_root() or start
        return root / ".roster" / "postgres"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and `.env`, with explicit overrides on top."""
    return Settings(**overrides)


__all__ = [
    "DEVELOPMENT_SECRETS",
    "OAUTH_PROVIDER_FIELDS",
    "PRODUCTION_REFUSAL",
    "SECRET_FIELDS",
    "Environment",
    "LogFormat",
    "Settings",
    "load_settings",
    "secret_problem",
    "variable_name",
]
