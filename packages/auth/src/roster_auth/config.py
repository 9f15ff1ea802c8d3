"""Everything roster-auth needs to know, passed in by the application (never read from the
environment here)."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import urlsplit

from fastapi_users.password import PasswordHelperProtocol
from pydantic import SecretStr

from roster_auth.hashing import DEFAULT_HASHING_NICENESS
from roster_auth.mail import LoggingMailer, Mailer
from roster_auth.password import PasswordPolicy

Secret = str | SecretStr


def secret_value(secret: Secret) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


class AuthConfigError(ValueError):
    """The configuration is unsafe or inconsistent; the message says what to change."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class ThrottleConfig:
    """Limits on what anonymous clients may repeat, counted in Postgres (shared by every worker
    and replica) per client address and per account. Every limit is time-boxed: a count
    starts with its first event and is forgotten when its window ends.

    Failed logins are counted three ways, so that strangers cannot lock a victim out:
    per account and address, per address across accounts, and per account across addresses.
    The last one, once exceeded, blocks only addresses that have failed on that account
    themselves: an address with no failures of its own may still log in.
    """

    enabled: bool = True
    login_window_seconds: int = 15 * 60
    login_failures_per_account_and_address: int = 5
    login_failures_per_address: int = 50
    login_failures_per_account: int = 10
    # Every registration attempt counts, whatever its outcome.
    registration_window_seconds: int = 3600
    registrations_per_address: int = 10
    registrations_per_email: int = 5
    # Forgot-password and request-verify-token requests together: each may send a mail.
    mail_window_seconds: int = 3600
    mail_requests_per_address: int = 10
    mail_requests_per_email: int = 3
    # Expired counters are deleted at most this often per process, after a count is written.
    purge_interval_seconds: int = 60
    # The time that windows are measured in; tests pass their own.
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        for name in (
            "login_window_seconds",
            "login_failures_per_account_and_address",
            "login_failures_per_address",
            "login_failures_per_account",
            "registration_window_seconds",
            "registrations_per_address",
            "registrations_per_email",
            "mail_window_seconds",
            "mail_requests_per_address",
            "mail_requests_per_email",
            "purge_interval_seconds",
        ):
            if getattr(self, name) < 1:
                raise AuthConfigError(f"throttle {name} must be at least 1")


