"""The shapes of the dependencies roster-auth hands out."""

from collections.abc import Callable, Coroutine
from typing import Any

from roster_auth.manager import UserManager
from roster_auth.models import User

# `RosterAuth.current_active_user` and `.current_superuser`: use as `Depends(...)`.
UserDependency = Callable[..., Coroutine[Any, Any, User]]
UserManagerDependency = Callable[..., Coroutine[Any, Any, UserManager]]

__all__ = ["UserDependency", "UserManagerDependency"]
