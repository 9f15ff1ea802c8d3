"""Invitations by email: creating one (its mail, its stored digest, the refusals), listing and
revoking them, and the invitee's side (their list, accept, decline), with expiry on the
invitations' clock."""

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import MailKind, OutboxMailer, RosterAuth, User
from roster_auth.mail import token_of
from roster_groups.models import GroupInvitation, GroupRole, UserGroup

from .conftest import (
    INVITATION_ACCEPT_PATH,
    INVITATION_BASE_URL,
    Clock,
    Person,
    World,
    add_group,
    add_invitation,
    make_people,
    recorded_statements,
    roles,
    unique_email,
)

WEEK = timedelta(days=7)


async def invite(
    client: httpx.AsyncClient,
    world: World,
    email: str,
    role: str = "member",
    *,
    by: str = "owner",
    group_id: int | None = None,
) -> httpx.Response:
    return await client.post(
        f"/groups/{group_id or world.group_id}/invitations",
        json={"email": email, "role": role},
        headers=world.headers(by),
    )


async def invited_token(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    email: str,
    role: str = "member",
    **options: Any,
) -> tuple[dict[str, Any], str]:
    response = await invite(client, world, email, role, **options)
    assert response.status_code == 201, response.text
    return response.json(), outbox.last_token(email, MailKind.INVITATION)


async def stored(
    sessionmaker: async_sessionmaker[AsyncSession], invitation_id: str
) -> GroupInvitation:
    async with sessionmaker() as session:
        row = await session.get(GroupInvitation, uuid.UUID(invitation_id))
        assert row is not None
        return row


async def new_person(
    auth: RosterAuth, sessionmaker: async_sessionmaker[AsyncSession], **attributes: Any
) -> Person:
    [person] = (await make_people(auth, sessionmaker, "invitee")).values()
    if attributes:
        async with sessionmaker() as session:
            await session.execute(
                update(User).where(User.id == person.id).values(**attributes)  # type: ignore[arg-type]
            )
            await session.commit()
        for name, value in attributes.items():
            setattr(person.user, name, value)
    return person


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- creating --------------------------------------------------------------------------------


async def test_an_invitation_is_answered_stored_as_a_digest_and_mailed(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    clock: Clock,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = unique_email("ann")
    before = clock()
    response = await invite(client, world, email, "admin")
    after = clock()
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "id",
        "group_id",
        "email",
        "role",
        "status",
        "invited_by",
        "created_at",
        "expires_at",
        "responded_at",
    }
    assert body["group_id"] == world.group_id
    assert body["email"] == email
    assert body["role"] == "admin"
    assert body["status"] == "pending"
    assert body["invited_by"] == str(world.owner.id)
    assert body["responded_at"] is None
    assert before + WEEK <= parse_time(body["expires_at"]) <= after + WEEK

    [mail] = outbox.sent_to(email, MailKind.INVITATION)
    token = token_of(mail)
    link = urlsplit(mail.link)
    assert f"{link.scheme}://{link.netloc}" == INVITATION_BASE_URL
    assert link.path == INVITATION_ACCEPT_PATH
    assert link.query == f"token={token}"
    assert mail.subject == 'Roster: you are invited to join "Crew"'
    assert mail.link in mail.body
    assert "Owner (" + world.owner.user.email + ") invites you" in mail.body
    assert 'the group "Crew"' in mail.body
    assert "as admin" in mail.body
    assert email in mail.body
    # The token is not in the answer, and only its SHA-256 digest is stored.
    assert token not in response.text
    row = await stored(db_sessionmaker, body["id"])
    assert row.token_hash == hashlib.sha256(token.encode()).digest()
    assert token not in repr(row.model_dump())


async def test_the_answer_is_the_same_whether_or_not_the_address_has_an_account(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer
) -> None:
    with_account = await invite(client, world, world.newcomer.user.email)
    without_account = await invite(client, world, unique_email("nobody"))
    assert with_account.status_code == without_account.status_code == 201
    assert set(with_account.json()) == set(without_account.json())
    assert with_account.headers.keys() == without_account.headers.keys()
    assert len(outbox.messages) == 2


