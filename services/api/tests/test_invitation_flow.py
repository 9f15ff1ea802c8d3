"""Invitations end to end, over HTTP through the real application (its settings, its engine on
a migrated database, its SMTP mailer) and a real mail server on loopback (aiosmtpd): an owner
invites an address that has no account; its owner registers, verifies and accepts; they are a
member with the invited role."""

from __future__ import annotations

import asyncio
import dataclasses
import email.policy
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

from roster_api import migrations
from roster_api.app import build_auth_config, create_app
from roster_auth.testing import DEFAULT_PASSWORD, fast_password_helper
from roster_db.testing import CreateDatabase

from .conftest import make_settings, serve

PUBLIC_BASE_URL = "https://roster.example.com"


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[int, Inbox]]:
    loop = asyncio.get_running_loop()
    inbox = Inbox()
    server = await loop.create_server(
        lambda: SMTP(inbox, hostname="localhost", loop=loop), host="127.0.0.1", port=0
    )
    try:
        yield server.sockets[0].getsockname()[1], inbox
    finally:
        server.close()
        await server.wait_closed()


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    content: str = body.get_content()
    return content


def link_in(message: EmailMessage) -> str:
    [link] = re.findall(r"https?://\S+", text_of(message))
    return str(link)


def token_in(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def sign_in(client: httpx.AsyncClient, address: str) -> dict[str, str]:
    login = await client.post(
        "/auth/jwt/login", data={"username": address, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def register_and_verify(client: httpx.AsyncClient, inbox: Inbox, address: str) -> None:
    registered = await client.post(
        "/auth/register", json={"email": address, "password": DEFAULT_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    [verification] = inbox.to(address)[-1:]
    verified = await client.post("/auth/verify", json={"token": token_in(link_in(verification))})
    assert verified.status_code == 200, verified.text
    assert verified.json()["is_verified"] is True


async def test_an_invited_stranger_registers_verifies_accepts_and_is_a_member(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    url = await create_database()
    await migrations.upgrade(url, migrations_dir)
    async with smtp_server() as (port, inbox):
        settings = make_settings(
            database_url=url,
            public_base_url=PUBLIC_BASE_URL,
            invitation_accept_path="/join",
            invitation_lifetime_seconds=3 * 24 * 3600,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_sender="Roster <roster@example.com>",
        )
        # The application's own configuration (its SMTP mailer), hashing cheaply.
        auth_config = dataclasses.replace(
            build_auth_config(settings), password_helper=fast_password_helper()
        )
        async with serve(create_app(settings, auth_config=auth_config)) as client:
            owner = "olive@example.com"
            await register_and_verify(client, inbox, owner)
            owner_headers = await sign_in(client, owner)
            group = await client.post("/groups", json={"name": "Reviewers"}, headers=owner_headers)
            assert group.status_code == 201, group.text
            group_id = group.json()["id"]

            # 1. The owner invites someone who has no account.
            stranger = "sam@example.com"
            invited = await client.post(
                f"/groups/{group_id}/invitations",
                json={"email": stranger, "role": "admin"},
                headers=owner_headers,
            )
            assert invited.status_code == 201, invited.text
            assert invited.json()["status"] == "pending"
            [invitation_mail] = inbox.to(stranger)
            assert invitation_mail["From"] == "Roster <roster@example.com>"
            assert invitation_mail["Subject"] == 'Roster: you are invited to join "Reviewers"'
            link = link_in(invitation_mail)
            assert link.startswith(f"{PUBLIC_BASE_URL}/join?token=")
            assert 'olive@example.com invites you to join the group "Reviewers"' in text_of(
                invitation_mail
            )
            assert "on Roster as admin" in text_of(invitation_mail)

            # 2. They register, verify and accept.
            await register_and_verify(client, inbox, stranger)
            stranger_headers = await sign_in(client, stranger)
            mine = await client.get("/users/me/invitations", headers=stranger_headers)
            assert mine.status_code == 200, mine.text
            assert [(i["group_name"], i["role"]) for i in mine.json()["items"]] == [
                ("Reviewers", "admin")
            ]
            accepted = await client.post(
                "/invitations/accept", json={"token": token_in(link)}, headers=stranger_headers
            )
            assert accepted.status_code == 200, accepted.text
            assert (accepted.json()["id"], accepted.json()["role"]) == (group_id, "admin")

            # 3. They are a member with the invited role, and act as one.
            members = await client.get(f"/groups/{group_id}/members", headers=owner_headers)
            assert {(m["email"], m["role"]) for m in members.json()["items"]} == {
                (owner, "owner"),
                (stranger, "admin"),
            }
            listing = await client.get(f"/groups/{group_id}/invitations", headers=stranger_headers)
            assert listing.status_code == 200, listing.text
            [item] = listing.json()["items"]
            assert item["status"] == "accepted"
            again = await client.post(
                "/invitations/accept", json={"token": token_in(link)}, headers=stranger_headers
            )
            assert again.json() == {"detail": "INVITATION_ALREADY_USED"}
            assert (await client.get("/users/me/invitations", headers=stranger_headers)).json()[
                "items"
            ] == []

            # 4. The group's trail tells the story, with who did each step.
            owner_id = (await client.get("/users/me", headers=owner_headers)).json()["id"]
            stranger_id = (await client.get("/users/me", headers=stranger_headers)).json()["id"]
            events = await client.get(f"/groups/{group_id}/events", headers=owner_headers)
            assert events.status_code == 200, events.text
            story = [
                (event["action"], event["actor_id"], event["subject_user_id"])
                for event in reversed(events.json()["items"])
                if event["action"]
                in {"invitation.created", "user.registered", "invitation.accepted", "member.added"}
            ]
            assert story == [
                ("invitation.created", owner_id, None),
                ("user.registered", stranger_id, stranger_id),
                ("invitation.accepted", stranger_id, stranger_id),
                ("member.added", stranger_id, stranger_id),
            ]
            invitation_id = invited.json()["id"]
            by_action = {event["action"]: event for event in events.json()["items"]}
            assert by_action["invitation.created"]["details"] == {
                "invitation_id": invitation_id,
                "role": "admin",
            }
            assert by_action["invitation.accepted"]["details"] == {
                "invitation_id": invitation_id,
                "role": "admin",
            }
