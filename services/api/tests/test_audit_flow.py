"""The audit trail end to end over HTTP through the real application (`create_app`): two people
register and verify from the mails, one creates a group and brings the other in, and the
group's trail and the operators' trail show who did what."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_api.app import create_app
from roster_auth import MailKind, OutboxMailer
from roster_auth.testing import DEFAULT_PASSWORD, bearer, config_for_tests, create_user

from .conftest import make_settings, serve


async def sign_up(
    client: AsyncClient, outbox: OutboxMailer, email: str
) -> tuple[str, dict[str, str]]:
    registered = await client.post(
        "/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = outbox.last_token(email, MailKind.VERIFY)
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 200
    login = await client.post(
        "/auth/jwt/login", data={"username": email, "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200, login.text
    return registered.json()["id"], bearer(login.json()["access_token"])


async def test_a_group_flow_is_in_the_trail(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    outbox = OutboxMailer()
    app = create_app(
        make_settings(), sessionmaker=db_sessionmaker, auth_config=config_for_tests(mailer=outbox)
    )
    async with db_sessionmaker() as session:
        operator = await create_user(session, email="ops@example.org", is_superuser=True)
    async with serve(app) as client:
        olga, olga_headers = await sign_up(client, outbox, "olga@example.org")
        pat, pat_headers = await sign_up(client, outbox, "pat@example.org")

        group = await client.post("/groups", json={"name": "Audited"}, headers=olga_headers)
        group_id = group.json()["id"]
        added = await client.post(
            f"/groups/{group_id}/members",
            json={"user_id": pat, "role": "member"},
            headers=olga_headers,
        )
        assert added.status_code == 201
        # A plain member may not read the trail.
        refused = await client.get(f"/groups/{group_id}/events", headers=pat_headers)
        assert (refused.status_code, refused.json()) == (403, {"detail": "INSUFFICIENT_GROUP_ROLE"})
        promoted = await client.patch(
            f"/groups/{group_id}/members/{pat}", json={"role": "admin"}, headers=olga_headers
        )
        assert promoted.status_code == 200

        trail = await client.get(f"/groups/{group_id}/events", headers=pat_headers)
        assert trail.status_code == 200, trail.text
        assert [
            (item["action"], item["actor_id"], item["subject_user_id"], item["details"])
            for item in trail.json()["items"]
        ] == [
            ("member.role_changed", olga, pat, {"old_role": "member", "new_role": "admin"}),
            ("member.added", olga, pat, {"role": "member"}),
            ("group.created", olga, None, {"name": "Audited"}),
        ]

        left = await client.delete(f"/groups/{group_id}/members/{pat}", headers=pat_headers)
        assert left.status_code == 204

        login = await client.post(
            "/auth/jwt/login", data={"username": operator.email, "password": DEFAULT_PASSWORD}
        )
        operator_headers = bearer(login.json()["access_token"])
        what_pat_did = await client.get(f"/events?actor_id={pat}", headers=operator_headers)
        assert [item["action"] for item in what_pat_did.json()["items"]] == [
            "member.left",
            "user.verified",
            "user.registered",
        ]
        assert (await client.get("/events", headers=pat_headers)).status_code == 403