async def test_the_address_of_a_member_is_refused_ignoring_letter_case(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer
) -> None:
    response = await invite(client, world, world.member.user.email.upper())
    assert response.status_code == 409
    assert response.json() == {"detail": "MEMBERSHIP_ALREADY_EXISTS"}
    assert outbox.messages == []


async def test_a_repeat_invitation_is_refused_while_one_is_pending(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer, clock: Clock
) -> None:
    email = unique_email("twice")
    first, _ = await invited_token(client, world, outbox, email)
    # Another inviter, another letter case, another role: still the same pending invitation.
    repeat = await invite(client, world, email.upper(), "admin", by="admin")
    assert repeat.status_code == 409
    assert repeat.json() == {"detail": "INVITATION_ALREADY_PENDING"}
    assert len(outbox.sent_to(email)) == 1

    # Revoked, it can be sent again.
    revoked = await client.delete(
        f"/groups/{world.group_id}/invitations/{first['id']}", headers=world.owner.headers
    )
    assert revoked.status_code == 204
    second, _ = await invited_token(client, world, outbox, email)

    # Expired, too.
    clock.advance(WEEK + timedelta(seconds=1))
    third = await invite(client, world, email)
    assert third.status_code == 201, third.text
    assert len({first["id"], second["id"], third.json()["id"]}) == 3


async def test_an_invitation_to_another_group_does_not_count(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    other = await add_group(db_sessionmaker, "Other", {world.owner.id: GroupRole.OWNER})
    email = unique_email("both")
    await invited_token(client, world, outbox, email)
    response = await invite(client, world, email, group_id=other)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address", "role": "member"},
        {"email": "someone@", "role": "member"},
        {"email": "x" * 310 + "@example.com", "role": "member"},
        {"email": "ann@example.com", "role": "emperor"},
        {"email": "ann@example.com", "role": None},
        {"role": "member"},
        {"email": "ann@example.com", "role": "member", "token": "extra"},
    ],
)
async def test_bad_invitations_are_422(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
) -> None:
    response = await client.post(
        f"/groups/{world.group_id}/invitations", json=body, headers=world.owner.headers
    )
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert outbox.messages == []
    async with db_sessionmaker() as session:
        assert (await session.execute(select(GroupInvitation))).first() is None


