"""Signing in through identity providers: the provider's client (httpx-oauth), the identity it
vouches for, and the state that binds a callback to the browser that started the sign-in.

The flow is OAuth 2.0's authorization code grant, as FastAPI Users' OAuth routers run it, with
what they lack:

- the state is checked (signature, algorithm, audience, expiry, provider, flow, CSRF cookie)
  before the code is exchanged, so a forged callback costs no request to the provider, and
  every way it can be wrong is a 400, never a 500;
- PKCE (S256): the code verifier is derived from the CSRF cookie, which only the browser that
  started the sign-in holds, so a code intercepted on its way back is useless without it;
- the provider's answers are bounded in time, and its failures are a 503 of its own routes;
- the identity carries whether the provider verified the address (OpenID Connect's
  `email_verified`, GitHub's `verified`), which decides what the address may be used for.

An OpenID Connect provider is found through its discovery document, fetched at the first
request that needs it (httpx-oauth fetches it synchronously when its client is built: here
in a worker thread, under the timeout), then kept; a failed fetch is remembered for a few
seconds, so a provider that is down is not asked again by every request.
"""

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import httpx
import jwt
from fastapi import HTTPException
from fastapi_users.router.common import ErrorCode
from fastapi_users.router.oauth import CSRF_TOKEN_KEY, STATE_TOKEN_AUDIENCE, generate_state_token
from httpx_oauth.clients.github import GitHubOAuth2
from httpx_oauth.clients.openid import OpenID
from httpx_oauth.exceptions import GetProfileError
from httpx_oauth.oauth2 import BaseOAuth2, GetAccessTokenError, OAuth2Error
from pydantic import EmailStr, TypeAdapter, ValidationError

from roster_auth.config import OAuthProvider, Secret, secret_value
from roster_auth.errors import OAuthProviderUnavailableError, bad_request
from roster_auth.models import EMAIL_MAX_LENGTH

logger = logging.getLogger(__name__)

# The refusals of a callback, besides FastAPI Users' own codes (`ErrorCode`): the provider
# said no (the user denied, or another error it sends back), and the provider refused the
# code (forged, replayed, expired, or issued for another client).
OAUTH_AUTHORIZATION_DENIED: Final = "OAUTH_AUTHORIZATION_DENIED"
OAUTH_BAD_AUTHORIZATION_CODE: Final = "OAUTH_BAD_AUTHORIZATION_CODE"

# Which route a state was issued for: a sign-in answered by one backend, or linking an
# identity to the signed-in user.
Flow = Literal["jwt", "cookie", "associate"]
PROVIDER_CLAIM: Final = "provider"
FLOW_CLAIM: Final = "flow"
USER_CLAIM: Final = "sub"
STATE_ALGORITHM: Final = "HS256"
_STATE_KEY_LABEL: Final = b"roster-auth oauth state key v1"
_PKCE_LABEL: Final = b"pkce\x00"
# A provider that failed to answer its discovery is not asked again for this long.
DISCOVERY_RETRY_SECONDS: Final = 10.0
# Subjects are opaque strings; ours are stored in a column of this size (FastAPI Users').
ACCOUNT_ID_MAX_LENGTH: Final = 320
# An OAuth error code (RFC 6749, 4.1.2.1: printable ASCII); shown back only when it is one.
_ERROR_CODE_PATTERN: Final = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$")

_EMAIL: Final = TypeAdapter(EmailStr)


def state_key(secret: Secret) -> str:
    """The key that signs states, derived from an application secret (the access-token
    secret): no new setting, and a state can never pass for an access token or the reverse."""
    return hmac.new(secret_value(secret).encode(), _STATE_KEY_LABEL, hashlib.sha256).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def issue_state(
    key: str,
    lifetime_seconds: int,
    *,
    provider: str,
    flow: Flow,
    csrf_token: str,
    user_id: str | None = None,
) -> str:
    """FastAPI Users' state token (a JWT for its audience, carrying the CSRF token), also
    naming the provider and the flow it was issued for, and the user who links (`associate`)."""
    data = {CSRF_TOKEN_KEY: csrf_token, PROVIDER_CLAIM: provider, FLOW_CLAIM: flow}
    if user_id is not None:
        data[USER_CLAIM] = user_id
    return generate_state_token(data, key, lifetime_seconds)


