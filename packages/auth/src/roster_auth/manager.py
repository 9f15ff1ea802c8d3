"""The user manager: FastAPI Users' rules plus ours (password policy, mails, logging).

Hashing and verifying a password (Argon2id: 100 ms and more) happen in a worker thread, never
on the event loop, where they would stall every other request of the worker; argon2-cffi
releases the GIL, so the loop keeps serving meanwhile. They go through the application's
`PasswordHashingQueue` (bounded: a full queue is a 503 at once), and the request's read-only
transaction ends before, so no request holds a pooled connection while it waits or hashes.
FastAPI Users hashes inline, so the methods that hash on a request's path are its own,
reproduced with the hashing awaited (`authenticate`, `create`, `_update`, `forgot_password`,
`reset_password`); tests/test_library_copies.py fails when one of the library's originals
changes.
"""

import functools
import logging
import uuid
from typing import Any, Final

import jwt
from fastapi import BackgroundTasks, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin, exceptions, schemas
from fastapi_users.exceptions import InvalidPasswordException
from fastapi_users.jwt import decode_jwt, generate_jwt
from fastapi_users.password import PasswordHelperProtocol

from roster_auth.config import AuthConfig, secret_value
from roster_auth.database import Acting, Actor, RosterUserDatabase
from roster_auth.hashing import PasswordHashingQueue
from roster_auth.mail import MailKind, MailMessage, deliver, link_with_token
from roster_auth.models import User
from roster_auth.oauth import Identity
from roster_auth.password import has_usable_password, unusable_password
from roster_auth.throttle import Throttle
from roster_db.audit import AuditAction

logger = logging.getLogger(__name__)

# Where a superuser's route leaves the superuser's id for the audit trail (`acting_user_of`).
ACTING_USER_STATE: Final = "roster_acting_user_id"


def remember_acting_user(request: Request, user_id: uuid.UUID) -> None:
    """Tell the user manager who acts in this request on someone else's account (a superuser's
    route), for the audit events of the change."""
    setattr(request.state, ACTING_USER_STATE, user_id)


def acting_user_of(request: Request | None) -> uuid.UUID | None:
    """Who a superuser's route said acts; None (the system) outside a request."""
    if request is None:
        return None
    acting: uuid.UUID | None = getattr(request.state, ACTING_USER_STATE, None)
    return acting


class InvalidCurrentPasswordException(exceptions.FastAPIUsersException):
    """A user changed their own password or email without their current password, or
    with a wrong one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdentityLinkedElsewhere(exceptions.FastAPIUsersException):
    """The provider's identity is linked to another account already."""


class SignUpClosed(exceptions.FastAPIUsersException):
    """A provider's identity belongs to no account, and registration is off."""