async def test_the_role_defaults_to_member(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer
) -> None:
    response = await client.post(
        f"/groups/{world.group_id}/invitations",
        json={"email": unique_email("plain")},
        headers=world.admin.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["role"] == "member"


# -- listing and revoking --------------------------------------------------------------------


async def test_the_groups_invitations_newest_first_with_each_status(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer, clock: Clock
) -> None:
    made: dict[str, tuple[dict[str, Any], str]] = {}
    invitees = {
        "accepted": world.newcomer.user.email,
        "declined": world.outsider.user.email,
    }
    for label in ("expired", "accepted", "declined", "revoked", "pending"):
        invitee = invitees.get(label) or unique_email(label)
        made[label] = await invited_token(client, world, outbox, invitee)
        # Ten seconds apart on the invitations' clock, so "newest first" has one answer.
        clock.advance(timedelta(seconds=10))
    # Five seconds past the first one's expiry, five before the second one's.
    clock.advance(WEEK - timedelta(seconds=45))
    accepted = await client.post(
        "/invitations/accept",
        json={"token": made["accepted"][1]},
        headers=world.newcomer.headers,
    )
    assert accepted.status_code == 200, accepted.text
    declined = await client.post(
        "/invitations/decline",
        json={"token": made["declined"][1]},
        headers=world.outsider.headers,
    )
    assert declined.status_code == 204, declined.text
    revoked = await client.delete(
        f"/groups/{world.group_id}/invitations/{made['revoked'][0]['id']}",
        headers=world.admin.headers,
    )
    assert revoked.status_code == 204

    url = f"/groups/{world.group_id}/invitations"
    listing = await client.get(url, headers=world.admin.headers)
    assert listing.status_code == 200, listing.text
    page = listing.json()
    assert page["total"] == 5
    assert [item["id"] for item in page["items"]] == [
        made[label][0]["id"] for label in ("pending", "revoked", "declined", "accepted", "expired")
    ]
    statuses = {item["id"]: item["status"] for item in page["items"]}
    assert statuses[made["expired"][0]["id"]] == "expired"
    assert statuses[made["accepted"][0]["id"]] == "accepted"
    assert statuses[made["revoked"][0]["id"]] == "revoked"
    assert statuses[made["pending"][0]["id"]] == "pending"
    assert statuses[made["declined"][0]["id"]] == "declined"

    for status in ("expired", "accepted", "declined", "revoked", "pending"):
        expected = [status]
        filtered = await client.get(url, params={"status": status}, headers=world.owner.headers)
        assert filtered.status_code == 200, filtered.text
        assert [item["id"] for item in filtered.json()["items"]] == [
            made[label][0]["id"] for label in expected
        ], status
        assert filtered.json()["total"] == len(expected)

    second_page = await client.get(
        url, params={"limit": 2, "offset": 2}, headers=world.owner.headers
    )
    assert [item["id"] for item in second_page.json()["items"]] == [
        made[label][0]["id"] for label in ("declined", "accepted")
    ]
    assert second_page.json() | {"items": []} == {"items": [], "total": 5, "limit": 2, "offset": 2}

    bad_filter = await client.get(url, params={"status": "lost"}, headers=world.owner.headers)
    assert bad_filter.status_code == 422


async def test_declined_invitations_are_listed_as_declined(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer
) -> None:
    invitation, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    declined = await client.post(
        "/invitations/decline", json={"token": token}, headers=world.newcomer.headers
    )
    assert declined.status_code == 204, declined.text
    listing = await client.get(
        f"/groups/{world.group_id}/invitations",
        params={"status": "declined"},
        headers=world.owner.headers,
    )
    [item] = listing.json()["items"]
    assert item["id"] == invitation["id"]
    assert item["responded_at"] is not None
    assert world.newcomer.id not in await roles_of(client, world)


async def roles_of(client: httpx.AsyncClient, world: World) -> dict[uuid.UUID, str]:
    members = await client.get(
        f"/groups/{world.group_id}/members", params={"limit": 100}, headers=world.owner.headers
    )
    return {uuid.UUID(m["user_id"]): m["role"] for m in members.json()["items"]}


async def test_revoking(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    clock: Clock,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    path = f"/groups/{world.group_id}/invitations/{invitation['id']}"
    assert (await client.delete(path, headers=world.admin.headers)).status_code == 204
    row = await stored(db_sessionmaker, invitation["id"])
    assert row.status == "revoked"
    assert row.responded_at is not None

    again = await client.delete(path, headers=world.owner.headers)
    assert (again.status_code, again.json()) == (409, {"detail": "INVITATION_NOT_PENDING"})
    accept = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert (accept.status_code, accept.json()) == (400, {"detail": "INVITATION_REVOKED"})

    unknown = await client.delete(
        f"/groups/{world.group_id}/invitations/{uuid.uuid4()}", headers=world.owner.headers
    )
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "INVITATION_NOT_FOUND"})

    # An invitation of another group is not found through this one.
    other = await add_group(db_sessionmaker, "Elsewhere", {world.owner.id: GroupRole.OWNER})
    elsewhere, _ = await invited_token(client, world, outbox, unique_email("far"), group_id=other)
    crossed = await client.delete(
        f"/groups/{world.group_id}/invitations/{elsewhere['id']}", headers=world.owner.headers
    )
    assert (crossed.status_code, crossed.json()) == (404, {"detail": "INVITATION_NOT_FOUND"})
    assert (await stored(db_sessionmaker, elsewhere["id"])).status == "pending"

    # An expired one is no longer pending either.
    lapsing, _ = await invited_token(client, world, outbox, unique_email("lapsing"))
    clock.advance(WEEK)
    lapsed = await client.delete(
        f"/groups/{world.group_id}/invitations/{lapsing['id']}", headers=world.owner.headers
    )
    assert (lapsed.status_code, lapsed.json()) == (409, {"detail": "INVITATION_NOT_PENDING"})


