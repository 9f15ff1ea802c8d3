"""The user manager: FastAPI Users' rules plus ours (password policy, mails, logging)."""

import logging
import uuid
from typing import Any

from fastapi import BackgroundTasks, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin, schemas
from fastapi_users.exceptions import InvalidPasswordException
from fastapi_users.password import PasswordHelperProtocol

from roster_auth.config import AuthConfig, secret_value
from roster_auth.database import RosterUserDatabase
from roster_auth.mail import MailKind, MailMessage, deliver, link_with_token
from roster_auth.models import User

logger = logging.getLogger(__name__)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    user_db: RosterUserDatabase

    def __init__(
        self,
        user_db: RosterUserDatabase,
        password_helper: PasswordHelperProtocol,
        *,
        config: AuthConfig,
        background_tasks: BackgroundTasks | None = None,
    ) -> None:
        super().__init__(user_db, password_helper)
        self.config = config
        # In a request, mails leave after the response, hence after the commit: a mail never
        # announces a change that was rolled back, and a slow mail server does not hold the
        # request (nor reveal, by its delay, that an address has an account).
        self.background_tasks = background_tasks
        self.reset_password_token_secret = secret_value(config.reset_password_secret)
        self.reset_password_token_lifetime_seconds = config.reset_password_token_lifetime_seconds
        self.verification_token_secret = secret_value(config.verify_secret)
        self.verification_token_lifetime_seconds = config.verify_token_lifetime_seconds

    async def validate_password(self, password: str, user: schemas.UC | User) -> None:
        display_name = getattr(user, "display_name", None)
        reason = self.config.password_policy.reason_to_reject(
            password,
            email=user.email,
            context_words=[display_name],
            common_words=[self.config.product_name],
        )
        if reason is not None:
            raise InvalidPasswordException(reason=reason)

    async def update(
        self,
        user_update: schemas.UU,
        user: User,
        safe: bool = False,
        request: Request | None = None,
    ) -> User:
        # FastAPI Users would take the user's own address, in other letter case, for
        # someone else's; such a change is the same address and keeps it verified.
        new_email = user_update.email
        if (
            new_email is not None
            and new_email != user.email
            and new_email.casefold() == user.email.casefold()
        ):
            # Set here, written by the update below in the same commit (or rolled back with
            # it when the update is refused).
            user.email = new_email
            user_update = type(user_update).model_validate(
                user_update.model_dump(exclude_unset=True, exclude={"email"})
            )
        return await super().update(user_update, user, safe, request)

    async def authenticate(self, credentials: OAuth2PasswordRequestForm) -> User | None:
        # A login may store a stronger hash of the same password: that must not end the
        # user's other sessions.
        with self.user_db.rehashing():
            return await super().authenticate(credentials)

    async def on_after_register(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s registered", user.id)
        if self.config.send_verification_on_register and user.is_active and not user.is_verified:
            await self.request_verify(user, request)

    async def on_after_update(
        self, user: User, update_dict: dict[str, Any], request: Request | None = None
    ) -> None:
        changed = sorted(key for key in update_dict if key != "password")
        if "password" in update_dict:
            changed.append("password (stored tokens revoked)")
        logger.info("user %s updated: %s", user.id, ", ".join(changed) or "nothing")

    async def on_after_request_verify(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        link = link_with_token(self.config.public_base_url, self.config.verify_link_path, token)
        await self._send(
            MailMessage(
                to=user.email,
                subject=f"{self.config.product_name}: confirm your email address",
                kind=MailKind.VERIFY,
                link=link,
                body=(
                    f"Confirm your email address for {self.config.product_name} by opening "
                    f"this link:\n\n{link}\n\nIf you did not ask for this, ignore this mail."
                ),
            )
        )

    async def on_after_verify(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s verified their email address", user.id)

    async def on_after_forgot_password(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        link = link_with_token(
            self.config.public_base_url, self.config.reset_password_link_path, token
        )
        hours = self.config.reset_password_token_lifetime_seconds / 3600
        await self._send(
            MailMessage(
                to=user.email,
                subject=f"{self.config.product_name}: reset your password",
                kind=MailKind.RESET_PASSWORD,
                link=link,
                body=(
                    f"Choose a new {self.config.product_name} password by opening this link "
                    f"(valid for {hours:g} hours):\n\n{link}\n\n"
                    "If you did not ask for this, ignore this mail: your password stays as "
                    "it is."
                ),
            )
        )

    async def on_after_reset_password(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s reset their password; stored tokens revoked", user.id)

    async def on_after_login(
        self, user: User, request: Request | None = None, response: Response | None = None
    ) -> None:
        logger.info("user %s logged in", user.id)

    async def on_after_delete(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s deleted", user.id)

    async def _send(self, message: MailMessage) -> None:
        if self.background_tasks is not None:
            self.background_tasks.add_task(deliver, self.config.mailer, message)
        else:
            await deliver(self.config.mailer, message)
