"""roster-auth: users and authentication with FastAPI Users."""

from roster_auth.auth import RosterAuth
from roster_auth.config import AuthConfig, AuthConfigError
from roster_auth.dependencies import UserDependency, UserManagerDependency
from roster_auth.mail import (
    LoggingMailer,
    Mailer,
    MailKind,
    MailMessage,
    OutboxMailer,
    SmtpMailer,
)
from roster_auth.manager import InvalidCurrentPasswordException, UserManager
from roster_auth.models import AccessToken, User
from roster_auth.password import PasswordPolicy
from roster_auth.schemas import UserCreate, UserRead, UserUpdate, UserUpdateMe

__all__ = [
    "AccessToken",
    "AuthConfig",
    "AuthConfigError",
    "InvalidCurrentPasswordException",
    "LoggingMailer",
    "MailKind",
    "MailMessage",
    "Mailer",
    "OutboxMailer",
    "PasswordPolicy",
    "RosterAuth",
    "SmtpMailer",
    "User",
    "UserCreate",
    "UserDependency",
    "UserManager",
    "UserManagerDependency",
    "UserRead",
    "UserUpdate",
    "UserUpdateMe",
]
