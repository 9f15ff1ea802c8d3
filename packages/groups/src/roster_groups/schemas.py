"""What the API reads and writes about groups and memberships."""

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from roster_db.text import multi_line, single_line
from roster_groups.models import GROUP_DESCRIPTION_MAX_LENGTH, GROUP_NAME_MAX_LENGTH, GroupRole

GroupName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=GROUP_NAME_MAX_LENGTH),
    AfterValidator(single_line),
]
GroupDescription = Annotated[
    str,
    StringConstraints(max_length=GROUP_DESCRIPTION_MAX_LENGTH),
    AfterValidator(multi_line),
]


class _Input(BaseModel):
    # A misspelt field is an error, not a silently ignored no-op.
    model_config = ConfigDict(extra="forbid")


class GroupCreate(_Input):
    name: GroupName = Field(description="1 to 100 characters, trimmed; unique ignoring case.")
    description: GroupDescription | None = None


class GroupUpdate(_Input):
    """Only the fields sent are changed; `description: null` clears the description."""

    name: GroupName | None = None
    description: GroupDescription | None = None

    @model_validator(mode="after")
    def _name_is_not_cleared(self) -> Self:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self


class GroupPublic(BaseModel):
    id: int
    name: str
    description: str | None
    created_at: datetime
    role: GroupRole | None = Field(
        description="The caller's role in the group; null for a superuser who is not a member."
    )


class MemberPublic(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str | None
    role: GroupRole
    joined_at: datetime


class MembershipCreate(_Input):
    user_id: uuid.UUID
    role: GroupRole = GroupRole.MEMBER


class MembershipUpdate(_Input):
    role: GroupRole


__all__ = [
    "GroupCreate",
    "GroupDescription",
    "GroupName",
    "GroupPublic",
    "GroupUpdate",
    "MemberPublic",
    "MembershipCreate",
    "MembershipUpdate",
]
