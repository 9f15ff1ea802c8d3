"""What the API reads and writes about groups and memberships."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from roster_db.text import MultiLine, SingleLine
from roster_groups.models import GROUP_DESCRIPTION_MAX_LENGTH, GROUP_NAME_MAX_LENGTH, GroupRole

GroupName = Annotated[str, SingleLine(min_length=1, max_length=GROUP_NAME_MAX_LENGTH)]
GroupDescription = Annotated[str, MultiLine(max_length=GROUP_DESCRIPTION_MAX_LENGTH)]


class _Input(BaseModel):
    # A misspelt field is an error, not a silently ignored no-op.
    model_config = ConfigDict(extra="forbid")


class GroupCreate(_Input):
    name: GroupName = Field(description="1 to 100 characters, trimmed; unique ignoring case.")
    description: GroupDescription | None = None


def _no_default(schema: dict[str, Any]) -> None:
    # A published `"default": null` would tell clients that null is a value to send.
    schema.pop("default", None)


class GroupUpdate(_Input):
    """Only the fields sent are changed; `description: null` clears the description."""

    # Null is refused (below), so the schema does not offer it: left out means unchanged.
    name: GroupName | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
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
