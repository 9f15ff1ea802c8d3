"""What the API reads and writes about users."""

import uuid
from datetime import datetime

from fastapi_users import schemas
from pydantic import Field

from roster_auth.models import DISPLAY_NAME_MAX_LENGTH


class UserRead(schemas.BaseUser[uuid.UUID]):
    display_name: str | None = None
    created_at: datetime


class UserCreate(schemas.BaseUserCreate):
    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_LENGTH)


class UserUpdate(schemas.BaseUserUpdate):
    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_LENGTH)
