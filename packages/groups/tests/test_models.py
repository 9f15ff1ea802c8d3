"""The models on the shared registry: relationships across SQLModel and SQLAlchemy, both ways,
and what the database enforces on its own."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, exc
from sqlalchemy.orm import selectinload
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import User
from roster_db import SQLModelBase, is_check_violation, is_unique_violation, metadata
from roster_groups.models import GroupRole, Membership, UserGroup


def new_user(label: str = "user") -> User:
    return User(email=f"{label}-{uuid.uuid4().hex[:8]}@example.com", hashed_password="x")


def group_id_of(group: UserGroup) -> int:
    assert group.id is not None, "flush the group first"
    return group.id


def test_models_live_on_the_shared_metadata() -> None:
    assert UserGroup.metadata is metadata
    assert isinstance(UserGroup(name="x"), SQLModelBase)
    assert metadata.tables["membership"].c.user_id.references(metadata.tables["user"].c.id)
    assert {fk.ondelete for fk in metadata.tables["membership"].foreign_keys} == {"CASCADE"}


async def test_relationships_load_both_ways(db_session: AsyncSession) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    team, guild = UserGroup(name="Team"), UserGroup(name="Guild")
    db_session.add_all([alice, bob, team, guild])
    await db_session.flush()
    db_session.add_all(
        [
            Membership(group_id=group_id_of(team), user_id=alice.id, role=GroupRole.OWNER),
            Membership(group_id=group_id_of(team), user_id=bob.id),
            Membership(group_id=group_id_of(guild), user_id=alice.id, role=GroupRole.ADMIN),
        ]
    )
    await db_session.commit()
    db_session.expunge_all()

    group = (
        await db_session.exec(
            select(UserGroup)
            .where(UserGroup.id == team.id)
            .options(
                selectinload(UserGroup.users),  # type: ignore[arg-type]
                selectinload(UserGroup.memberships).selectinload(Membership.user),  # type: ignore[arg-type]
            )
        )
    ).one()
    assert {user.email for user in group.users} == {alice.email, bob.email}
    assert {(m.user.email, m.role) for m in group.memberships} == {
        (alice.email, GroupRole.OWNER),
        (bob.email, GroupRole.MEMBER),
    }

    user = (
        await db_session.exec(
            select(User).where(User.id == alice.id).options(selectinload(User.groups))  # type: ignore[attr-defined]
        )
    ).one()
    assert [g.name for g in user.groups] == ["Guild", "Team"]  # type: ignore[attr-defined]

    membership = (
        await db_session.exec(
            select(Membership)
            .where(Membership.user_id == bob.id)
            .options(selectinload(Membership.group))  # type: ignore[arg-type]
        )
    ).one()
    assert membership.group.name == "Team"


async def test_lazy_loads_raise_instead_of_querying(db_session: AsyncSession) -> None:
    alice, team = new_user(), UserGroup(name="Lazy")
    db_session.add_all([alice, team])
    await db_session.flush()
    db_session.add(Membership(group_id=group_id_of(team), user_id=alice.id, role=GroupRole.OWNER))
    await db_session.commit()
    db_session.expunge_all()

    group = (await db_session.exec(select(UserGroup))).one()
    user = (await db_session.exec(select(User))).one()
    membership = (await db_session.exec(select(Membership))).one()
    for load in (
        lambda: group.users,
        lambda: group.memberships,
        lambda: user.groups,  # type: ignore[attr-defined]
        lambda: membership.user,
        lambda: membership.group,
    ):
        with pytest.raises(exc.InvalidRequestError, match="lazy='raise'"):
            load()


async def test_group_names_are_unique_whatever_their_case(db_session: AsyncSession) -> None:
    db_session.add(UserGroup(name="Platform"))
    await db_session.flush()
    db_session.add(UserGroup(name="PLATFORM"))
    with pytest.raises(exc.IntegrityError) as caught:
        await db_session.flush()
    assert is_unique_violation(caught.value)


@pytest.mark.parametrize("name", ["", " padded ", "trailing "])
async def test_the_database_refuses_untrimmed_or_empty_names(
    db_session: AsyncSession, name: str
) -> None:
    db_session.add(UserGroup(name=name))
    with pytest.raises(exc.IntegrityError) as caught:
        await db_session.flush()
    assert is_check_violation(caught.value)


async def test_the_database_refuses_an_unknown_role(db_session: AsyncSession) -> None:
    alice, team = new_user(), UserGroup(name="Roles")
    db_session.add_all([alice, team])
    await db_session.flush()
    connection = await db_session.connection()
    with pytest.raises(exc.IntegrityError) as caught:
        await connection.exec_driver_sql(
            "INSERT INTO membership (group_id, user_id, role) VALUES ($1, $2, 'king')",
            (team.id, alice.id),
        )
    assert is_check_violation(caught.value)


async def test_one_membership_per_user_and_group(db_session: AsyncSession) -> None:
    alice, team = new_user(), UserGroup(name="Once")
    db_session.add_all([alice, team])
    await db_session.flush()
    db_session.add(Membership(group_id=group_id_of(team), user_id=alice.id, role=GroupRole.OWNER))
    await db_session.flush()
    db_session.expunge_all()
    db_session.add(Membership(group_id=group_id_of(team), user_id=alice.id))
    with pytest.raises(exc.IntegrityError) as caught:
        await db_session.flush()
    assert is_unique_violation(caught.value)


async def count_memberships(session: AsyncSession) -> int:
    return len((await session.exec(select(Membership))).all())


async def test_deleting_a_group_deletes_its_memberships(db_session: AsyncSession) -> None:
    alice, bob, team = new_user(), new_user(), UserGroup(name="Doomed")
    db_session.add_all([alice, bob, team])
    await db_session.flush()
    db_session.add_all(
        [
            Membership(group_id=group_id_of(team), user_id=alice.id, role=GroupRole.OWNER),
            Membership(group_id=group_id_of(team), user_id=bob.id),
        ]
    )
    await db_session.flush()
    await db_session.exec(delete(UserGroup).where(UserGroup.id == team.id))  # type: ignore[arg-type]
    assert await count_memberships(db_session) == 0
    # The users stay.
    assert len((await db_session.exec(select(User))).all()) == 2


START = datetime(2024, 1, 1, tzinfo=UTC)


async def group_with(
    session: AsyncSession, name: str, members: list[tuple[User, GroupRole]]
) -> int:
    """A group whose members joined one day apart, in the order given."""
    group = UserGroup(name=name)
    session.add(group)
    session.add_all(user for user, _ in members)
    await session.flush()
    session.add_all(
        Membership(
            group_id=group_id_of(group),
            user_id=user.id,
            role=role,
            joined_at=START + timedelta(days=day),
        )
        for day, (user, role) in enumerate(members)
    )
    await session.flush()
    return group_id_of(group)


async def roles_in(session: AsyncSession, group_id: int) -> dict[uuid.UUID, GroupRole]:
    rows = await session.exec(select(Membership).where(Membership.group_id == group_id))
    return {membership.user_id: membership.role for membership in rows.all()}


async def delete_account(session: AsyncSession, user: User) -> None:
    await session.exec(delete(User).where(User.id == user.id))  # type: ignore[arg-type]
    session.expunge_all()


async def test_deleting_the_last_owner_promotes_the_longest_standing_admin(
    db_session: AsyncSession,
) -> None:
    owner, member, first_admin, second_admin = (new_user() for _ in range(4))
    group_id = await group_with(
        db_session,
        "Succession",
        [
            (owner, GroupRole.OWNER),
            (member, GroupRole.MEMBER),  # longer-standing, but admins come first
            (first_admin, GroupRole.ADMIN),
            (second_admin, GroupRole.ADMIN),
        ],
    )
    await delete_account(db_session, owner)
    assert await roles_in(db_session, group_id) == {
        member.id: GroupRole.MEMBER,
        first_admin.id: GroupRole.OWNER,
        second_admin.id: GroupRole.ADMIN,
    }


async def test_without_admins_the_longest_standing_member_becomes_owner(
    db_session: AsyncSession,
) -> None:
    owner, first, second = new_user(), new_user(), new_user()
    group_id = await group_with(
        db_session,
        "Members only",
        [(owner, GroupRole.OWNER), (first, GroupRole.MEMBER), (second, GroupRole.MEMBER)],
    )
    await delete_account(db_session, owner)
    assert await roles_in(db_session, group_id) == {
        first.id: GroupRole.OWNER,
        second.id: GroupRole.MEMBER,
    }


async def test_a_remaining_owner_keeps_the_group_as_it_is(db_session: AsyncSession) -> None:
    owner, co_owner, admin = new_user(), new_user(), new_user()
    group_id = await group_with(
        db_session,
        "Co-owned",
        [(owner, GroupRole.OWNER), (admin, GroupRole.ADMIN), (co_owner, GroupRole.OWNER)],
    )
    await delete_account(db_session, owner)
    assert await roles_in(db_session, group_id) == {
        co_owner.id: GroupRole.OWNER,
        admin.id: GroupRole.ADMIN,
    }


async def test_a_group_left_without_members_is_deleted(db_session: AsyncSession) -> None:
    owner, other = new_user(), new_user()
    lonely = await group_with(db_session, "Lonely", [(owner, GroupRole.OWNER)])
    kept = await group_with(db_session, "Kept", [(other, GroupRole.OWNER)])
    await delete_account(db_session, owner)
    remaining = (await db_session.exec(select(UserGroup.id))).all()
    assert lonely not in remaining
    assert kept in remaining
