"""Users and their stored access tokens: plain SQLAlchemy models, as FastAPI Users requires,
on roster-db's shared registry (so SQLModel models elsewhere can relate to them); and the
throttle's counters."""

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyBaseAccessTokenTableUUID
from sqlalchemy import CheckConstraint, DateTime, Index, Integer, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

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

    __table_args__ = (Index(EMAIL_UNIQUE_INDEX, func.lower(email), unique=True),)

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, email={self.email!r})"


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    """A token of the database strategy (cookie backend): deleting the row revokes it."""

    # Revoking every token of a user (password change) looks them up by user.
    __table_args__ = (Index("ix_accesstoken_user_id", "user_id"),)

    def __repr__(self) -> str:
        return f"AccessToken(user_id={self.user_id!s})"


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
