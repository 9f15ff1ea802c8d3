"""Schemathesis hooks for roster, loaded through .ci/schemathesis.toml."""

from __future__ import annotations

import schemathesis
from email_validator import EmailNotValidError, validate_email
from hypothesis import strategies as st


def deliverable(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# The schema's addresses are `idn-email` (RFC 6531), which st has no strategy for. The service
# checks them with email-validator (pydantic's EmailStr, in FastAPI Users' schemas), which also
# refuses domains that can never receive mail: the special-use names of RFC 6761 (.test,
# .invalid, .localhost) and the like. Generate addresses it accepts; refusing the others is
# deliberate.
ADDRESSES = st.emails().filter(deliverable)
schemathesis.openapi.format("idn-email", ADDRESSES)
schemathesis.openapi.format("email", ADDRESSES)
