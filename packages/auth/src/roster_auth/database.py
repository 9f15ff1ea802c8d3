"""FastAPI Users' SQLAlchemy adapter, made safe under concurrency and made to revoke tokens.

The adapter commits by itself. Two things have to happen inside those commits:

- a unique violation of the lower-cased email (two registrations racing, an email change
  colliding) becomes FastAPI Users' `UserAlreadyExists` (a 400), never a 500, and the session
  is rolled back so the request can still answer;
- a new password (a change or a reset) or a deactivation ends every session of the user in
  the same transaction: its cookie sessions are deleted and its refresh-token families
  revoked, so there is no moment where the password changed but old sessions still work. A
  deletion takes both with the user's row (ON DELETE CASCADE).
"""

import uuid
from typing import Any

from fastapi_users.exceptions import UserAlreadyExists
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from sqlalchemy.exc import IntegrityError

from roster_auth.models import EMAIL_UNIQUE_INDEX, User
from roster_auth.sessions import revoke_all_sessions
from roster_db import constraint_name_of, is_unique_violation


def _is_email_taken(error: IntegrityError) -> bool:
    # Older servers or drivers may not name the constraint; the email index is the only
    # unique constraint a write of ours can break besides the primary key, which is random.
    name = constraint_name_of(error)
    return is_unique_violation(error) and name in (None, EMAIL_UNIQUE_INDEX)


class RosterUserDatabase(SQLAlchemyUserDatabase[User, uuid.UUID]):
    async def create(self, create_dict: dict[str, Any]) -> User:
        try:
            return await super().create(create_dict)
        except IntegrityError as error:
            await self.session.rollback()
            if _is_email_taken(error):
                raise UserAlreadyExists() from error
            raise

    async def update(self, user: User, update_dict: dict[str, Any]) -> User:
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

    async def store_rehashed_password(self, user: User, hashed_password: str) -> User:
        """Store a stronger hash of the user's current password (made at login when the stored
        one is outdated). The password is the same, so the user's tokens stay valid."""
        return await super().update(user, {"hashed_password": hashed_password})

    def _revokes_tokens(self, update_dict: dict[str, Any]) -> bool:
        return "hashed_password" in update_dict or update_dict.get("is_active") is False
