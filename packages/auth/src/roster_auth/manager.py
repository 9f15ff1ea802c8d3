"""The user manager: FastAPI Users' rules plus ours."""

import uuid

from fastapi_users import BaseUserManager, UUIDIDMixin

from roster_auth.models import User


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    pass
