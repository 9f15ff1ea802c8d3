"""What roster-groups needs to know about invitations, passed in by the application (never read
from the environment here: roster-api's settings provide it)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from roster_auth import LoggingMailer, Mailer
from roster_groups.models import utc_now

DEFAULT_INVITATION_LIFETIME_SECONDS: Final = 7 * 24 * 3600
DEFAULT_INVITATION_ACCEPT_PATH: Final = "/invitations/accept"


class GroupsConfigError(ValueError):
    """The configuration is inconsistent; the message says what to change."""


@dataclass(frozen=True, kw_only=True)
class InvitationConfig:
    """How invitations are mailed and how long they last.

    The mail's link is `public_base_url` + `accept_path` + `?token=...`: a page of the front
    end that reads the token and posts it to `POST /invitations/accept` (or `/decline`), as
    roster-auth's verification and reset links do. Give the application's own mailer
    (roster-auth's `AuthConfig.mailer`), so invitations leave the way every other mail does."""

    # The default logs that a mail was due, never its content (nor its token).
    mailer: Mailer = field(default_factory=LoggingMailer)
    public_base_url: str = "http://localhost:8000"
    accept_path: str = DEFAULT_INVITATION_ACCEPT_PATH
    lifetime_seconds: int = DEFAULT_INVITATION_LIFETIME_SECONDS
    product_name: str = "Roster"
    # The time that expiry is measured in; tests pass their own.
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        if self.lifetime_seconds <= 0:
            raise GroupsConfigError("lifetime_seconds must be a positive number of seconds")
        if not self.public_base_url.startswith(("https://", "http://")):
            raise GroupsConfigError("public_base_url must be an http(s) URL")
        if not self.accept_path.startswith("/"):
            raise GroupsConfigError("accept_path must start with '/'")

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.lifetime_seconds)


__all__ = [
    "DEFAULT_INVITATION_ACCEPT_PATH",
    "DEFAULT_INVITATION_LIFETIME_SECONDS",
    "GroupsConfigError",
    "InvitationConfig",
]
