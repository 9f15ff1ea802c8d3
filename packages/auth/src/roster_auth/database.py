"""FastAPI Users' SQLAlchemy adapter, made safe under concurrency and made to revoke tokens.

The adapter commits by itself. Two things have to happen inside those commits:

- a unique violation of the lower-cased email (two registrations racing, an email change
  colliding) becomes FastAPI Users' `UserAlreadyExists` (a 400), never a 500, and the session
  is rolled back so the request can still answer;
- a new password (a change or a reset) or a deactivation ends every session of the user in
  the same transaction: its cookie sessions are deleted and its refresh-token families
  revoked, so there is no moment where the password changed but old sessions still work. A
  deletion takes both with the user's row (ON DELETE CASCADE);
- every change the audit trail records (roster_db.audit: `user.registered`, `user.verified`,
  `user.password_changed`, `user.password_reset`, `user.email_changed`, `user.deactivated`,
  `user.made_superuser`, `user.deleted`) is written to the session before the adapter's
  commit, so the event and the change commit together, or roll back together (a taken email
  leaves no `user.registered`). The events follow from what the write changes, compared with
  the row as it is; who acts is `acting` (the user manager sets it for each of its calls),
  the system (NULL) unless told.
"""

import enum
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from fastapi_users.exceptions import UserAlreadyExists
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from sqlalchemy import String, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from roster_auth.models import EMAIL_UNIQUE_INDEX, IDENTITY_UNIQUE_CONSTRAINT, OAuthAccount, User
from roster_auth.sessions import revoke_all_sessions
from roster_db import constraint_name_of, is_unique_violation
from roster_db.audit import (
    INSERT_EVENT,
    INSERT_EVENT_COLUMNS,
    INSERT_EVENT_VALUES,
    AuditAction,
    audit_event,
    event_parameters,
)

# Tells Postgres who deletes an account, for the events that its triggers write meanwhile
# (roster-groups' successor promotion): local to the transaction. Set in the same statement
# as the `user.deleted` event, so it costs no round trip.
_ACTOR_SETTING: Final = "roster.audit_actor_id"
# set_config in FROM, read by the WHERE, so that Postgres evaluates it (an unread SELECT in a
# WITH would not run).
_ACTING: Final = select(
    func.set_config(_ACTOR_SETTING, bindparam("actor_setting", type_=String), True).label("setting")
).subquery("acting")
DELETE_EVENT: Final = insert(audit_event).from_select(
    list(INSERT_EVENT_COLUMNS),
    select(*INSERT_EVENT_VALUES).select_from(_ACTING).where(_ACTING.c.setting.is_not(None)),
)


def _is_identity_or_email_taken(error: IntegrityError) -> bool:
    return is_unique_violation(error) and constraint_name_of(error) in (
        None,
        EMAIL_UNIQUE_INDEX,
        IDENTITY_UNIQUE_CONSTRAINT,
    )


def _is_email_taken(error: IntegrityError) -> bool:
    # Older servers or drivers may not name the constraint; the email index is the only
    # unique constraint a write of ours can break besides the primary key, which is random.
    name = constraint_name_of(error)
    return is_unique_violation(error) and name in (None, EMAIL_UNIQUE_INDEX)


class Acting(enum.Enum):
    """The account acts on itself (registering, verifying, resetting, `PATCH /users/me`)."""

    SELF = "self"


Actor = uuid.UUID | Acting | None


