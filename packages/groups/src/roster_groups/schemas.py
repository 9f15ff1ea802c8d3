"""What the API reads and writes about groups and memberships."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from roster_auth.models import EMAIL_MAX_LENGTH
from roster_db import Page
from roster_db.text import MultiLine, SingleLine
from roster_groups.models import (
    GROUP_DESCRIPTION_MAX_LENGTH,
    GROUP_NAME_MAX_LENGTH,
    GroupRole,
    InvitationStatus,
)

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


class MembersPage(Page[MemberPublic]):
    """A page of a group's members. `next_cursor` reads the page after this one from where it
    ends, at the same cost however deep (an `offset` walks every member it skips); null on
    the last page."""

    next_cursor: str | None


class MembershipCreate(_Input):
    user_id: uuid.UUID
    role: GroupRole = GroupRole.MEMBER


class MembershipUpdate(_Input):
    role: GroupRole


# What `secrets.token_urlsafe` writes (43 characters for the 32 bytes roster draws), with room
# for a longer token later; anything else is refused (422) before it is hashed or looked up.
INVITATION_TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]{32,128}$"  # noqa: S105 (a pattern)
InvitationToken = Annotated[str, StringConstraints(pattern=INVITATION_TOKEN_PATTERN)]


class InvitationCreate(_Input):
    email: Annotated[EmailStr, StringConstraints(max_length=EMAIL_MAX_LENGTH)] = Field(
        description="The address to invite, with or without an account (the answer does not "
        "say which). Compared with members' addresses ignoring letter case."
    )
    role: GroupRole = Field(
        default=GroupRole.MEMBER,
        description="The role the invitee gets on accepting; only owners invite owners.",
    )


class InvitationPublic(BaseModel):
    """An invitation as the group's owners and admins see it (never its token)."""

    id: uuid.UUID
    group_id: int
    email: str = Field(json_schema_extra={"format": "email"})
    role: GroupRole
    status: InvitationStatus = Field(
        description="`expired`: still pending when its `expires_at` passed."
    )
    invited_by: uuid.UUID | None = Field(
        description="Who invited; null once that account is deleted (the invitation stays valid)."
    )
    created_at: datetime
    expires_at: datetime
    responded_at: datetime | None = Field(description="When it was accepted, declined or revoked.")


class MyInvitationPublic(BaseModel):
    """A pending invitation to the caller's address."""

    id: uuid.UUID
    group_id: int
    group_name: str
    role: GroupRole
    created_at: datetime
    expires_at: datetime


class InvitationAnswer(_Input):
    token: InvitationToken = Field(description="The token of the invitation's mail link.")


__all__ = [
    "INVITATION_TOKEN_PATTERN",
    "GroupCreate",
    "GroupDescription",
    "GroupName",
    "GroupPublic",
    "GroupUpdate",
    "InvitationAnswer",
    "InvitationCreate",
    "InvitationPublic",
    "InvitationToken",
    "MemberPublic",
    "MembersPage",
    "MembershipCreate",
    "MembershipUpdate",
    "MyInvitationPublic",
]
