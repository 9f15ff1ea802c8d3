"""roster-auth: users and authentication with FastAPI Users."""

from roster_auth.auth import RosterAuth
from roster_auth.config import AuthConfig, AuthConfigError, OAuthProvider, ThrottleConfig
from roster_auth.current import (
    CALLER,
    Credentials,
    CredentialsDependency,
    document_credentials,
    not_authenticated,
)
from roster_auth.dependencies import UserDependency, UserManagerDependency
from roster_auth.errors import (
    PASSWORD_HASHING_BUSY,
    TOO_MANY_REQUESTS,
    PasswordHashingBusyError,
    TooManyRequestsError,
)
from roster_auth.guard import PasswordTrafficGuard
from roster_auth.mail import (
    LoggingMailer,
    Mailer,
    MailKind,
    MailMessage,
    OutboxMailer,
    SmtpMailer,
)
from roster_auth.manager import InvalidCurrentPasswordException, UserManager
from roster_auth.models import (
    AccessToken,
    OAuthAccount,
    RefreshToken,
    RefreshTokenFamily,
    ThrottleCounter,
    User,
)
from roster_auth.password import PasswordPolicy
from roster_auth.schemas import (
    OAuthAccountRead,
    SessionRead,
    TokenResponse,
    UserCreate,
    UserRead,
    UserUpdate,
    UserUpdateMe,
)
from roster_auth.sessions import Pruned, Sessions, prune_sessions, token_digest
from roster_auth.throttle import LoginAttempt, Throttle

__all__ = [
    "CALLER",
    "PASSWORD_HASHING_BUSY",
    "TOO_MANY_REQUESTS",
    "AccessToken",
    "AuthConfig",
    "AuthConfigError",
    "Credentials",
    "CredentialsDependency",
    "InvalidCurrentPasswordException",
    "LoggingMailer",
    "LoginAttempt",
    "MailKind",
    "MailMessage",
    "Mailer",
    "OAuthAccount",
    "OAuthAccountRead",
    "OAuthProvider",
    "OutboxMailer",
    "PasswordHashingBusyError",
    "PasswordPolicy",
    "PasswordTrafficGuard",
    "Pruned",
    "RefreshToken",
    "RefreshTokenFamily",
    "RosterAuth",
    "SessionRead",
    "Sessions",
    "SmtpMailer",
    "Throttle",
    "ThrottleConfig",
    "ThrottleCounter",
    "TokenResponse",
    "TooManyRequestsError",
    "User",
    "UserCreate",
    "UserDependency",
    "UserManager",
    "UserManagerDependency",
    "UserRead",
    "UserUpdate",
    "UserUpdateMe",
    "document_credentials",
    "not_authenticated",
    "prune_sessions",
    "token_digest",
]
