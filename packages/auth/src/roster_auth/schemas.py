"""What the API reads and writes about users, their tokens and their sessions."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi_users import schemas
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from roster_auth.models import DISPLAY_NAME_MAX_LENGTH
from roster_auth.password import MAX_PASSWORD_LENGTH, MAX_RAW_PASSWORD_LENGTH
from roster_auth.sessions import REFRESH_TOKEN_MAX_LENGTH
from roster_db.text import SingleLine

DisplayName = Annotated[str, SingleLine(max_length=DISPLAY_NAME_MAX_LENGTH)]

# Refused while parsing (422), before anything normalises, estimates or hashes it: no longer
# text can be an acceptable password once normalised (see `roster_auth.password`).
Password = Annotated[str, StringConstraints(max_length=MAX_RAW_PASSWORD_LENGTH)]
PASSWORD_DESCRIPTION: Final = (
    f"At most {MAX_PASSWORD_LENGTH} characters after NFKC normalisation (the password policy "
    f"may set fewer); longer input than {MAX_RAW_PASSWORD_LENGTH} code points is refused unread."
)

# Columns that cannot hold NULL. FastAPI Users' schemas accept null for them, which the
# database then refuses (a 500); here a null is read as "not given".
_NOT_NULLABLE: Final = frozenset({"email", "password", "is_active", "is_superuser", "is_verified"})


def _drop_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: value
            for key, value in data.items()
            if not (value is None and key in _NOT_NULLABLE)
        }
    return data


class UserRead(schemas.BaseUser[uuid.UUID]):
    # The address was validated when it was stored. Checking it again on the way out
    # (email-validator and idna, for every user of a list) cost more than the rest of the
    # response, so it is read as plain text; the OpenAPI schema still says it is an email.
    email: str = Field(json_schema_extra={"format": "email"})
    display_name: str | None = None
    created_at: datetime


class UserCreate(schemas.BaseUserCreate):
    password: Password = Field(description=PASSWORD_DESCRIPTION)
    # Strict: a flag is true or false, not 0, "no" or 1.0 (which the schema does not allow).
    is_active: StrictBool | None = True
    is_superuser: StrictBool | None = False
    is_verified: StrictBool | None = False
    display_name: DisplayName | None = None

    _nulls_are_absent = model_validator(mode="before")(_drop_nulls)


class UserUpdate(schemas.BaseUserUpdate):
    """Fields left out, or null where the column cannot be null, stay as they are; a null
    `display_name` clears it."""

    password: Password | None = Field(default=None, description=PASSWORD_DESCRIPTION)
    is_active: StrictBool | None = None
    is_superuser: StrictBool | None = None
    is_verified: StrictBool | None = None
    display_name: DisplayName | None = None

    _nulls_are_absent = model_validator(mode="before")(_drop_nulls)


class UserUpdateMe(UserUpdate):
    """A user's change of their own account (`PATCH /users/me`)."""

    current_password: Password | None = Field(
        default=None,
        description=(
            "The password the account has now. Required to change the password or the "
            "email address (a change of letter case only is the same address); without it, "
            "or when it is wrong, the answer is 400 `UPDATE_USER_BAD_CURRENT_PASSWORD`."
        ),
    )

    def create_update_dict(self) -> dict[str, Any]:
        return self._without_current_password(
            super().create_update_dict()  # type: ignore[no-untyped-call]
        )

    def create_update_dict_superuser(self) -> dict[str, Any]:
        return self._without_current_password(
            super().create_update_dict_superuser()  # type: ignore[no-untyped-call]
        )

    @staticmethod
    def _without_current_password(update: dict[str, Any]) -> dict[str, Any]:
        # A proof, not a change: never written to the user.
        update.pop("current_password", None)
        return update


class TokenResponse(BaseModel):
    """An OAuth 2.0 token response (RFC 6749, section 5.1): `POST /auth/jwt/login` and
    `POST /auth/jwt/refresh`."""

    access_token: str = Field(description="A bearer JWT for the `Authorization` header.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(
        description="Exchange it at `POST /auth/jwt/refresh` for the next pair; it works once."
    )


class RefreshTokenBody(BaseModel):
    """A refresh token, as the last token response gave it."""

    refresh_token: Annotated[
        str, StringConstraints(min_length=1, max_length=REFRESH_TOKEN_MAX_LENGTH)
    ]


class SessionRead(BaseModel):
    """A place where the user is signed in: a cookie session (a browser) or a refresh-token
    family (a bearer client's login, renewed by each refresh)."""

    id: uuid.UUID = Field(description="Names the session in the session routes only.")
    kind: Literal["cookie", "refresh"]
    created_at: datetime
    last_used_at: datetime = Field(
        description="The last refresh; for a cookie, within 5 minutes of its last request."
    )
    expires_at: datetime = Field(
        description="When it ends unless used again: a cookie's lifetime, or a family's "
        "lifetime or idle timeout, whichever comes first."
    )
    user_agent: str | None = Field(description="As sent when the session began.")
    client_address: str | None = Field(description="As seen when the session began.")
    current: bool = Field(description="Whether this request comes from this session.")


class OAuthAccountRead(BaseModel):
    """An identity at a provider that the user signs in with."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Names the link in `DELETE /users/me/oauth-accounts/{id}`.")
    oauth_name: str = Field(description="The provider, as named in its routes (`/auth/{name}`).")
    account_id: str = Field(description="The user's subject at the provider.")
    account_email: str = Field(description="The address the provider gave when it was linked.")
    created_at: datetime
