"""What the API reads and writes about users."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi_users import schemas
from pydantic import Field, StrictBool, model_validator

from roster_auth.models import DISPLAY_NAME_MAX_LENGTH
from roster_db.text import SingleLine

DisplayName = Annotated[str, SingleLine(max_length=DISPLAY_NAME_MAX_LENGTH)]

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
    # Strict: a flag is true or false, not 0, "no" or 1.0 (which the schema does not allow).
    is_active: StrictBool | None = True
    is_superuser: StrictBool | None = False
    is_verified: StrictBool | None = False
    display_name: DisplayName | None = None

    _nulls_are_absent = model_validator(mode="before")(_drop_nulls)


class UserUpdate(schemas.BaseUserUpdate):
    """Fields left out, or null where the column cannot be null, stay as they are; a null
    `display_name` clears it."""

    is_active: StrictBool | None = None
    is_superuser: StrictBool | None = None
    is_verified: StrictBool | None = None
    display_name: DisplayName | None = None

    _nulls_are_absent = model_validator(mode="before")(_drop_nulls)
