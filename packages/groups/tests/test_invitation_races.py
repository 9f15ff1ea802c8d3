"""Invitations under concurrent requests, on separate connections with real commits: every race
ends with at most one membership per invitation, never a 500 or a 503 (a deadlock)."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_groups.models import GroupInvitation, GroupRole, Membership

from .conftest import (
    Person,
    add_group,
    add_invitation,
    make_people,
    until_waiting_for_locks,
)

CONTENDERS = 8
ROUNDS = 4
WAIT_LIMIT_SECONDS = 5.0


def statuses(responses: Sequence[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def token(label: str) -> str:
    return f"race-{label}-".ljust(43, "r")


async def memberships_of(
    sessionmaker: async_sessionmaker[AsyncSession], group_id: int, user_id: uuid.UUID
) -> int:
    async with sessionmaker() as session:
        statement = (
            select(func.count())
            .select_from(Membership)
            .where(Membership.group_id == group_id, Membership.user_id == user_id)
        )
        return (await session.exec(statement)).one()


async def invitation(
    sessionmaker: async_sessionmaker[AsyncSession], invitation_id: uuid.UUID
) -> GroupInvitation | None:
    async with sessionmaker() as session:
        return await session.get(GroupInvitation, invitation_id)


async def hold_invitation(holder: AsyncSession, invitation_id: uuid.UUID) -> None:
    """Lock the invitation's row in another transaction, so that every request that needs it
    waits, and all of them go at once when the holder lets go."""
    locked = await holder.exec(
        select(GroupInvitation.id).where(GroupInvitation.id == invitation_id).with_for_update()
    )
    assert locked.first() is not None


async def test_racing_accepts_of_one_token_make_one_membership(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, committing_sessionmaker, "owner", "invitee")
    invitee = people["invitee"]
    group_id = await add_group(
        committing_sessionmaker, "Once", {people["owner"].id: GroupRole.OWNER}
    )
    invitation_id = await add_invitation(
        committing_sessionmaker, group_id, invitee.user.email, GroupRole.ADMIN, token("once")
    )
    async with committing_sessionmaker() as holder:
        await hold_invitation(holder, invitation_id)
        accepts = [
            asyncio.ensure_future(
                committing_client.post(
                    "/invitations/accept", json={"token": token("once")}, headers=invitee.headers
                )
            )
            for _ in range(CONTENDERS)
        ]
        await until_waiting_for_locks(committing_sessionmaker, CONTENDERS)
        assert not any(accept.done() for accept in accepts)
        await holder.rollback()
    responses = await asyncio.wait_for(asyncio.gather(*accepts), WAIT_LIMIT_SECONDS)
    assert statuses(responses) == {200: 1, 400: CONTENDERS - 1}, [r.text for r in responses]
    assert {r.json()["detail"] for r in responses if r.status_code == 400} == {
        "INVITATION_ALREADY_USED"
    }
    assert await memberships_of(committing_sessionmaker, group_id, invitee.id) == 1
    row = await invitation(committing_sessionmaker, invitation_id)
    assert row is not None
    assert row.status == "accepted"


async def setup_rounds(
    auth: RosterAuth, sessionmaker: async_sessionmaker[AsyncSession], name: str
) -> tuple[dict[str, Person], list[tuple[int, uuid.UUID, str]]]:
    """ROUNDS groups, each with an owner, an admin (the inviter) and a pending invitation to
    the same invitee, by the admin."""
    labels = ["invitee", "root"] + [f"{role}{n}" for n in range(ROUNDS) for role in ("o", "a")]
    people = await make_people(auth, sessionmaker, *labels, superusers={"root"})
    rounds = []
    for n in range(ROUNDS):
        group_id = await add_group(
            sessionmaker,
            f"{name} {n}",
            {people[f"o{n}"].id: GroupRole.OWNER, people[f"a{n}"].id: GroupRole.ADMIN},
        )
        async with sessionmaker() as session:
            invitation_id = await add_invitation(
                sessionmaker,
                group_id,
                people["invitee"].user.email,
                GroupRole.MEMBER,
                token(f"{name}-{n}"),
            )
            row = await session.get(GroupInvitation, invitation_id)
            assert row is not None
            row.invited_by = people[f"a{n}"].id
            await session.commit()
        rounds.append((group_id, invitation_id, token(f"{name}-{n}")))
    return people, rounds


async def test_an_accept_racing_a_revoke_ends_one_way(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people, rounds = await setup_rounds(auth, committing_sessionmaker, "Revoked")
    invitee = people["invitee"]

    async def race(n: int, group_id: int, invitation_id: uuid.UUID, raw: str) -> None:
        accept = committing_client.post(
            "/invitations/accept", json={"token": raw}, headers=invitee.headers
        )
        revoke = committing_client.delete(
            f"/groups/{group_id}/invitations/{invitation_id}", headers=people[f"o{n}"].headers
        )
        # Alternate who is sent first.
        if n % 2:
            accepted, revoked = await asyncio.gather(accept, revoke)
        else:
            revoked, accepted = await asyncio.gather(revoke, accept)
        members = await memberships_of(committing_sessionmaker, group_id, invitee.id)
        row = await invitation(committing_sessionmaker, invitation_id)
        assert row is not None
        outcome = (accepted.status_code, revoked.status_code, members, row.status)
        assert outcome in {(200, 409, 1, "accepted"), (400, 204, 0, "revoked")}, (
            accepted.text,
            revoked.text,
        )
        if accepted.status_code == 400:
            assert accepted.json() == {"detail": "INVITATION_REVOKED"}
        else:
            assert revoked.json() == {"detail": "INVITATION_NOT_PENDING"}

    await asyncio.gather(*(race(n, *round_) for n, round_ in enumerate(rounds)))

    # And with both waiting on the invitation's row, released together.
    group_id = rounds[0][0]
    [late] = (await make_people(auth, committing_sessionmaker, "late")).values()
    fresh = await add_invitation(
        committing_sessionmaker, group_id, late.user.email, GroupRole.MEMBER, token("late")
    )
    async with committing_sessionmaker() as holder:
        await hold_invitation(holder, fresh)
        both = [
            asyncio.ensure_future(
                committing_client.post(
                    "/invitations/accept", json={"token": token("late")}, headers=late.headers
                )
            ),
            asyncio.ensure_future(
                committing_client.delete(
                    f"/groups/{group_id}/invitations/{fresh}", headers=people["o0"].headers
                )
            ),
        ]
        await until_waiting_for_locks(committing_sessionmaker, len(both))
        assert not any(request.done() for request in both)
        await holder.rollback()
    accepted, revoked = await asyncio.wait_for(asyncio.gather(*both), WAIT_LIMIT_SECONDS)
    members = await memberships_of(committing_sessionmaker, group_id, late.id)
    assert (accepted.status_code, revoked.status_code, members) in {(200, 409, 1), (400, 204, 0)}


async def test_an_accept_racing_the_inviters_deletion_still_joins(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people, rounds = await setup_rounds(auth, committing_sessionmaker, "Inviterless")
    invitee = people["invitee"]
    requests = []
    for n, (_, _, raw) in enumerate(rounds):
        requests.append(
            committing_client.post(
                "/invitations/accept", json={"token": raw}, headers=invitee.headers
            )
        )
        requests.append(
            committing_client.delete(f"/users/{people[f'a{n}'].id}", headers=people["root"].headers)
        )
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200, 204] * ROUNDS, [r.text for r in responses]
    for group_id, invitation_id, _ in rounds:
        assert await memberships_of(committing_sessionmaker, group_id, invitee.id) == 1
        row = await invitation(committing_sessionmaker, invitation_id)
        assert row is not None
        assert (row.status, row.invited_by) == ("accepted", None)


async def test_an_accept_racing_the_groups_deletion_leaves_nothing_behind(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people, rounds = await setup_rounds(auth, committing_sessionmaker, "Doomed")
    invitee = people["invitee"]

    async def race(n: int, group_id: int, invitation_id: uuid.UUID, raw: str) -> None:
        accept = committing_client.post(
            "/invitations/accept", json={"token": raw}, headers=invitee.headers
        )
        delete = committing_client.delete(f"/groups/{group_id}", headers=people[f"o{n}"].headers)
        if n % 2:
            accepted, deleted = await asyncio.gather(accept, delete)
        else:
            deleted, accepted = await asyncio.gather(delete, accept)
        assert deleted.status_code == 204, deleted.text
        assert accepted.status_code in {200, 400}, accepted.text
        if accepted.status_code == 400:
            assert accepted.json() == {"detail": "INVITATION_NOT_FOUND"}
        assert await memberships_of(committing_sessionmaker, group_id, invitee.id) == 0
        assert await invitation(committing_sessionmaker, invitation_id) is None

    await asyncio.gather(*(race(n, *round_) for n, round_ in enumerate(rounds)))


async def test_an_accept_holding_its_invitation_makes_the_groups_deletion_wait(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The interleaving that could deadlock (the accept has the invitation, the deletion the
    group): the accept takes the group in KEY SHARE mode first, so the deletion waits for it,
    and both succeed, in that order."""
    people, rounds = await setup_rounds(auth, committing_sessionmaker, "Held")
    invitee = people["invitee"]
    group_id, invitation_id, raw = rounds[0]
    async with committing_sessionmaker() as holder:
        await hold_invitation(holder, invitation_id)
        accept = asyncio.ensure_future(
            committing_client.post(
                "/invitations/accept", json={"token": raw}, headers=invitee.headers
            )
        )
        await until_waiting_for_locks(committing_sessionmaker, 1)
        delete = asyncio.ensure_future(
            committing_client.delete(f"/groups/{group_id}", headers=people["o0"].headers)
        )
        await until_waiting_for_locks(committing_sessionmaker, 2)
        assert not accept.done()
        assert not delete.done()
        await holder.rollback()
    accepted, deleted = await asyncio.wait_for(asyncio.gather(accept, delete), WAIT_LIMIT_SECONDS)
    assert (accepted.status_code, deleted.status_code) == (200, 204), (accepted.text, deleted.text)
    assert await memberships_of(committing_sessionmaker, group_id, invitee.id) == 0
    assert await invitation(committing_sessionmaker, invitation_id) is None
