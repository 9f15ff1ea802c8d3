"""The mailers: SMTP against a real server on loopback (aiosmtpd), logging that never leaks a
token unless asked to in development, and a mail failure that does not fail the request."""

import asyncio
import email.policy
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import aiosmtplib
import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import LoggingMailer, MailKind, MailMessage, OutboxMailer, SmtpMailer, User
from roster_auth.mail import deliver, token_of
from roster_auth.testing import DEFAULT_PASSWORD, config_for_tests

Sessionmaker = async_sessionmaker[AsyncSession]
SMTP_USER = "roster-mailer"
SMTP_PASSWORD = "smtp-password-for-tests"

MESSAGE = MailMessage(
    to="rita@example.org",
    subject="Roster: confirm your email address",
    kind=MailKind.VERIFY,
    link="https://roster.test/verify?token=secret-token-value",
    body="Open https://roster.test/verify?token=secret-token-value",
)


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append(envelope)
        return "250 OK"


@dataclass(frozen=True)
class SmtpServer:
    port: int
    inbox: Inbox


def check_credentials(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    valid = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=valid, handled=False)


@asynccontextmanager
async def smtp_server(
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    require_auth: bool = False,
) -> AsyncIterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 and a free port, in this event loop."""
    loop = asyncio.get_running_loop()
    inbox = Inbox()

    def protocol() -> SMTP:
        return SMTP(
            inbox,
            hostname="localhost",
            loop=loop,
            tls_context=starttls,
            require_starttls=starttls is not None,
            authenticator=check_credentials if require_auth else None,
            auth_required=require_auth,
            # Over implicit TLS the connection is encrypted from the start.
            auth_require_tls=implicit_tls is None,
        )

    server = await loop.create_server(protocol, host="127.0.0.1", port=0, ssl=implicit_tls)
    try:
        yield SmtpServer(port=server.sockets[0].getsockname()[1], inbox=inbox)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    return context


async def test_smtp_with_starttls_and_credentials(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with smtp_server(starttls=server_tls, require_auth=True) as server:
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=server.port,
            sender="Roster <no-reply@roster.test>",
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            security="starttls",
            tls_context=client_tls,
        )
        await mailer.send(MESSAGE)
    [received] = server.inbox.messages
    assert received["To"] == "rita@example.org"
    assert received["From"] == "Roster <no-reply@roster.test>"
    assert received["Subject"] == MESSAGE.subject
    assert received["Message-ID"]
    assert MESSAGE.link in received.get_content()
    assert server.inbox.envelopes[0].rcpt_tos == ["rita@example.org"]


async def test_smtp_with_implicit_tls(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with smtp_server(implicit_tls=server_tls, require_auth=True) as server:
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=server.port,
            sender="no-reply@roster.test",
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            security="tls",
            tls_context=client_tls,
        )
        await mailer.send(MESSAGE)
    assert [message["To"] for message in server.inbox.messages] == ["rita@example.org"]


async def test_smtp_refuses_to_go_on_without_the_tls_it_was_told_to_use(
    client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    # A server that offers no STARTTLS: no fall back to plain text.
    async with smtp_server() as server:
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=server.port,
            sender="no-reply@roster.test",
            security="starttls",
            tls_context=client_tls,
        )
        with pytest.raises(aiosmtplib.SMTPException):
            await mailer.send(MESSAGE)
    assert server.inbox.messages == []
    # A certificate the client does not trust.
    async with smtp_server(starttls=server_tls) as server:
        untrusting = SmtpMailer(host="127.0.0.1", port=server.port, sender="no-reply@roster.test")
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError)):
            await untrusting.send(MESSAGE)
    assert server.inbox.messages == []


async def test_smtp_wrong_credentials_are_an_error(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async with smtp_server(starttls=server_tls, require_auth=True) as server:
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=server.port,
            sender="no-reply@roster.test",
            username=SMTP_USER,
            password="wrong",
            tls_context=client_tls,
        )
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await mailer.send(MESSAGE)
    assert server.inbox.messages == []


def test_smtp_credentials_are_never_sent_in_clear_text() -> None:
    with pytest.raises(ValueError, match="without TLS"):
        SmtpMailer(
            host="relay", port=25, sender="a@b.c", username="u", password="p", security="none"
        )
    with pytest.raises(ValueError, match="both"):
        SmtpMailer(host="relay", port=587, sender="a@b.c", username="u")


async def test_registration_mails_a_working_link_through_smtp(
    serve_with: Callable[..., Any],
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    async with smtp_server(starttls=server_tls, require_auth=True) as server:
        mailer = SmtpMailer(
            host="127.0.0.1",
            port=server.port,
            sender="no-reply@roster.test",
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            tls_context=client_tls,
        )
        config = config_for_tests(mailer=mailer, public_base_url="https://app.roster.test/")
        async with serve_with(config) as client:
            registered = await client.post(
                "/auth/register", json={"email": "sol@example.org", "password": DEFAULT_PASSWORD}
            )
            assert registered.status_code == 201
            [received] = server.inbox.messages
            link = next(
                word
                for word in received.get_content().split()
                if word.startswith("https://app.roster.test/verify?token=")
            )
            token = link.partition("?token=")[2]
            verified = await client.post("/auth/verify", json={"token": token})
            assert verified.status_code == 200, verified.text
            assert verified.json()["is_verified"] is True


async def test_the_default_logging_mailer_never_logs_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        await LoggingMailer().send(MESSAGE)
    assert "rita@example.org" in caplog.text
    assert "not delivered" in caplog.text
    assert "secret-token-value" not in caplog.text
    assert "secret-token-value" not in repr(MESSAGE)


async def test_the_development_logging_mailer_logs_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        await LoggingMailer(reveal_content=True).send(MESSAGE)
    assert MESSAGE.link in caplog.text


class BrokenMailer:
    def __init__(self) -> None:
        self.attempts = 0

    async def send(self, message: MailMessage) -> None:
        self.attempts += 1
        raise ConnectionRefusedError("mail server down")


async def test_a_failed_mail_does_not_fail_the_request(
    serve_with: Callable[..., Any],
    db_sessionmaker: Sessionmaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = BrokenMailer()
    async with serve_with(config_for_tests(mailer=mailer)) as client:
        with caplog.at_level(logging.INFO):
            registered = await client.post(
                "/auth/register", json={"email": "ted@example.org", "password": DEFAULT_PASSWORD}
            )
            forgot = await client.post("/auth/forgot-password", json={"email": "ted@example.org"})
    assert registered.status_code == 201
    assert forgot.status_code == 202
    assert mailer.attempts == 2
    async with db_sessionmaker() as session:
        stored = await session.scalar(
            select(User).where(User.__table__.c.email == "ted@example.org")
        )
    assert stored is not None
    assert "could not send verify mail to ted@example.org" in caplog.text
    assert "could not send reset_password mail to ted@example.org" in caplog.text
    assert "token=" not in caplog.text


async def test_deliver_reports_success_and_failure() -> None:
    outbox = OutboxMailer()
    assert await deliver(outbox, MESSAGE) is True
    assert await deliver(BrokenMailer(), MESSAGE) is False
    assert token_of(outbox.messages[0]) == "secret-token-value"