GOOGLE_DISCOVERY_URL: Final = "https://accounts.google.com/.well-known/openid-configuration"
# The path segment of a provider's routes (`/auth/{name}/...`): short, lower case, and not one
# of the segments the auth routes already use.
PROVIDER_NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
RESERVED_PROVIDER_NAMES: Final = frozenset(
    {
        "associate",
        "cookie",
        "forgot-password",
        "jwt",
        "register",
        "request-verify-token",
        "reset-password",
        "verify",
    }
)
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, kw_only=True)
class OAuthProvider:
    """An identity provider users may sign in with (roster_auth.oauth). Build one with
    `openid`, `google` or `github`.

    `kind` says how the identity is read: "openid", an OpenID Connect provider found through
    its discovery document (its userinfo gives `sub`, `email`, `email_verified`); "github",
    GitHub's OAuth app API (the user's id, and their primary address with its `verified`)."""

    name: str
    kind: Literal["openid", "github"]
    client_id: str
    client_secret: Secret
    discovery_url: str | None = None
    scopes: tuple[str, ...] = ()

    @classmethod
    def openid(
        cls,
        *,
        discovery_url: str,
        client_id: str,
        client_secret: Secret,
        name: str = "oidc",
        scopes: tuple[str, ...] = ("openid", "email"),
    ) -> "OAuthProvider":
        return cls(
            name=name,
            kind="openid",
            client_id=client_id,
            client_secret=client_secret,
            discovery_url=discovery_url,
            scopes=scopes,
        )

    @classmethod
    def google(cls, *, client_id: str, client_secret: Secret) -> "OAuthProvider":
        """Google, an OpenID Connect provider."""
        return cls.openid(
            discovery_url=GOOGLE_DISCOVERY_URL,
            client_id=client_id,
            client_secret=client_secret,
            name="google",
        )

    @classmethod
    def github(cls, *, client_id: str, client_secret: Secret) -> "OAuthProvider":
        """GitHub, whose OAuth apps speak OAuth 2.0 without OpenID Connect. Read-only scopes:
        the profile and the addresses (httpx-oauth's default, `user`, may write the profile)."""
        return cls(
            name="github",
            kind="github",
            client_id=client_id,
            client_secret=client_secret,
            scopes=("read:user", "user:email"),
        )

    def __post_init__(self) -> None:
        if not PROVIDER_NAME_PATTERN.match(self.name) or self.name in RESERVED_PROVIDER_NAMES:
            raise AuthConfigError(
                f"OAuth provider name {self.name!r} must be 1 to 32 lower-case letters, digits "
                f"or '-', starting with a letter, and none of {sorted(RESERVED_PROVIDER_NAMES)}"
            )
        if not self.client_id or not secret_value(self.client_secret):
            raise AuthConfigError(f"OAuth provider {self.name!r} needs a client id and secret")
        if self.kind == "openid":
            if self.discovery_url is None:
                raise AuthConfigError(f"OpenID provider {self.name!r} needs a discovery URL")
            parts = urlsplit(self.discovery_url)
            # The discovery document names every endpoint: read over plain HTTP, it could send
            # the authorization code and the client secret anywhere. Loopback is for trying out.
            if parts.scheme != "https" and not (
                parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
            ):
                raise AuthConfigError(
                    f"OpenID provider {self.name!r}: the discovery URL must be https "
                    "(http only on localhost)"
                )
            if "openid" not in self.scopes:
                raise AuthConfigError(f"OpenID provider {self.name!r}: scopes must hold 'openid'")


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    # Separate secrets, so that a leaked reset-token secret cannot mint access tokens. Taken as
    # given: the application checks them where it reads them (roster-api: at least 32 bytes
    # each, all different, no placeholder in production).
    access_token_secret: Secret
    reset_password_secret: Secret
    verify_secret: Secret
    # Bearer JWTs cannot be revoked, so they live briefly.
    access_token_lifetime_seconds: int = 15 * 60
    cookie_token_lifetime_seconds: int = 14 * 24 * 3600
    reset_password_token_lifetime_seconds: int = 3600
    verify_token_lifetime_seconds: int = 24 * 3600
    cookie_name: str = "roster_auth"
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None
    registration_enabled: bool = True
    # Where the links in verification and reset mails point to: a page of the front end that
    # reads `?token=` and posts it to /auth/verify or /auth/reset-password.
    public_base_url: str = "http://localhost:8000"
    verify_link_path: str = "/verify"
    reset_password_link_path: str = "/reset-password"  # noqa: S105 (a path, not a secret)
    product_name: str = "Roster"
    # The default logs that a mail was due, never its content: safe in production, but
    # nothing is delivered. Give an `SmtpMailer` in production.
    mailer: Mailer = field(default_factory=LoggingMailer)
    # Development mode allows a mailer that writes tokens to the log.
    development: bool = False
    send_verification_on_register: bool = True
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    # None keeps FastAPI Users' strong default (Argon2id, bcrypt hashes still verified).
    # Only tests should pass a cheaper one.
    password_helper: PasswordHelperProtocol | None = None
    # Hashes run in worker threads, at most this many at once per application. One Argon2id
    # hash of the default (64 MiB, 3 passes, 4 lanes) already runs its 4 lanes in threads of
    # their own, on up to 4 cores: under a flood of logins, a second one at once on 2 cores
    # bought a quarter more hashes a second and took the event loop's core from every other
    # request (bench/NOTES.md: the reads' p99 beside the flood 1.8x to 3.9x, against 1.9x to
    # 2.4x with one). Raise it with the cores (and `workers`).
    max_concurrent_password_hashes: int = 1
    # Requests that may wait for a hashing slot; one more is answered at once with 503
    # PASSWORD_HASHING_BUSY and Retry-After. A process hashes 3 to 4 passwords a second at the
    # default cost on two cores, so the last of 4 waiting is served within one to two seconds.
    max_waiting_password_hashes: int = 4
    # The nice value (0 to 19) of the hashing threads, Linux only: the worker's event loop,
    # which serves every other request, comes first on the core they share. Under a login
    # flood, 15 kept the reads' p99 within about 2x their own where 10 let it reach 3.6x, for
    # logins admitted twice as slowly (p99 6 s against 3 s; bench/NOTES.md).
    password_hashing_niceness: int = DEFAULT_HASHING_NICENESS
    # How long a refusal of password traffic (429, 503) waits before it is sent, asleep: a
    # client that retries at once gets a few refusals a second per connection, instead of
    # taking the event loop from everyone else (`roster_auth.guard`). Below `Retry-After`.
    refusal_pause_seconds: float = 0.5
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    # Refresh tokens (bearer clients): a family per login, rotated at every refresh. A family
    # ends `refresh_token_lifetime_seconds` after its login whatever its use, and earlier when
    # no refresh came for `refresh_token_idle_seconds` (a week: a client used weekly stays
    # signed in for the whole lifetime; a lost device's tokens die within a week).
    refresh_token_lifetime_seconds: int = 30 * 24 * 3600
    refresh_token_idle_seconds: int = 7 * 24 * 3600
    # A cookie session's `last_used_at` is written at most this often (by the current-user
    # statement itself, no statement more), so the listing is that precise and most requests
    # write nothing.
    session_touch_interval_seconds: int = 5 * 60
    # Identity providers to sign in with (`/auth/{name}/...`); none by default.
    oauth_providers: tuple[OAuthProvider, ...] = ()
    # Whether a provider's identity may be linked to an existing account with the same email
    # at its first sign-in. Only when the provider says it verified the address and the
    # account verified it too: otherwise whoever registers the address at a provider (or
    # here, first) would get the other's account.
    oauth_associate_by_email: bool = False
    # Each call to a provider (discovery, token exchange, userinfo) gives up after this long:
    # 503 OAUTH_PROVIDER_UNAVAILABLE.
    oauth_timeout_seconds: float = 5.0
    # How long a sign-in may take at the provider, from the authorize URL to the callback.
    oauth_state_lifetime_seconds: int = 10 * 60
    # The time that sessions (cookies and refresh tokens) are created, used and expire in;
    # tests pass their own.
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        lifetimes = {
            "access_token_lifetime_seconds": self.access_token_lifetime_seconds,
            "cookie_token_lifetime_seconds": self.cookie_token_lifetime_seconds,
            "refresh_token_lifetime_seconds": self.refresh_token_lifetime_seconds,
            "refresh_token_idle_seconds": self.refresh_token_idle_seconds,
            "session_touch_interval_seconds": self.session_touch_interval_seconds,
            "reset_password_token_lifetime_seconds": self.reset_password_token_lifetime_seconds,
            "verify_token_lifetime_seconds": self.verify_token_lifetime_seconds,
            "oauth_state_lifetime_seconds": self.oauth_state_lifetime_seconds,
        }
        for name, seconds in lifetimes.items():
            # FastAPI Users treats a lifetime of 0 as "never expires".
            if seconds <= 0:
                raise AuthConfigError(f"{name} must be a positive number of seconds")
        if self.max_concurrent_password_hashes < 1:
            raise AuthConfigError("max_concurrent_password_hashes must be at least 1")
        if self.max_waiting_password_hashes < 0:
            raise AuthConfigError("max_waiting_password_hashes must be at least 0")
        if not 0 <= self.password_hashing_niceness <= 19:
            raise AuthConfigError("password_hashing_niceness must be between 0 and 19")
        if not 0 <= self.refusal_pause_seconds < 1:
            # 1 s is the smallest `Retry-After`, and a refusal's answer must come within it.
            raise AuthConfigError("refusal_pause_seconds must be at least 0 and below 1")
        names = [provider.name for provider in self.oauth_providers]
        if len(set(names)) != len(names):
            raise AuthConfigError(f"OAuth provider names must differ: {names}")
        if not 0 < self.oauth_timeout_seconds <= 60:
            raise AuthConfigError("oauth_timeout_seconds must be above 0 and at most 60")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise AuthConfigError("cookie_samesite='none' requires cookie_secure=True")
        if not self.public_base_url.startswith(("https://", "http://")):
            raise AuthConfigError("public_base_url must be an http(s) URL")
        for name, path in (
            ("verify_link_path", self.verify_link_path),
            ("reset_password_link_path", self.reset_password_link_path),
        ):
            if not path.startswith("/"):
                raise AuthConfigError(f"{name} must start with '/'")
        revealing = isinstance(self.mailer, LoggingMailer) and self.mailer.reveal_content
        if revealing and not self.development:
            raise AuthConfigError(
                "LoggingMailer(reveal_content=True) writes tokens to the log: "
                "allowed only with development=True"
            )
