"""Concurrent requests on separate connections with real commits: the database decides, and
the losers get a 409, never a 500 or a second row; and only a group's members ever wait for its
row lock."""

import asyncio
from collections import Counter
from collections.abc import Sequence

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import RosterAuth
from roster_db.audit import AUDIT_EVENTS, AuditAction
from roster_groups.models import GroupRole, Membership, UserGroup

from .conftest import add_group, make_people, until_waiting_for_locks

CONTENDERS = 8
# Far longer than any answer here takes when nothing makes it wait.
WAIT_LIMIT_SECONDS = 5.0


def statuses(responses: Sequence[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def test_racing_group_names_make_one_group(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(
        auth, committing_sessionmaker, *(f"racer{i}" for i in range(CONTENDERS))
    )
    spellings = ["Race", "race", "RACE", " rAcE "]
    responses = await asyncio.gather(
        *(
            committing_client.post(
                "/groups", json={"name": spellings[i % 4]}, headers=person.headers
            )
            for i, person in enumerate(people.values())
        )
    )
    assert statuses(responses) == {201: 1, 409: CONTENDERS - 1}, [r.text for r in responses]
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {
        "GROUP_NAME_ALREADY_EXISTS"
    }
    async with committing_sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(UserGroup))).one() == 1
        # Only the winner's owner membership exists: the losers' transactions left nothing.
        memberships = (await session.exec(select(Membership))).all()
        events = (await session.exec(select(AUDIT_EVENTS.action, AUDIT_EVENTS.group_id))).all()
    (winner,) = [r for r in responses if r.status_code == 201]
    assert [(m.group_id, m.role) for m in memberships] == [(winner.json()["id"], GroupRole.OWNER)]
    # One audit event, the winner's: the losers' rolled back with their transactions.
    assert [tuple(e) for e in events] == [(AuditAction.GROUP_CREATED, winner.json()["id"])]


async def test_racing_adds_of_one_user_make_one_membership(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, committing_sessionmaker, "owner", "admin", "joiner")
    group_id = await add_group(
        committing_sessionmaker,
        "Adders",
        {people["owner"].id: GroupRole.OWNER, people["admin"].id: GroupRole.ADMIN},
    )
    responses = await asyncio.gather(
        *(
            committing_client.post(
                f"/groups/{group_id}/members",
                json={"user_id": str(people["joiner"].id), "role": "member"},
                headers=people["owner" if i % 2 else "admin"].headers,
            )
            for i in range(CONTENDERS)
        )
    )
    assert statuses(responses) == {201: 1, 409: CONTENDERS - 1}, [r.text for r in responses]
    assert {r.json()["detail"] for r in responses if r.status_code == 409} == {
        "MEMBERSHIP_ALREADY_EXISTS"
    }
    async with committing_sessionmaker() as session:
        count = select(func.count()).select_from(Membership)
        joined = count.where(Membership.user_id == people["joiner"].id)
        assert (await session.exec(joined)).one() == 1
        # The insert and its event are one statement: the losers wrote neither.
        added = select(AUDIT_EVENTS.subject_user_id).where(
            AUDIT_EVENTS.action == AuditAction.MEMBER_ADDED
        )
        assert (await session.exec(added)).all() == [people["joiner"].id]


async def owners_of(sessionmaker: async_sessionmaker[AsyncSession], group_id: int) -> int:
    async with sessionmaker() as session:
        statement = (
            select(func.count())
            .select_from(Membership)
            .where(Membership.group_id == group_id, Membership.role == GroupRole.OWNER)
        )
        return (await session.exec(statement)).one()


async def test_two_owners_leaving_at_once_leave_one_owner(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    groups = 4
    people = await make_people(
        auth, committing_sessionmaker, *(f"o{g}{n}" for g in range(groups) for n in "ab")
    )
    group_ids = [
        await add_group(
            committing_sessionmaker,
            f"Pair {g}",
            {people[f"o{g}a"].id: GroupRole.OWNER, people[f"o{g}b"].id: GroupRole.OWNER},
        )
        for g in range(groups)
    ]
    leaves = [
        committing_client.delete(
            f"/groups/{group_id}/members/{people[f'o{g}{n}'].id}",
            headers=people[f"o{g}{n}"].headers,
        )
        for g, group_id in enumerate(group_ids)
        for n in "ab"
    ]
    responses = await asyncio.gather(*leaves)
    assert statuses(responses) == {204: groups, 409: groups}, [r.text for r in responses]
    for group_id in group_ids:
        assert await owners_of(committing_sessionmaker, group_id) == 1
    async with committing_sessionmaker() as session:
        left = select(AUDIT_EVENTS.group_id).where(AUDIT_EVENTS.action == AuditAction.MEMBER_LEFT)
        assert sorted((await session.exec(left)).all()) == sorted(group_ids)


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people = await make_people(auth, committing_sessionmaker, "a", "b")
    a, b = people["a"], people["b"]
    group_id = await add_group(
        committing_sessionmaker, "Duel", {a.id: GroupRole.OWNER, b.id: GroupRole.OWNER}
    )
    responses = await asyncio.gather(
        committing_client.patch(
            f"/groups/{group_id}/members/{b.id}", json={"role": "member"}, headers=a.headers
        ),
        committing_client.patch(
            f"/groups/{group_id}/members/{a.id}", json={"role": "member"}, headers=b.headers
        ),
    )
    # The loser was demoted before its own request ran: no longer an owner, it gets 403.
    assert statuses(responses) == {200: 1, 403: 1}, [r.text for r in responses]
    assert await owners_of(committing_sessionmaker, group_id) == 1


async def test_deleting_an_owners_account_while_the_other_owner_leaves(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Whichever commits first, the group ends with exactly one owner: either the leaver is
    refused (409, now the last owner) or the account trigger promotes the remaining member."""
    people = await make_people(
        auth, committing_sessionmaker, "a", "b", "c", "root", superusers={"root"}
    )
    group_id = await add_group(
        committing_sessionmaker,
        "Shaky",
        {
            people["a"].id: GroupRole.OWNER,
            people["b"].id: GroupRole.OWNER,
            people["c"].id: GroupRole.MEMBER,
        },
    )
    deletion, leaving = await asyncio.gather(
        committing_client.delete(f"/users/{people['a'].id}", headers=people["root"].headers),
        committing_client.delete(
            f"/groups/{group_id}/members/{people['b'].id}", headers=people["b"].headers
        ),
    )
    assert deletion.status_code == 204, deletion.text
    assert leaving.status_code in {204, 409}, leaving.text
    assert await owners_of(committing_sessionmaker, group_id) == 1


async def test_a_non_member_never_waits_for_a_groups_row_lock(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """While another transaction holds the group's row lock, every write a stranger tries is a
    404 at once, while the owner's write waits for the lock (so it really was held)."""
    people = await make_people(auth, committing_sessionmaker, "owner", "stranger", "joiner")
    owner, stranger = people["owner"], people["stranger"]
    group_id = await add_group(committing_sessionmaker, "Held", {owner.id: GroupRole.OWNER})
    members = f"/groups/{group_id}/members"
    async with committing_sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        owners_write = asyncio.ensure_future(
            committing_client.patch(
                f"/groups/{group_id}", json={"description": "waited"}, headers=owner.headers
            )
        )
        try:
            strangers_writes = await asyncio.wait_for(
                asyncio.gather(
                    committing_client.post(
                        members,
                        json={"user_id": str(people["joiner"].id), "role": "member"},
                        headers=stranger.headers,
                    ),
                    committing_client.delete(f"{members}/{stranger.id}", headers=stranger.headers),
                    committing_client.patch(
                        f"{members}/{owner.id}", json={"role": "member"}, headers=stranger.headers
                    ),
                    committing_client.patch(
                        f"/groups/{group_id}", json={"name": "Mine"}, headers=stranger.headers
                    ),
                    committing_client.delete(f"/groups/{group_id}", headers=stranger.headers),
                ),
                timeout=WAIT_LIMIT_SECONDS,
            )
            assert not owners_write.done()
        finally:
            await holder.rollback()
    assert [r.status_code for r in strangers_writes] == [404] * 5, [
        r.text for r in strangers_writes
    ]
    released = await asyncio.wait_for(owners_write, timeout=WAIT_LIMIT_SECONDS)
    assert released.status_code == 200, released.text
    assert released.json()["description"] == "waited"


async def test_a_write_that_waited_for_the_lock_sees_the_role_the_holder_left(
    committing_client: httpx.AsyncClient,
    auth: RosterAuth,
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The lock and the caller's role are taken in one statement: while another transaction
    holds the group's row lock and demotes the caller, the caller's owner-only write waits,
    then is refused (403) by the role it has once the demotion has committed, not by the one
    it had when its statement started."""
    people = await make_people(auth, committing_sessionmaker, "first", "second", "member")
    first, second = people["first"], people["second"]
    group_id = await add_group(
        committing_sessionmaker,
        "Demoted while waiting",
        {
            first.id: GroupRole.OWNER,
            second.id: GroupRole.OWNER,
            people["member"].id: GroupRole.MEMBER,
        },
    )
    async with committing_sessionmaker() as holder:
        await holder.exec(select(UserGroup.id).where(UserGroup.id == group_id).with_for_update())
        promotion = asyncio.ensure_future(
            committing_client.patch(
                f"/groups/{group_id}/members/{people['member'].id}",
                json={"role": "admin"},
                headers=second.headers,
            )
        )
        try:
            await until_waiting_for_locks(committing_sessionmaker, 1)
            assert not promotion.done()
            demoted = await holder.exec(
                select(Membership).where(
                    Membership.group_id == group_id, Membership.user_id == second.id
                )
            )
            demoted.one().role = GroupRole.MEMBER
            await holder.commit()
        finally:
            await holder.rollback()
    refused = await asyncio.wait_for(promotion, timeout=WAIT_LIMIT_SECONDS)
    assert refused.status_code == 403, refused.text
