"""Mail for verification and password reset: one small interface, three ways to deliver.

- `SmtpMailer`: production, through an SMTP server (STARTTLS or implicit TLS).
- `LoggingMailer`: no mail server. By default it logs only that a mail was due (no link, no
  token), which is safe anywhere; `reveal_content=True` logs the whole mail for development.
- `OutboxMailer`: keeps sent messages in memory, for tests (of this package and others).
"""

import enum
import logging
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import aiosmtplib

logger = logging.getLogger(__name__)


class MailKind(enum.StrEnum):
    VERIFY = "verify"
    RESET_PASSWORD = "reset_password"  # noqa: S105 (a kind of mail)
    # To the old address after an email change: a notice, with no link and no token.
    EMAIL_CHANGED = "email_changed"
    # An invitation into a group (sent by roster-groups through this mailer).
    INVITATION = "invitation"


@dataclass(frozen=True, kw_only=True)
class MailMessage:
    """A plain-text mail, most carrying one link. The body and link hold a token: they stay
    out of `repr`, so that logging a message by mistake does not leak it. A notice has no
    link (an empty one)."""

    to: str
    subject: str
    kind: MailKind
    body: str = field(repr=False)
    link: str = field(default="", repr=False)


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None:
        """Deliver the message, or raise."""
        ...


class LoggingMailer:
    """Logs mails instead of sending them."""

    def __init__(self, *, reveal_content: bool = False) -> None:
        self.reveal_content = reveal_content

    async def send(self, message: MailMessage) -> None:
        if self.reveal_content:
            logger.info("mail to %s: %s\n\n%s", message.to, message.subject, message.body)
        else:
            logger.warning(
                "no mail transport configured: %s mail to %s not delivered",
                message.kind.value,
                message.to,
            )


class OutboxMailer:
    """Keeps every message in `messages`, for tests to read tokens from."""

    def __init__(self) -> None:
        self.messages: list[MailMessage] = []

    async def send(self, message: MailMessage) -> None:
        self.messages.append(message)

    def sent_to(self, address: str, kind: MailKind | None = None) -> list[MailMessage]:
        return [
            message
            for message in self.messages
            if message.to.lower() == address.lower() and (kind is None or message.kind is kind)
        ]

    def last_token(self, address: str, kind: MailKind) -> str:
        """The token of the latest mail of that kind to that address."""
        sent = self.sent_to(address, kind)
        if not sent:
            raise LookupError(f"no {kind.value} mail was sent to {address}")
        return token_of(sent[-1])

    def clear(self) -> None:
        self.messages.clear()


def token_of(message: MailMessage) -> str:
    """The token carried in the message's link (`?token=...`)."""
    tokens = parse_qs(urlsplit(message.link).query).get("token")
    if not tokens:
        raise ValueError("the message's link carries no token")
    return tokens[0]


SmtpSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, kw_only=True)
class SmtpMailer:
    """Sends through an SMTP server.

    `security`: "starttls" (default; the server must offer STARTTLS, there is no silent
    fall back to plain text), "tls" (implicit TLS, usually port 465), or "none" (only for a
    relay on a trusted network, such as a local MTA). Credentials are optional.
    """

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: SmtpSecurity = "starttls"
    timeout_seconds: float = 10.0
    tls_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both the SMTP username and password, or neither")
        if self.security == "none" and self.username is not None:
            raise ValueError("refusing to send SMTP credentials without TLS")

    def build(self, message: MailMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid()
        mail.set_content(message.body)
        return mail

    async def send(self, message: MailMessage) -> None:
        await aiosmtplib.send(
            self.build(message),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=self.tls_context,
            timeout=self.timeout_seconds,
        )
        logger.info("sent %s mail to %s", message.kind.value, message.to)


async def deliver(mailer: Mailer, message: MailMessage) -> bool:
    """Send, and never raise: the change that caused the mail is already committed, and the
    client can ask for the mail again (request-verify-token, forgot-password). The error is
    logged without the message's content. Returns whether the mail went out."""
    try:
        await mailer.send(message)
    except Exception as error:
        logger.error(
            "could not send %s mail to %s: %s: %s",
            message.kind.value,
            message.to,
            type(error).__name__,
            error,
        )
        return False
    return True


def link_with_token(base_url: str, path: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{path}?{urlencode({'token': token})}"


__all__ = [
    "LoggingMailer",
    "MailKind",
    "MailMessage",
    "Mailer",
    "OutboxMailer",
    "SmtpMailer",
    "SmtpSecurity",
    "deliver",
    "link_with_token",
    "token_of",
]
