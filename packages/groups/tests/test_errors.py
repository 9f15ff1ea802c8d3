"""Every domain error answers with the status and code its class declares, through the one
exception handler."""

import httpx
import pytest
from fastapi import FastAPI

from roster_groups import GroupsError, errors, handle_groups_error

ANSWERS = {
    errors.GroupNotFoundError: (404, "GROUP_NOT_FOUND"),
    errors.UserNotFoundError: (404, "USER_NOT_FOUND"),
    errors.MemberNotFoundError: (404, "MEMBER_NOT_FOUND"),
    errors.GroupNameAlreadyExistsError: (409, "GROUP_NAME_ALREADY_EXISTS"),
    errors.MembershipAlreadyExistsError: (409, "MEMBERSHIP_ALREADY_EXISTS"),
    errors.LastOwnerError: (409, "LAST_OWNER"),
    errors.InsufficientGroupRoleError: (403, "INSUFFICIENT_GROUP_ROLE"),
    errors.SuperuserRequiredError: (403, "SUPERUSER_REQUIRED"),
    errors.EmailNotVerifiedError: (403, "EMAIL_NOT_VERIFIED"),
    errors.InvitationNotFoundError: (404, "INVITATION_NOT_FOUND"),
    errors.InvitationNotPendingError: (409, "INVITATION_NOT_PENDING"),
    errors.InvitationAlreadyPendingError: (409, "INVITATION_ALREADY_PENDING"),
    errors.UnknownInvitationTokenError: (400, "INVITATION_NOT_FOUND"),
    errors.InvitationExpiredError: (400, "INVITATION_EXPIRED"),
    errors.InvitationRevokedError: (400, "INVITATION_REVOKED"),
    errors.InvitationAlreadyUsedError: (400, "INVITATION_ALREADY_USED"),
    errors.InvitationEmailMismatchError: (400, "INVITATION_EMAIL_MISMATCH"),
}


def test_every_error_class_is_in_the_table() -> None:
    declared = {cls for cls in GroupsError.__subclasses__() if cls.__module__ == errors.__name__}
    assert declared == set(ANSWERS)
    assert {error.__name__ for error in ANSWERS} <= set(errors.__all__)


def test_an_error_class_must_name_its_status_and_code() -> None:
    with pytest.raises(TypeError, match="status_code"):

        class UnanswerableError(GroupsError):  # type: ignore[call-arg]
            pass


@pytest.mark.parametrize("error", list(ANSWERS), ids=lambda error: error.__name__)
async def test_the_handler_answers_with_the_class_status_and_code(
    error: type[GroupsError],
) -> None:
    app = FastAPI()
    app.add_exception_handler(GroupsError, handle_groups_error)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://roster.test") as client:
        response = await client.get("/fails")
    status_code, code = ANSWERS[error]
    assert response.status_code == status_code
    assert response.json() == {"detail": code}