class RosterUserDatabase(SQLAlchemyUserDatabase[User, uuid.UUID]):
    # Who acts, for the audit events of the next writes: a user's id, the account itself, or
    # None for the system (a command line, a script).
    acting: Actor = None
    # What a new password is: a change (an update) or a reset (a token from a mail).
    password_action: AuditAction = AuditAction.USER_PASSWORD_CHANGED

    @contextmanager
    def acting_as(
        self,
        actor: Actor,
        password_action: AuditAction = AuditAction.USER_PASSWORD_CHANGED,
    ) -> Iterator[None]:
        """Writes inside the block record `actor` as who did them."""
        previous = self.acting, self.password_action
        self.acting, self.password_action = actor, password_action
        try:
            yield
        finally:
            self.acting, self.password_action = previous

    def _actor_id(self, subject_id: uuid.UUID) -> uuid.UUID | None:
        return subject_id if self.acting is Acting.SELF else self.acting

    async def _record(
        self,
        subject_id: uuid.UUID,
        actions: list[AuditAction],
        details: dict[str, Any] | None = None,
    ) -> None:
        if not actions:
            return
        actor_id = self._actor_id(subject_id)
        await self.session.execute(
            INSERT_EVENT,
            [
                event_parameters(
                    action, actor_id=actor_id, subject_user_id=subject_id, details=details
                )
                for action in actions
            ],
        )

    def _update_events(self, user: User, update_dict: dict[str, Any]) -> list[AuditAction]:
        """What the audit trail records of this write, judged against the row as it is."""
        actions: list[AuditAction] = []
        if "hashed_password" in update_dict:
            actions.append(self.password_action)
        new_email = update_dict.get("email")
        if new_email is not None and new_email.casefold() != user.email.casefold():
            # The fact only: the addresses stay out of the trail.
            actions.append(AuditAction.USER_EMAIL_CHANGED)
        if update_dict.get("is_verified") is True and not user.is_verified:
            actions.append(AuditAction.USER_VERIFIED)
        if update_dict.get("is_active") is False and user.is_active:
            actions.append(AuditAction.USER_DEACTIVATED)
        if update_dict.get("is_superuser") is True and not user.is_superuser:
            actions.append(AuditAction.USER_MADE_SUPERUSER)
        return actions

    async def create(self, create_dict: dict[str, Any]) -> User:
        # The id chosen here rather than at the flush, so the event can name it.
        create_dict = {"id": uuid.uuid4(), **create_dict}
        await self._record(create_dict["id"], [AuditAction.USER_REGISTERED])
        try:
            return await super().create(create_dict)
        except IntegrityError as error:
            await self.session.rollback()
            if _is_email_taken(error):
                raise UserAlreadyExists() from error
            raise

    async def update(self, user: User, update_dict: dict[str, Any]) -> User:
        await self._record(user.id, self._update_events(user, update_dict))
        if self._revokes_tokens(update_dict):
            await revoke_all_sessions(self.session, user.id)
        try:
            return await super().update(user, update_dict)
        except IntegrityError as error:
            await self.session.rollback()
            if _is_email_taken(error):
                # The rollback expired the user; reload it, so whoever holds it can still
                # read it without a lazy load.
                await self.session.refresh(user)
                raise UserAlreadyExists() from error
            raise

    async def delete(self, user: User) -> None:
        # The event, and who deletes (for the events the deletion's triggers write), in one
        # statement before the library's delete and commit.
        actor_id = self._actor_id(user.id)
        await self.session.execute(
            DELETE_EVENT,
            {
                **event_parameters(
                    AuditAction.USER_DELETED, actor_id=actor_id, subject_user_id=user.id
                ),
                "actor_setting": "" if actor_id is None else str(actor_id),
            },
        )
        await super().delete(user)

    async def create_with_identity(
        self, create_dict: dict[str, Any], oauth_name: str, account_id: str, account_email: str
    ) -> User | None:
        """A new account, linked to a provider's identity, in one commit; None when the
        email or the identity was taken meanwhile (a concurrent sign-in: ask again)."""
        user_id = uuid.uuid4()
        await self._record(user_id, [AuditAction.USER_REGISTERED])
        await self._record(user_id, [AuditAction.USER_OAUTH_LINKED], {"provider": oauth_name})
        user = User(id=user_id, **create_dict)
        self.session.add(user)
        self.session.add(_oauth_account(user_id, oauth_name, account_id, account_email))
        if not await self._commit_unless_taken():
            return None
        return user

    async def link_identity(
        self, user: User, oauth_name: str, account_id: str, account_email: str
    ) -> bool:
        """Link a provider's identity to the account; False when it was linked meanwhile (to
        this account or another: ask again)."""
        await self._record(user.id, [AuditAction.USER_OAUTH_LINKED], {"provider": oauth_name})
        self.session.add(_oauth_account(user.id, oauth_name, account_id, account_email))
        return await self._commit_unless_taken()

    async def _commit_unless_taken(self) -> bool:
        try:
            await self.session.commit()
        except IntegrityError as error:
            await self.session.rollback()
            if _is_identity_or_email_taken(error):
                return False
            raise
        return True

    async def store_rehashed_password(self, user: User, hashed_password: str) -> User:
        """Store a stronger hash of the user's current password (made at login when the stored
        one is outdated). The password is the same, so the user's tokens stay valid."""
        return await super().update(user, {"hashed_password": hashed_password})

    def _revokes_tokens(self, update_dict: dict[str, Any]) -> bool:
        return "hashed_password" in update_dict or update_dict.get("is_active") is False


def _oauth_account(
    user_id: uuid.UUID, oauth_name: str, account_id: str, account_email: str
) -> OAuthAccount:
    # No provider token is kept (see OAuthAccount).
    return OAuthAccount(
        user_id=user_id,
        oauth_name=oauth_name,
        account_id=account_id,
        account_email=account_email,
        access_token="",
    )