def changes_credentials(user_update: schemas.BaseUserUpdate, user: User) -> bool:
    """Whether the update sets a password, or an email other than the user's in any letter
    case (None: not given)."""
    if user_update.password is not None:
        return True
    new_email = user_update.email
    return new_email is not None and new_email.casefold() != user.email.casefold()


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    user_db: RosterUserDatabase

    def __init__(
        self,
        user_db: RosterUserDatabase,
        password_helper: PasswordHelperProtocol,
        *,
        config: AuthConfig,
        background_tasks: BackgroundTasks | None = None,
        hashing_queue: PasswordHashingQueue | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__(user_db, password_helper)
        self.config = config
        # Counts wrong current passwords like failed logins (None: not counted).
        self.throttle = throttle
        # Shared by every manager of the application; None (a manager on its own): a queue
        # of its own, as the configuration says.
        self.hashing_queue = hashing_queue or PasswordHashingQueue(
            config.max_concurrent_password_hashes,
            config.max_waiting_password_hashes,
            config.password_hashing_niceness,
        )
        # In a request, mails leave after the response, hence after the commit: a mail never
        # announces a change that was rolled back, and a slow mail server does not hold the
        # request (nor reveal, by its delay, that an address has an account).
        self.background_tasks = background_tasks
        self.reset_password_token_secret = secret_value(config.reset_password_secret)
        self.reset_password_token_lifetime_seconds = config.reset_password_token_lifetime_seconds
        self.verification_token_secret = secret_value(config.verify_secret)
        self.verification_token_lifetime_seconds = config.verify_token_lifetime_seconds

    async def validate_password(self, password: str, user: schemas.UC | User) -> None:
        policy = self.config.password_policy
        # A length needs no thread: input too long to be acceptable is refused before any
        # work. Normalising and zxcvbn's estimate are CPU work (about 10 ms, holding the GIL):
        # a worker thread, so the loop keeps its turns, through the hashing queue, so that
        # password work of every kind together keeps to the cores it was given.
        reason = policy.reason_to_reject_unread(password)
        if reason is None:
            reason = await self.hashing_queue.run(
                functools.partial(
                    policy.reason_to_reject,
                    password,
                    email=user.email,
                    context_words=[getattr(user, "display_name", None)],
                    common_words=[self.config.product_name],
                ),
                session=self.user_db.session,
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
        """FastAPI Users' update, plus: a user's own change (`safe`, as `PATCH /users/me`
        asks) of the password or the email needs their current password; a new address
        gets a verification mail and the old one a notice (for a superuser's change too)."""
        if safe and changes_credentials(user_update, user):
            await self.check_current_password(
                user, getattr(user_update, "current_password", None), request
            )
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
        previous_email = user.email
        # Audit: a user's own change (`safe`), or a superuser's (or the system's).
        actor: Actor = Acting.SELF if safe else acting_user_of(request)
        with self.user_db.acting_as(actor):
            updated_user = await super().update(user_update, user, safe, request)
        if updated_user.email.casefold() != previous_email.casefold():
            await self.on_after_email_change(updated_user, previous_email, request)
        return updated_user

    async def check_current_password(
        self, user: User, current_password: str | None, request: Request | None = None
    ) -> None:
        """Refuses (`InvalidCurrentPasswordException`) unless `current_password` is the
        user's: the one place a change of their own password or email proves it. Throttled
        like a login (429 `TOO_MANY_REQUESTS`), so that a stolen token cannot guess it."""
        if not current_password:
            raise InvalidCurrentPasswordException(
                "Give current_password to change the password or the email address."
            )
        attempt = (
            await self.throttle.check_login(request, user.email)
            if self.throttle is not None and request is not None
            else None
        )
        # No stronger hash is stored here: the next login does that.
        verified, _ = await self.verify_password(current_password, user.hashed_password)
        if not verified:
            logger.info("user %s gave a wrong current password", user.id)
            if attempt is not None:
                await attempt.failed()
            raise InvalidCurrentPasswordException("The current password is wrong.")
        if attempt is not None:
            await attempt.succeeded()

    async def hash_password(self, password: str) -> str:
        """The hash, computed in a worker thread once a hashing slot is free; the request's
        read-only transaction ends first. Raises `PasswordHashingBusyError` (503) at once
        when the queue is full."""
        return await self.hashing_queue.run(
            self.password_helper.hash, password, session=self.user_db.session
        )

    async def verify_password(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Whether `password` matches `hashed`, and a new hash when `hashed` is outdated
        (computed as `hash_password` is). Nothing matches an account that has no password
        (one created through a provider), after as long as a verification takes."""
        if not has_usable_password(hashed):
            await self.hash_password(password)
            return False, None
        return await self.hashing_queue.run(
            self.password_helper.verify_and_update,
            password,
            hashed,
            session=self.user_db.session,
        )

    async def authenticate(self, credentials: OAuth2PasswordRequestForm) -> User | None:
        # FastAPI Users' authenticate, hashing in a worker thread. Inactive users are refused
        # by the login route, after a full verification, like a wrong password.
        try:
            user = await self.get_by_email(credentials.username)
        except exceptions.UserNotExists:
            # Hash anyway: an unknown email takes as long to refuse as a wrong password.
            await self.hash_password(credentials.password)
            return None
        verified, stronger_hash = await self.verify_password(
            credentials.password, user.hashed_password
        )
        if not verified:
            return None
        if stronger_hash is not None:
            # A stronger hash of the same password must not end the user's other sessions.
            await self.user_db.store_rehashed_password(user, stronger_hash)
        return user

    async def create(
        self, user_create: schemas.UC, safe: bool = False, request: Request | None = None
    ) -> User:
        # FastAPI Users' create, hashing in a worker thread.
        await self.validate_password(user_create.password, user_create)
        if await self.user_db.get_by_email(user_create.email) is not None:
            raise exceptions.UserAlreadyExists()
        # FastAPI Users leaves these two untyped.
        user_dict: dict[str, Any] = (
            user_create.create_update_dict()  # type: ignore[no-untyped-call]
            if safe
            else user_create.create_update_dict_superuser()  # type: ignore[no-untyped-call]
        )
        user_dict["hashed_password"] = await self.hash_password(user_dict.pop("password"))
        # Audit: a registration is the new account's own act; otherwise a superuser's (or the
        # system's: a command line).
        actor: Actor = Acting.SELF if safe else acting_user_of(request)
        with self.user_db.acting_as(actor):
            created_user = await self.user_db.create(user_dict)
        await self.on_after_register(created_user, request)
        return created_user

    async def oauth_sign_in(
        self, oauth_name: str, identity: Identity, request: Request | None = None
    ) -> User:
        """The account a provider's identity signs in to (the route refuses an inactive one):
        the one it is linked to; else, at its first sign-in, an existing account with its
        address, linked now, if `oauth_associate_by_email` allows it, the provider verified
        the address, and so did the account (otherwise `UserAlreadyExists`: an account
        registered by someone else with the address, unverified, must not be handed to the
        provider's user, nor the reverse); else a new account, verified as the provider says,
        with no usable password (forgot/reset sets one). FastAPI Users' `oauth_callback`,
        with those rules, and no provider token stored."""
        # Twice at most: a concurrent sign-in of the same identity may link or create first.
        for _ in range(2):
            user = await self.user_db.get_by_oauth_account(oauth_name, identity.account_id)
            if user is not None:
                return user
            existing = await self.user_db.get_by_email(identity.email)
            if existing is not None:
                # A concurrent first sign-in of this identity may have committed its account
                # between the two lookups: the address is then its own.
                winner = await self.user_db.get_by_oauth_account(oauth_name, identity.account_id)
                if winner is not None:
                    return winner
                if not existing.is_active:
                    raise exceptions.UserInactive()
                if not (
                    self.config.oauth_associate_by_email
                    and identity.email_verified
                    and existing.is_verified
                ):
                    raise exceptions.UserAlreadyExists()
                with self.user_db.acting_as(Acting.SELF):
                    linked = await self.user_db.link_identity(
                        existing, oauth_name, identity.account_id, identity.email
                    )
                if linked:
                    logger.info("user %s linked %s by its email", existing.id, oauth_name)
                    return existing
                continue
            if not self.config.registration_enabled:
                raise SignUpClosed()
            with self.user_db.acting_as(Acting.SELF):
                created = await self.user_db.create_with_identity(
                    {
                        "email": identity.email,
                        "hashed_password": unusable_password(),
                        "is_verified": identity.email_verified,
                    },
                    oauth_name,
                    identity.account_id,
                    identity.email,
                )
            if created is not None:
                await self.on_after_register(created, request)
                return created
        raise exceptions.UserAlreadyExists()

    async def oauth_link(self, user: User, oauth_name: str, identity: Identity) -> None:
        """Link a provider's identity to the signed-in user; `IdentityLinkedElsewhere` when
        it is another account's. Linking it again to the same user changes nothing."""
        for _ in range(2):
            linked = await self.user_db.get_by_oauth_account(oauth_name, identity.account_id)
            if linked is not None:
                if linked.id != user.id:
                    raise IdentityLinkedElsewhere()
                return
            with self.user_db.acting_as(Acting.SELF):
                if await self.user_db.link_identity(
                    user, oauth_name, identity.account_id, identity.email
                ):
                    logger.info("user %s linked an identity at %s", user.id, oauth_name)
                    return
        raise IdentityLinkedElsewhere()

    async def _update(self, user: User, update_dict: dict[str, Any]) -> User:
        # FastAPI Users checks and hashes a new password here, for an update and a reset.
        # Done first (an update lists the password first, so the library does too), hashing
        # in a worker thread; the library does the rest.
        password = update_dict.get("password")
        if password is None:
            return await super()._update(user, update_dict)
        await self.validate_password(password, user)
        hashed_password = await self.hash_password(password)
        others = {key: value for key, value in update_dict.items() if key != "password"}
        return await super()._update(user, {"hashed_password": hashed_password, **others})

    async def forgot_password(self, user: User, request: Request | None = None) -> None:
        # FastAPI Users' forgot_password, hashing in a worker thread: the token carries a hash
        # of the stored hash, so a reset (or a password change) makes it useless.
        if not user.is_active:
            raise exceptions.UserInactive()
        token_data = {
            "sub": str(user.id),
            "password_fgpt": await self.hash_password(user.hashed_password),
            "aud": self.reset_password_token_audience,
        }
        token = generate_jwt(
            token_data,
            self.reset_password_token_secret,
            self.reset_password_token_lifetime_seconds,
        )
        await self.on_after_forgot_password(user, token, request)

    async def reset_password(
        self, token: str, password: str, request: Request | None = None
    ) -> User:
        # FastAPI Users' reset_password, verifying in a worker thread.
        try:
            data = decode_jwt(
                token, self.reset_password_token_secret, [self.reset_password_token_audience]
            )
            user_id = self.parse_id(data["sub"])
            password_fingerprint = data["password_fgpt"]
        except (jwt.PyJWTError, KeyError, exceptions.InvalidID) as error:
            raise exceptions.InvalidResetPasswordToken() from error
        user = await self.get(user_id)
        valid_fingerprint, _ = await self.verify_password(
            user.hashed_password, password_fingerprint
        )
        if not valid_fingerprint:
            raise exceptions.InvalidResetPasswordToken()
        if not user.is_active:
            raise exceptions.UserInactive()
        with self.user_db.acting_as(Acting.SELF, AuditAction.USER_PASSWORD_RESET):
            updated_user = await self._update(user, {"password": password})
        await self.on_after_reset_password(user, request)
        return updated_user

    async def verify(self, token: str, request: Request | None = None) -> User:
        # The token proves the mailbox: the account verifies itself.
        with self.user_db.acting_as(Acting.SELF):
            return await super().verify(token, request)

    async def delete(self, user: User, request: Request | None = None) -> None:
        # A superuser's route (`DELETE /users/{id}`), or the system.
        with self.user_db.acting_as(acting_user_of(request)):
            await super().delete(user, request)

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

    async def on_after_email_change(
        self, user: User, previous_email: str, request: Request | None = None
    ) -> None:
        """A new address gets a verification mail (unless a superuser set the account
        verified with it), and the old one a notice, so that its owner learns of a change
        they did not make. The notice carries no token and does not name the new address
        (the old mailbox may no longer be the user's). In a request, both leave after the
        commit, like every mail."""
        logger.info("user %s has a new email address", user.id)
        if user.is_active and not user.is_verified:
            await self.request_verify(user, request)
        product = self.config.product_name
        await self._send(
            MailMessage(
                to=previous_email,
                subject=f"{product}: your email address was changed",
                kind=MailKind.EMAIL_CHANGED,
                body=(
                    f"The email address of your {product} account was changed: mail for the "
                    "account no longer comes to this address.\n\nIf you did not make this "
                    "change, someone else may be using your account: tell the people who "
                    f"run {product} at once."
                ),
            )
        )

    async def on_after_request_verify(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        await self._send_link(
            user,
            MailKind.VERIFY,
            self.config.verify_link_path,
            token,
            subject="confirm your email address",
            body=(
                "Confirm your email address for {product} by opening this link:\n\n{link}\n\n"
                "If you did not ask for this, ignore this mail."
            ),
        )

    async def on_after_verify(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s verified their email address", user.id)

    async def on_after_forgot_password(
        self, user: User, token: str, request: Request | None = None
    ) -> None:
        hours = self.config.reset_password_token_lifetime_seconds / 3600
        await self._send_link(
            user,
            MailKind.RESET_PASSWORD,
            self.config.reset_password_link_path,
            token,
            subject="reset your password",
            body=(
                "Choose a new {product} password by opening this link "
                "(valid for {hours} hours):\n\n{link}\n\n"
                "If you did not ask for this, ignore this mail: your password stays as it is."
            ),
            hours=f"{hours:g}",
        )

    async def on_after_reset_password(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s reset their password; stored tokens revoked", user.id)

    async def on_after_login(
        self, user: User, request: Request | None = None, response: Response | None = None
    ) -> None:
        logger.info("user %s logged in", user.id)

    async def on_after_delete(self, user: User, request: Request | None = None) -> None:
        logger.info("user %s deleted", user.id)

    async def _send_link(
        self,
        user: User,
        kind: MailKind,
        path: str,
        token: str,
        *,
        subject: str,
        body: str,
        **values: str,
    ) -> None:
        """A mail to the user with a link to the front end's `path` carrying `token`; the
        subject follows the product's name, and the body's `{product}`, `{link}` and
        `values` are filled in."""
        link = link_with_token(self.config.public_base_url, path, token)
        product = self.config.product_name
        await self._send(
            MailMessage(
                to=user.email,
                subject=f"{product}: {subject}",
                kind=kind,
                link=link,
                body=body.format(product=product, link=link, **values),
            )
        )

    async def _send(self, message: MailMessage) -> None:
        if self.background_tasks is not None:
            self.background_tasks.add_task(deliver, self.config.mailer, message)
        else:
            await deliver(self.config.mailer, message)
