"""roster-auth: users and authentication with FastAPI Users."""

from roster_auth.auth import RosterAuth, UserDependency
from roster_auth.config import AuthConfig
from roster_auth.models import AccessToken, User
from roster_auth.schemas import UserCreate, UserRead, UserUpdate

__all__ = [
    "AccessToken",
    "AuthConfig",
    "RosterAuth",
    "User",
    "UserCreate",
    "UserDependency",
    "UserRead",
    "UserUpdate",
]
