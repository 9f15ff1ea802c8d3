"""Users and their sessions (the cookie backend's stored tokens, the bearer clients' refresh
token families): plain SQLAlchemy models, as FastAPI Users requires, on roster-db's shared
registry (so SQLModel models elsewhere can relate to them); and the throttle's counters.

No token is stored: only its SHA-256 digest (hex), which a random token of 256 bits needs no
salt or stretching for."""

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

from fastapi_users_db_sqlalchemy import (
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTableUUID,
)
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyBaseAccessTokenTableUUID
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from roster_db import Base

EMAIL_MAX_LENGTH = 320
DISPLAY_NAME_MAX_LENGTH = 100
EMAIL_UNIQUE_INDEX = "uq_user_email_lower"


class User(SQLAlchemyBaseUserTableUUID, Base):
    """An account. Email uniqueness ignores letter case, enforced by the database."""

    # Replaces the mixin's case-sensitive unique index: the functional index below is the
    # one that keeps `Alice@x.io` and `alice@x.io` apart, even under concurrent inserts.
    # (Typed as plain `str` for type checkers, as the mixin does, to satisfy FastAPI Users'
    # UserProtocol.)
    if TYPE_CHECKING:
        email: str
    else:
        email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    # Loaded only when asked for (`selectinload`): a lazy load would be a hidden statement,
    # and under asyncio an error.
    oauth_accounts: Mapped[list["OAuthAccount"]] = relationship(
        lazy="raise", passive_deletes=True, back_populates="user"
    )

    __table_args__ = (Index(EMAIL_UNIQUE_INDEX, func.lower(email), unique=True),)

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, email={self.email!r})"


IDENTITY_UNIQUE_CONSTRAINT: Final = "uq_oauth_account_identity"


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, Base):
    """An identity at a provider (`oauth_name`: the provider's name in roster, `account_id`:
    its subject) linked to an account, with the address the provider gave for it.

    One identity belongs to one account at most, enforced by the database. roster keeps no
    provider token: it signs in with the identity and never calls the provider's API on the
    user's behalf, so `access_token` stays empty and `refresh_token`, `expires_at` NULL (the
    columns are FastAPI Users' own, for applications that do)."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    user: Mapped[User] = relationship(lazy="raise", back_populates="oauth_accounts")

    __table_args__ = (
        UniqueConstraint("oauth_name", "account_id", name=IDENTITY_UNIQUE_CONSTRAINT),
        # A user's identities: listed, counted before an unlink.
        Index("ix_oauth_account_user_id", "user_id"),
    )

    def __repr__(self) -> str:
        return f"OAuthAccount(id={self.id!s}, oauth_name={self.oauth_name!r})"


TOKEN_DIGEST_LENGTH: Final = 64  # SHA-256, hex
USER_AGENT_MAX_LENGTH: Final = 512
CLIENT_ADDRESS_MAX_LENGTH: Final = 255


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    """A session of the database strategy (cookie backend): deleting the row revokes it.

    `token` holds the SHA-256 digest of the cookie's token (the cookie carries the token);
    `id` names the session in the session routes, and is neither."""

    if TYPE_CHECKING:
        token: str
    else:
        token: Mapped[str] = mapped_column(String(TOKEN_DIGEST_LENGTH), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, nullable=False, unique=True, server_default=func.gen_random_uuid()
    )
    # Written at most every `AuthConfig.session_touch_interval_seconds`.
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # As seen when the session began.
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    client_address: Mapped[str | None] = mapped_column(String(CLIENT_ADDRESS_MAX_LENGTH))

    # Revoking every token of a user (password change) looks them up by user.
    __table_args__ = (
        Index("ix_accesstoken_user_id", "user_id"),
        CheckConstraint(f"length(token) = {TOKEN_DIGEST_LENGTH}", name="token_is_a_digest"),
    )

    def __repr__(self) -> str:
        return f"AccessToken(id={self.id!s}, user_id={self.user_id!s})"


class RefreshTokenFamily(Base):
    """The refresh tokens of one login (a bearer client's session): each refresh rotates the
    token, so a family is a chain of tokens of which only the newest is usable.

    It ends at `expires_at` (the login plus the lifetime), when its newest token has waited
    longer than the idle timeout (`last_used_at`, the time of the last rotation, says when), or
    when it is revoked (logout, the session ended, a password change, a reuse of a rotated
    token); ended families are kept until purged, so a late token of theirs is still known."""

    __tablename__ = "refresh_token_family"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    client_address: Mapped[str | None] = mapped_column(String(CLIENT_ADDRESS_MAX_LENGTH))

    def __repr__(self) -> str:
        return f"RefreshTokenFamily(id={self.id!s}, user_id={self.user_id!s})"


class RefreshToken(Base):
    """One refresh token of a family, by the SHA-256 digest of the token. `used_at` is set
    when it is exchanged for the next one; presenting it again then revokes the family."""

    __tablename__ = "refresh_token"

    token_hash: Mapped[str] = mapped_column(String(TOKEN_DIGEST_LENGTH), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("refresh_token_family.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(
            f"length(token_hash) = {TOKEN_DIGEST_LENGTH}", name="token_hash_is_a_digest"
        ),
    )

    def __repr__(self) -> str:
        return f"RefreshToken(family_id={self.family_id!s})"


THROTTLE_SUBJECT_DIGEST_SIZE = 32  # HMAC-SHA256


class ThrottleCounter(Base):
    """How many times one subject (an account, a client address, or the two together) did one
    thing (fail to log in, register, ask for a mail) in the window that ends at
    `window_ends_at`. The subject is a keyed hash (HMAC-SHA256) of the email or address,
    never the value itself. Rows past their window count for nothing; they are overwritten
    by the next event or purged."""

    __tablename__ = "throttle_counter"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    # Indexed for the purge of expired rows.
    window_ends_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )

    __table_args__ = (
        CheckConstraint("count >= 1", name="count_positive"),
        CheckConstraint(
            f"octet_length(subject) = {THROTTLE_SUBJECT_DIGEST_SIZE}", name="subject_is_a_digest"
        ),
    )

    def __repr__(self) -> str:
        return f"ThrottleCounter(scope={self.scope!r}, count={self.count})"