async def test_only_owners_revoke_an_owners_invitation(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, _ = await invited_token(client, world, outbox, unique_email("heir"), "owner")
    path = f"/groups/{world.group_id}/invitations/{invitation['id']}"
    refused = await client.delete(path, headers=world.admin.headers)
    assert (refused.status_code, refused.json()) == (403, {"detail": "INSUFFICIENT_GROUP_ROLE"})
    assert (await stored(db_sessionmaker, invitation["id"])).status == "pending"
    assert (await client.delete(path, headers=world.owner.headers)).status_code == 204


# -- the invitee's side ----------------------------------------------------------------------


async def test_accepting_makes_a_member_with_the_invited_role_once(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, token = await invited_token(
        client, world, outbox, world.newcomer.user.email, "admin"
    )
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() | {"created_at": None} == {
        "id": world.group_id,
        "name": "Crew",
        "description": None,
        "created_at": None,
        "role": "admin",
    }
    assert (await roles(db_sessionmaker, world.group_id))[world.newcomer.id] is GroupRole.ADMIN
    row = await stored(db_sessionmaker, invitation["id"])
    assert row.status == "accepted"
    assert row.responded_at is not None

    for answer in ("accept", "decline"):
        again = await client.post(
            f"/invitations/{answer}", json={"token": token}, headers=world.newcomer.headers
        )
        assert (again.status_code, again.json()) == (400, {"detail": "INVITATION_ALREADY_USED"})
    # The new admin acts as one.
    listing = await client.get(
        f"/groups/{world.group_id}/invitations", headers=world.newcomer.headers
    )
    assert listing.status_code == 200


async def test_an_accepted_owners_invitation_adds_an_owner(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, token = await invited_token(client, world, outbox, world.newcomer.user.email, "owner")
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text
    owners = {
        user_id
        for user_id, role in (await roles(db_sessionmaker, world.group_id)).items()
        if role is GroupRole.OWNER
    }
    assert owners == {world.owner.id, world.newcomer.id}
    # The last-owner rules are as before: with two owners, the first may now leave.
    left = await client.delete(
        f"/groups/{world.group_id}/members/{world.owner.id}", headers=world.owner.headers
    )
    assert left.status_code == 204
    last = await client.delete(
        f"/groups/{world.group_id}/members/{world.newcomer.id}", headers=world.newcomer.headers
    )
    assert (last.status_code, last.json()) == (409, {"detail": "LAST_OWNER"})


async def test_the_invited_address_must_be_the_accounts_ignoring_letter_case(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = world.newcomer.user.email
    invitation, token = await invited_token(client, world, outbox, email.upper())
    for answer in ("accept", "decline"):
        mismatch = await client.post(
            f"/invitations/{answer}", json={"token": token}, headers=world.outsider.headers
        )
        assert (mismatch.status_code, mismatch.json()) == (
            400,
            {"detail": "INVITATION_EMAIL_MISMATCH"},
        )
    assert world.outsider.id not in await roles(db_sessionmaker, world.group_id)
    assert (await stored(db_sessionmaker, invitation["id"])).status == "pending"

    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text


async def test_unknown_expired_and_malformed_tokens(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    clock: Clock,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for answer in ("accept", "decline"):
        unknown = await client.post(
            f"/invitations/{answer}",
            json={"token": "A" * 43},
            headers=world.newcomer.headers,
        )
        assert (unknown.status_code, unknown.json()) == (400, {"detail": "INVITATION_NOT_FOUND"})

    invitation, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    clock.advance(WEEK - timedelta(seconds=5))
    clock.advance(timedelta(seconds=5))  # exactly its expiry: no longer valid
    for answer in ("accept", "decline"):
        expired = await client.post(
            f"/invitations/{answer}", json={"token": token}, headers=world.newcomer.headers
        )
        assert (expired.status_code, expired.json()) == (400, {"detail": "INVITATION_EXPIRED"})
    assert world.newcomer.id not in await roles(db_sessionmaker, world.group_id)
    assert (await stored(db_sessionmaker, invitation["id"])).status == "pending"
    mine = await client.get("/users/me/invitations", headers=world.newcomer.headers)
    assert mine.json()["items"] == []

    for body in (
        {},
        {"token": ""},
        {"token": "short"},
        {"token": "A" * 129},
        {"token": "A" * 42 + "="},
        {"token": "A" * 42 + " "},
        {"token": 12345678901234567890123456789012345},
        {"token": token, "email": "x@example.com"},
    ):
        malformed = await client.post(
            "/invitations/accept", json=body, headers=world.newcomer.headers
        )
        assert malformed.status_code == 422, (body, malformed.text)
        assert isinstance(malformed.json()["detail"], list)


async def test_a_token_just_before_its_expiry_is_accepted(
    client: httpx.AsyncClient, world: World, outbox: OutboxMailer, clock: Clock
) -> None:
    _, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    clock.advance(WEEK - timedelta(seconds=2))
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text


async def test_accepting_verifies_the_address(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    unverified = await new_person(auth, db_sessionmaker, is_verified=False)
    _, token = await invited_token(client, world, outbox, unverified.user.email)
    # Before: the account has not proven the address, so it is shown no invitations.
    listed = await client.get("/users/me/invitations", headers=unverified.headers)
    assert (listed.status_code, listed.json()) == (403, {"detail": "EMAIL_NOT_VERIFIED"})

    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=unverified.headers
    )
    assert accepted.status_code == 200, accepted.text
    me = await client.get("/users/me", headers=unverified.headers)
    assert me.json()["is_verified"] is True


async def test_a_refused_accept_verifies_nothing(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    unverified = await new_person(auth, db_sessionmaker, is_verified=False)
    _, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    refused = await client.post(
        "/invitations/accept", json={"token": token}, headers=unverified.headers
    )
    assert refused.status_code == 400
    me = await client.get("/users/me", headers=unverified.headers)
    assert me.json()["is_verified"] is False


async def test_accepting_when_already_a_member_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, token = await invited_token(
        client, world, outbox, world.newcomer.user.email, "admin"
    )
    added = await client.post(
        f"/groups/{world.group_id}/members",
        json={"user_id": str(world.newcomer.id), "role": "member"},
        headers=world.owner.headers,
    )
    assert added.status_code == 201
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert (accepted.status_code, accepted.json()) == (
        409,
        {"detail": "MEMBERSHIP_ALREADY_EXISTS"},
    )
    assert (await roles(db_sessionmaker, world.group_id))[world.newcomer.id] is GroupRole.MEMBER
    assert (await stored(db_sessionmaker, invitation["id"])).status == "pending"
    # Declining it is still possible.
    declined = await client.post(
        "/invitations/decline", json={"token": token}, headers=world.newcomer.headers
    )
    assert declined.status_code == 204


async def test_my_invitations(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    clock: Clock,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    email = world.newcomer.user.email
    other_group = await add_group(db_sessionmaker, "Second", {world.owner.id: GroupRole.OWNER})
    third_group = await add_group(db_sessionmaker, "Third", {world.owner.id: GroupRole.OWNER})
    first, _ = await invited_token(client, world, outbox, email.upper(), "admin")
    clock.advance(timedelta(seconds=10))
    second, _ = await invited_token(client, world, outbox, email, group_id=other_group)
    clock.advance(timedelta(seconds=10))
    revoked, _ = await invited_token(client, world, outbox, email, group_id=third_group)
    await client.delete(
        f"/groups/{third_group}/invitations/{revoked['id']}", headers=world.owner.headers
    )
    # Someone else's.
    await invited_token(client, world, outbox, unique_email("else"))

    mine = await client.get("/users/me/invitations", headers=world.newcomer.headers)
    assert mine.status_code == 200, mine.text
    page = mine.json()
    assert page["total"] == 2
    assert page["items"] == [
        {
            "id": second["id"],
            "group_id": other_group,
            "group_name": "Second",
            "role": "member",
            "created_at": second["created_at"],
            "expires_at": second["expires_at"],
        },
        {
            "id": first["id"],
            "group_id": world.group_id,
            "group_name": "Crew",
            "role": "admin",
            "created_at": first["created_at"],
            "expires_at": first["expires_at"],
        },
    ]
    paged = await client.get(
        "/users/me/invitations", params={"limit": 1, "offset": 1}, headers=world.newcomer.headers
    )
    assert [item["id"] for item in paged.json()["items"]] == [first["id"]]
    assert paged.json()["total"] == 2

    # Past the first one's expiry, five seconds before the second one's.
    clock.advance(WEEK - timedelta(seconds=15))
    later = await client.get("/users/me/invitations", headers=world.newcomer.headers)
    assert [item["id"] for item in later.json()["items"]] == [second["id"]]

    nobody = await client.get("/users/me/invitations", headers=world.outsider.headers)
    assert nobody.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}


# -- deletions -------------------------------------------------------------------------------


async def test_deleting_a_group_deletes_its_invitations(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, token = await invited_token(client, world, outbox, world.newcomer.user.email)
    deleted = await client.delete(f"/groups/{world.group_id}", headers=world.owner.headers)
    assert deleted.status_code == 204
    async with db_sessionmaker() as session:
        assert (await session.execute(select(GroupInvitation))).first() is None
        assert await session.get(UserGroup, world.group_id) is None
    accept = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert (accept.status_code, accept.json()) == (400, {"detail": "INVITATION_NOT_FOUND"})


async def test_deleting_the_inviter_keeps_the_invitation_valid(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, token = await invited_token(
        client, world, outbox, world.newcomer.user.email, "admin", by="admin"
    )
    deleted = await client.delete(f"/users/{world.admin.id}", headers=world.superuser.headers)
    assert deleted.status_code == 204
    row = await stored(db_sessionmaker, invitation["id"])
    assert row.invited_by is None
    assert row.status == "pending"
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert (await roles(db_sessionmaker, world.group_id))[world.newcomer.id] is GroupRole.ADMIN


# -- the listings' cost ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 30])
async def test_each_listing_is_one_statement_whatever_its_size(
    client: httpx.AsyncClient,
    world: World,
    auth: RosterAuth,
    db_sessionmaker: async_sessionmaker[AsyncSession],
    db_connection: AsyncConnection,
    size: int,
) -> None:
    invitee = world.newcomer.user.email
    for n in range(size):
        group_id = await add_group(
            db_sessionmaker, f"Cost {size} {n}", {world.owner.id: GroupRole.OWNER}
        )
        await add_invitation(
            db_sessionmaker,
            world.group_id,
            unique_email(f"c{n}"),
            GroupRole.MEMBER,
            f"cost-{size}-{n}-".ljust(43, "c"),
        )
        await add_invitation(
            db_sessionmaker, group_id, invitee, GroupRole.MEMBER, f"mine-{size}-{n}-".ljust(43, "m")
        )
    for url, person in (
        (f"/groups/{world.group_id}/invitations?limit=100", world.admin),
        ("/users/me/invitations?limit=100", world.newcomer),
    ):
        with recorded_statements(db_connection) as executed:
            response = await client.get(url, headers=person.headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == size
        statements = [
            e.statement
            for e in executed
            if not e.statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO"))
        ]
        # The caller's row, the access check, the total and the page: one statement.
        assert len(statements) == 1, statements


async def test_removing_the_inviter_from_the_group_keeps_the_invitation_valid(
    client: httpx.AsyncClient,
    world: World,
    outbox: OutboxMailer,
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    invitation, token = await invited_token(
        client, world, outbox, world.newcomer.user.email, by="admin"
    )
    removed = await client.delete(
        f"/groups/{world.group_id}/members/{world.admin.id}", headers=world.owner.headers
    )
    assert removed.status_code == 204
    assert (await stored(db_sessionmaker, invitation["id"])).invited_by == world.admin.id
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=world.newcomer.headers
    )
    assert accepted.status_code == 200, accepted.text