def read_state(
    key: str,
    state: str | None,
    csrf_cookie: str | None,
    *,
    provider: str,
    flow: Flow,
    user_id: str | None = None,
) -> str:
    """The CSRF token of a valid state for this provider, flow (and user), which the
    browser's CSRF cookie matches; otherwise a 400: `ACCESS_TOKEN_ALREADY_EXPIRED` (an
    expired state), `ACCESS_TOKEN_DECODE_ERROR` (not a state of ours: another key, another
    algorithm, `none`, garbage), `OAUTH_INVALID_STATE` (another provider's, flow's or user's
    state, or no CSRF cookie, or another one), as FastAPI Users answers them."""
    if not state:
        raise bad_request(ErrorCode.OAUTH_INVALID_STATE)
    try:
        data = jwt.decode(
            state,
            key,
            algorithms=[STATE_ALGORITHM],
            audience=STATE_TOKEN_AUDIENCE,
            options={"require": ["exp", "aud"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise bad_request(ErrorCode.ACCESS_TOKEN_ALREADY_EXPIRED) from error
    except jwt.PyJWTError as error:
        raise bad_request(ErrorCode.ACCESS_TOKEN_DECODE_ERROR) from error
    state_csrf = data.get(CSRF_TOKEN_KEY)
    if (
        data.get(PROVIDER_CLAIM) != provider
        or data.get(FLOW_CLAIM) != flow
        or data.get(USER_CLAIM) != user_id
        or not isinstance(state_csrf, str)
        or not csrf_cookie
        # Bytes: a cookie may hold any text, which compare_digest refuses unless ASCII.
        or not hmac.compare_digest(_utf8(csrf_cookie), _utf8(state_csrf))
    ):
        raise bad_request(ErrorCode.OAUTH_INVALID_STATE)
    return state_csrf


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def pkce_verifier(key: str, csrf_token: str) -> str:
    """The PKCE code verifier of a sign-in (RFC 7636: 43 characters of base64url), derived
    from its CSRF token, so nothing more is kept between the two requests."""
    digest = hmac.new(key.encode(), _PKCE_LABEL + _utf8(csrf_token), hashlib.sha256).digest()
    return _base64url(digest)


def pkce_challenge(verifier: str) -> str:
    return _base64url(hashlib.sha256(verifier.encode()).digest())


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def denied(error: str) -> HTTPException:
    """The provider sent the user back with an error instead of a code (RFC 6749, 4.1.2.1)."""
    reason = error if _ERROR_CODE_PATTERN.match(error) else "error"
    return bad_request(OAUTH_AUTHORIZATION_DENIED, f"The provider answered {reason}.")


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: its subject, and their address."""

    account_id: str
    email: str
    email_verified: bool


class ProviderClient:
    """One configured provider: builds its httpx-oauth client when first needed (an OpenID
    Connect provider's through its discovery document), and asks it, each call bounded by
    `timeout_seconds`. Its failures are `OAuthProviderUnavailableError` (503) or a 400 when
    the provider refused what the client sent."""

    def __init__(self, provider: OAuthProvider, timeout_seconds: float) -> None:
        self.provider = provider
        self.name = provider.name
        self.timeout_seconds = timeout_seconds
        self._client: BaseOAuth2[Any] | None = None
        self._discovery = anyio.Lock()
        self._retry_discovery_at = 0.0

    async def client(self) -> BaseOAuth2[Any]:
        if self._client is not None:
            return self._client
        async with self._discovery:
            if self._client is None:
                self._client = await self._build()
        return self._client

    async def _build(self) -> BaseOAuth2[Any]:
        provider = self.provider
        secret = secret_value(provider.client_secret)
        if provider.kind == "github":
            return GitHubOAuth2(
                provider.client_id, secret, scopes=list(provider.scopes), name=provider.name
            )
        now = time.monotonic()
        if now < self._retry_discovery_at:
            raise OAuthProviderUnavailableError(self._retry_discovery_at - now)
        assert provider.discovery_url is not None  # OAuthProvider checks it
        discovery_url = provider.discovery_url

        def discover() -> OpenID:
            return OpenID(
                provider.client_id,
                secret,
                discovery_url,
                name=provider.name,
                base_scopes=list(provider.scopes),
            )

        try:
            with anyio.fail_after(self.timeout_seconds):
                # Abandoned on timeout: its own HTTP timeout (httpx's, 5 s) ends the thread.
                return await anyio.to_thread.run_sync(discover, abandon_on_cancel=True)
        except (TimeoutError, OAuth2Error, httpx.HTTPError, LookupError, ValueError) as error:
            self._retry_discovery_at = time.monotonic() + DISCOVERY_RETRY_SECONDS
            logger.warning(
                "OAuth provider %s: no discovery document (%s)", provider.name, _kind(error)
            )
            raise OAuthProviderUnavailableError(DISCOVERY_RETRY_SECONDS) from error

    async def authorization_url(self, redirect_uri: str, state: str, code_verifier: str) -> str:
        client = await self.client()
        return await client.get_authorization_url(
            redirect_uri,
            state,
            list(self.provider.scopes),
            code_challenge=pkce_challenge(code_verifier),
            code_challenge_method="S256",
        )

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str) -> str:
        """The access token the provider gives for the authorization code."""
        client = await self.client()
        try:
            with anyio.fail_after(self.timeout_seconds):
                token = await client.get_access_token(code, redirect_uri, code_verifier)
        except GetAccessTokenError as error:
            if error.response is not None and error.response.is_client_error:
                raise bad_request(OAUTH_BAD_AUTHORIZATION_CODE) from error
            raise self._unavailable("token exchange", error) from error
        except (TimeoutError, httpx.HTTPError) as error:
            raise self._unavailable("token exchange", error) from error
        access_token = token.get("access_token")
        # GitHub answers a bad code with 200 and `{"error": ...}`.
        if "error" in token or not isinstance(access_token, str) or not access_token:
            raise bad_request(OAUTH_BAD_AUTHORIZATION_CODE)
        return access_token

    async def identity(self, access_token: str) -> Identity:
        """Who the access token belongs to; 400 `OAUTH_NOT_AVAILABLE_EMAIL` when the provider
        gives no usable address (or no subject)."""
        client = await self.client()
        try:
            with anyio.fail_after(self.timeout_seconds):
                profile = await client.get_profile(access_token)
                emails = (
                    await client.get_emails(access_token)
                    if isinstance(client, GitHubOAuth2)
                    else None
                )
        except (GetProfileError, TimeoutError, httpx.HTTPError, ValueError) as error:
            raise self._unavailable("profile", error) from error
        found = _openid_identity(profile) if emails is None else _github_identity(profile, emails)
        if found is None:
            raise bad_request(ErrorCode.OAUTH_NOT_AVAILABLE_EMAIL)
        return found

    def _unavailable(self, what: str, error: Exception) -> OAuthProviderUnavailableError:
        logger.warning("OAuth provider %s: %s failed (%s)", self.name, what, _kind(error))
        return OAuthProviderUnavailableError(DISCOVERY_RETRY_SECONDS)


def _kind(error: Exception) -> str:
    # The class only: a message may quote the provider's answer, a code or a token.
    return type(error).__name__


def _openid_identity(profile: Any) -> Identity | None:
    if not isinstance(profile, dict):
        return None
    # Some providers send the flag as a string.
    verified = profile.get("email_verified") in (True, "true")
    return _identity(profile.get("sub"), profile.get("email"), verified=verified)


def _github_identity(profile: Any, emails: Any) -> Identity | None:
    if not isinstance(profile, dict) or not isinstance(emails, list):
        return None
    primary = next(
        (entry for entry in emails if isinstance(entry, dict) and entry.get("primary") is True),
        None,
    )
    if primary is None:
        return None
    account_id = profile.get("id")
    return _identity(
        None if account_id is None else str(account_id),
        primary.get("email"),
        verified=primary.get("verified") is True,
    )


def _identity(account_id: Any, email: Any, *, verified: bool) -> Identity | None:
    if not isinstance(account_id, str) or not 0 < len(account_id) <= ACCOUNT_ID_MAX_LENGTH:
        return None
    if not isinstance(email, str) or len(email) > EMAIL_MAX_LENGTH:
        return None
    try:
        address = _EMAIL.validate_python(email)
    except ValidationError:
        return None
    return Identity(account_id=account_id, email=address, email_verified=verified)


__all__ = [
    "OAUTH_AUTHORIZATION_DENIED",
    "OAUTH_BAD_AUTHORIZATION_CODE",
    "Flow",
    "Identity",
    "ProviderClient",
    "denied",
    "issue_state",
    "new_csrf_token",
    "pkce_verifier",
    "read_state",
    "state_key",
]
