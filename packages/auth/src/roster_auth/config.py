"""Everything roster-auth needs to know, passed in by the application (never read from the
environment here)."""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    # Separate secrets, so that a leaked reset-token secret cannot mint access tokens.
    access_token_secret: str
    reset_password_secret: str
    verify_secret: str
    access_token_lifetime_seconds: int = 15 * 60
    cookie_token_lifetime_seconds: int = 14 * 24 * 3600
    reset_password_token_lifetime_seconds: int = 3600
    verify_token_lifetime_seconds: int = 24 * 3600
    cookie_name: str = "roster_auth"
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    registration_enabled: bool = True
    # Where the links in verification and reset mails point to.
    public_base_url: str = "http://localhost:8000"
