"""Signing in with an OpenID Connect provider, for real: `oidc-provider-mock` on loopback is
the provider, and every sign-in runs the whole flow (the authorization URL, the provider's
authorization, the callback with its code and state, the token exchange, userinfo)."""

import asyncio
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi_users.router.oauth import CSRF_TOKEN_COOKIE_NAME, STATE_TOKEN_AUDIENCE
from httpx import AsyncClient
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from roster_auth import (
    AuthConfig,
    OAuthAccount,
    OAuthProvider,
    OutboxMailer,
    ThrottleConfig,
    User,
)
from roster_auth.oauth import issue_state, state_key
from roster_auth.testing import ACCESS_TOKEN_SECRET, DEFAULT_PASSWORD, bearer, config_for_tests
from roster_db.audit import AuditAction, audit_event

with warnings.catch_warnings():
    # It imports parts of authlib that authlib deprecates, and authlib shows its deprecation
    # warnings always (a filter set when it is imported, which this one must follow).
    import authlib.deprecate  # type: ignore[import-untyped]

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    import oidc_provider_mock  # type: ignore[import-untyped]

USERS = cast(Table, User.__table__)
Sessionmaker = async_sessionmaker[AsyncSession]
MakeUser = Callable[..., Awaitable[User]]
ServeWith = Callable[..., AbstractAsyncContextManager[AsyncClient]]
Callback = dict[str, str]

CLIENT_ID = "roster-tests"
CLIENT_SECRET = "roster-tests-secret"


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    """A real OpenID Connect provider on loopback, for this module's tests."""
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def oidc(discovery_base: str) -> OAuthProvider:
    return OAuthProvider.openid(
        discovery_url=f"{discovery_base}/.well-known/openid-configuration",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )


@pytest.fixture
def oauth_config(provider_url: str, outbox: OutboxMailer) -> AuthConfig:
    return config_for_tests(mailer=outbox, oauth_providers=(oidc(provider_url),))


@pytest_asyncio.fixture
async def app(serve_with: ServeWith, oauth_config: AuthConfig) -> AsyncIterator[AsyncClient]:
    async with serve_with(oauth_config) as client:
        yield client


async def set_claims(provider_url: str, sub: str, **claims: Any) -> None:
    async with httpx.AsyncClient() as provider:
        answer = await provider.put(f"{provider_url}/users/{sub}", json=claims)
        assert answer.status_code == 204, answer.text


async def at_provider(authorization_url: str, form: dict[str, str]) -> Callback:
    """What the provider's authorization page sends the browser back with (the redirect's
    query: code and state, or an error)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.post(authorization_url, data=form)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return {key: values[0] for key, values in query.items()}


async def authorize(
    app: AsyncClient,
    provider_url: str,
    sub: str,
    path: str = "/auth/oidc/authorize",
    **claims: Any,
) -> Callback:
    """Start a sign-in and let `sub` (with these claims) authorize it at the provider."""
    if claims:
        await set_claims(provider_url, sub, **claims)
    started = await app.get(path)
    assert started.status_code == 200, started.text
    return await at_provider(started.json()["authorization_url"], {"sub": sub})


async def sign_in(app: AsyncClient, provider_url: str, sub: str, **claims: Any) -> httpx.Response:
    callback = await authorize(app, provider_url, sub, **claims)
    return await app.get("/auth/oidc/callback", params=callback)


async def identities(sessionmaker: Sessionmaker, email: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(OAuthAccount.__table__.c.oauth_name)
            .join(User.__table__)
            .where(func.lower(User.__table__.c.email) == email.lower())
        )
        return [name for (name,) in rows]


async def user_by_email(sessionmaker: Sessionmaker, email: str) -> User:
    async with sessionmaker() as session:
        return (
            await session.scalars(select(User).where(func.lower(User.email) == email.lower()))
        ).one()


def detail(response: httpx.Response) -> Any:
    return response.json()["detail"]


async def test_a_first_sign_in_creates_a_verified_account_without_a_password(
    app: AsyncClient, provider_url: str, db_sessionmaker: Sessionmaker
) -> None:
    response = await sign_in(
        app, provider_url, "new-1", email="Nadia@Example.org", email_verified=True
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["refresh_token"]
    # The CSRF cookie is spent.
    assert CSRF_TOKEN_COOKIE_NAME not in app.cookies

    me = await app.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"].lower() == "nadia@example.org"
    assert me.json()["is_verified"] is True
    assert await identities(db_sessionmaker, "nadia@example.org") == ["oidc"]

    # No password signs in to it, not even the stored value.
    user = await user_by_email(db_sessionmaker, "nadia@example.org")
    for password in (DEFAULT_PASSWORD, user.hashed_password):
        login = await app.post(
            "/auth/jwt/login", data={"username": "nadia@example.org", "password": password}
        )
        assert login.status_code == 400
        assert detail(login) == "LOGIN_BAD_CREDENTIALS"

    # Signing in again finds the same account.
    again = await sign_in(app, provider_url, "new-1")
    assert again.status_code == 200, again.text
    me_again = await app.get("/users/me", headers=bearer(again.json()["access_token"]))
    assert me_again.json()["id"] == me.json()["id"]

    async with db_sessionmaker() as session:
        actions = await session.scalars(
            select(audit_event.c.action)
            .where(audit_event.c.subject_user_id == user.id)
            .order_by(audit_event.c.id)
        )
        assert list(actions) == [AuditAction.USER_REGISTERED, AuditAction.USER_OAUTH_LINKED]


async def test_racing_first_sign_ins_of_one_identity_make_one_account(
    serve_with: ServeWith,
    oauth_config: AuthConfig,
    provider_url: str,
    committing_sessionmaker: Sessionmaker,
) -> None:
    # Sessions that really commit, each request its own: the race is the database's.
    async with serve_with(oauth_config, committing_sessionmaker) as app:
        callbacks = []
        for _ in range(3):
            callback = await authorize(
                app, provider_url, "race-1", email="rosa@example.org", email_verified=True
            )
            callbacks.append((callback, app.cookies[CSRF_TOKEN_COOKIE_NAME]))
        app.cookies.clear()
        responses = await asyncio.gather(
            *(
                app.get(
                    "/auth/oidc/callback",
                    params=callback,
                    headers={"Cookie": f"{CSRF_TOKEN_COOKIE_NAME}={cookie}"},
                )
                for callback, cookie in callbacks
            )
        )
        assert [response.status_code for response in responses] == [200, 200, 200], [
            response.text for response in responses
        ]
        users = {
            (await app.get("/users/me", headers=bearer(answer.json()["access_token"]))).json()["id"]
            for answer in responses
        }
    assert len(users) == 1
    assert await identities(committing_sessionmaker, "rosa@example.org") == ["oidc"]


async def test_an_unverified_address_gives_an_unverified_account_and_a_verification_mail(
    app: AsyncClient, provider_url: str, outbox: OutboxMailer
) -> None:
    response = await sign_in(
        app, provider_url, "new-2", email="otto@example.org", email_verified=False
    )
    assert response.status_code == 200, response.text
    me = await app.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["is_verified"] is False
    assert [message.to for message in outbox.messages] == ["otto@example.org"]


async def test_an_account_set_up_by_a_provider_can_set_a_password_by_reset(
    app: AsyncClient, provider_url: str, outbox: OutboxMailer
) -> None:
    response = await sign_in(
        app, provider_url, "new-3", email="rhea@example.org", email_verified=True
    )
    assert response.status_code == 200, response.text
    forgot = await app.post("/auth/forgot-password", json={"email": "rhea@example.org"})
    assert forgot.status_code == 202
    (mail,) = outbox.messages
    assert mail.link is not None
    token = parse_qs(urlsplit(mail.link).query)["token"][0]
    reset = await app.post(
        "/auth/reset-password", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    login = await app.post(
        "/auth/jwt/login", data={"username": "rhea@example.org", "password": DEFAULT_PASSWORD}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("associate_by_email", "email_verified"),
    [(False, True), (False, False), (True, False)],
)
async def test_an_existing_address_is_not_taken_over(
    serve_with: ServeWith,
    oauth_config: AuthConfig,
    provider_url: str,
    make_user: MakeUser,
    db_sessionmaker: Sessionmaker,
    associate_by_email: bool,
    email_verified: bool,
) -> None:
    email = f"owner-{associate_by_email}-{email_verified}@example.org"
    await make_user(email=email)
    config = config_for_tests(
        oauth_providers=oauth_config.oauth_providers,
        oauth_associate_by_email=associate_by_email,
    )
    async with serve_with(config) as app:
        sub = f"taker-{associate_by_email}-{email_verified}"
        response = await sign_in(
            app, provider_url, sub, email=email.upper(), email_verified=email_verified
        )
    assert response.status_code == 400
    assert detail(response) == "OAUTH_USER_ALREADY_EXISTS"
    assert await identities(db_sessionmaker, email) == []


async def test_linking_by_email_needs_the_address_verified_on_both_sides(
    serve_with: ServeWith,
    oauth_config: AuthConfig,
    provider_url: str,
    make_user: MakeUser,
    db_sessionmaker: Sessionmaker,
) -> None:
    owner = await make_user(email="vera@example.org", is_verified=True)
    # Someone registered this address here without proving it: not handed to the provider's
    # user either.
    await make_user(email="ugo@example.org", is_verified=False)
    config = config_for_tests(
        oauth_providers=oauth_config.oauth_providers, oauth_associate_by_email=True
    )
    async with serve_with(config) as app:
        linked = await sign_in(
            app, provider_url, "vera", email="vera@example.org", email_verified=True
        )
        refused = await sign_in(
            app, provider_url, "ugo", email="ugo@example.org", email_verified=True
        )
        assert linked.status_code == 200, linked.text
        me = await app.get("/users/me", headers=bearer(linked.json()["access_token"]))
    assert me.json()["id"] == str(owner.id)
    assert await identities(db_sessionmaker, "vera@example.org") == ["oidc"]
    assert refused.status_code == 400
    assert detail(refused) == "OAUTH_USER_ALREADY_EXISTS"
    assert await identities(db_sessionmaker, "ugo@example.org") == []


async def test_the_cookie_callback_signs_in_with_the_session_cookie(
    app: AsyncClient, provider_url: str
) -> None:
    callback = await authorize(
        app,
        provider_url,
        "cookie-1",
        path="/auth/oidc/cookie/authorize",
        email="cleo@example.org",
        email_verified=True,
    )
    # A state issued for the cookie flow is refused by the bearer callback.
    crossed = await app.get("/auth/oidc/callback", params=callback)
    assert crossed.status_code == 400
    assert detail(crossed) == "OAUTH_INVALID_STATE"

    response = await app.get("/auth/oidc/cookie/callback", params=callback)
    assert response.status_code == 204, response.text
    assert app.cookies.get("roster_auth")
    me = await app.get("/users/me")
    assert me.status_code == 200
    assert me.json()["email"] == "cleo@example.org"


def forge_state(key: str | bytes, algorithm: str = "HS256", **claims: Any) -> str:
    payload = {
        "csrftoken": "x" * 43,
        "provider": "oidc",
        "flow": "jwt",
        "aud": STATE_TOKEN_AUDIENCE,
        "exp": int(time.time()) + 600,
        **claims,
    }
    # `none` takes no key.
    return jwt.encode(payload, "" if algorithm == "none" else key, algorithm=algorithm)


async def test_a_bad_state_is_refused_before_the_code_is_used(
    app: AsyncClient, provider_url: str
) -> None:
    callback = await authorize(
        app, provider_url, "state-1", email="stan@example.org", email_verified=True
    )
    cookie = app.cookies[CSRF_TOKEN_COOKIE_NAME]
    key = state_key(ACCESS_TOKEN_SECRET)
    tampered = callback["state"][:-2] + ("AA" if not callback["state"].endswith("AA") else "BB")
    cases = {
        "tampered": (tampered, "ACCESS_TOKEN_DECODE_ERROR"),
        "alg none": (forge_state(key, "none", csrftoken=cookie), "ACCESS_TOKEN_DECODE_ERROR"),
        "HS512": (forge_state(key, "HS512", csrftoken=cookie), "ACCESS_TOKEN_DECODE_ERROR"),
        "another key": (
            forge_state("another-key-0123456789abcdef0123456789", csrftoken=cookie),
            "ACCESS_TOKEN_DECODE_ERROR",
        ),
        "expired": (
            issue_state(key, -60, provider="oidc", flow="jwt", csrf_token=cookie),
            "ACCESS_TOKEN_ALREADY_EXPIRED",
        ),
        "another provider": (
            issue_state(key, 600, provider="other", flow="jwt", csrf_token=cookie),
            "OAUTH_INVALID_STATE",
        ),
        "another CSRF token": (
            issue_state(key, 600, provider="oidc", flow="jwt", csrf_token="y" * 43),
            "OAUTH_INVALID_STATE",
        ),
        "missing": ("", "OAUTH_INVALID_STATE"),
    }
    for case, (state, code) in cases.items():
        response = await app.get(
            "/auth/oidc/callback", params={"code": callback["code"], "state": state}
        )
        assert response.status_code == 400, case
        assert detail(response) == code, case

    # The CSRF cookie missing, then another one (whatever its characters).
    app.cookies.delete(CSRF_TOKEN_COOKIE_NAME)
    for value in (None, "someone-else's", "ünïcödé"):
        headers = {} if value is None else {"Cookie": f"{CSRF_TOKEN_COOKIE_NAME}={value}"}
        response = await app.get(
            "/auth/oidc/callback",
            params=callback,
            headers={name.encode(): text.encode() for name, text in headers.items()},
        )
        assert response.status_code == 400, value
        assert detail(response) == "OAUTH_INVALID_STATE", value

    # None of it used the code: with the right cookie, it still signs in.
    app.cookies.set(CSRF_TOKEN_COOKIE_NAME, cookie, domain="roster.test", path="/auth")
    response = await app.get("/auth/oidc/callback", params=callback)
    assert response.status_code == 200, response.text


async def test_a_forged_or_replayed_code_is_refused(app: AsyncClient, provider_url: str) -> None:
    callback = await authorize(
        app, provider_url, "code-1", email="cody@example.org", email_verified=True
    )
    cookie = app.cookies[CSRF_TOKEN_COOKIE_NAME]
    forged = await app.get(
        "/auth/oidc/callback", params={"code": "forged-code", "state": callback["state"]}
    )
    assert forged.status_code == 400
    assert detail(forged) == "OAUTH_BAD_AUTHORIZATION_CODE"

    first = await app.get("/auth/oidc/callback", params=callback)
    assert first.status_code == 200, first.text
    # A replay, even with the spent CSRF cookie put back: the provider refuses the used code.
    app.cookies.set(CSRF_TOKEN_COOKIE_NAME, cookie, domain="roster.test", path="/auth")
    replayed = await app.get("/auth/oidc/callback", params=callback)
    assert replayed.status_code == 400
    assert detail(replayed) == "OAUTH_BAD_AUTHORIZATION_CODE"


async def test_the_provider_denying_is_a_refusal(app: AsyncClient) -> None:
    started = await app.get("/auth/oidc/authorize")
    callback = await at_provider(started.json()["authorization_url"], {"action": "deny"})
    assert callback["error"] == "access_denied"
    response = await app.get("/auth/oidc/callback", params=callback)
    assert response.status_code == 400
    assert detail(response) == {
        "code": "OAUTH_AUTHORIZATION_DENIED",
        "reason": "The provider answered access_denied.",
    }


async def test_an_identity_without_a_usable_address_is_refused(
    app: AsyncClient, provider_url: str
) -> None:
    # The provider's address is its subject, which is no address.
    response = await sign_in(app, provider_url, "no-address")
    assert response.status_code == 400
    assert detail(response) == "OAUTH_NOT_AVAILABLE_EMAIL"


async def test_no_account_is_created_when_registration_is_off(
    serve_with: ServeWith, oauth_config: AuthConfig, provider_url: str
) -> None:
    config = config_for_tests(
        oauth_providers=oauth_config.oauth_providers, registration_enabled=False
    )
    async with serve_with(config) as app:
        response = await sign_in(app, provider_url, "closed-1", email="cara@example.org")
    assert response.status_code == 400
    assert detail(response) == "OAUTH_SIGN_UP_DISABLED"


async def test_a_deactivated_account_cannot_sign_in_through_a_provider(
    app: AsyncClient, provider_url: str, db_sessionmaker: Sessionmaker
) -> None:
    first = await sign_in(app, provider_url, "gone-1", email="gwen@example.org")
    assert first.status_code == 200, first.text
    async with db_sessionmaker() as session:
        await session.execute(
            update(USERS).where(USERS.c.email == "gwen@example.org").values(is_active=False)
        )
        await session.commit()
    response = await sign_in(app, provider_url, "gone-1")
    assert response.status_code == 400
    assert detail(response) == "LOGIN_BAD_CREDENTIALS"


async def test_linking_needs_a_signed_in_user_and_an_identity_of_nobody_else(
    app: AsyncClient,
    provider_url: str,
    make_user: MakeUser,
    db_sessionmaker: Sessionmaker,
) -> None:
    assert (await app.get("/auth/associate/oidc/authorize")).status_code == 401
    assert (
        await app.get("/auth/associate/oidc/callback", params={"code": "c", "state": "s"})
    ).status_code == 401

    await make_user(email="lena@example.org")
    login = await app.post(
        "/auth/jwt/login", data={"username": "lena@example.org", "password": DEFAULT_PASSWORD}
    )
    headers = bearer(login.json()["access_token"])
    await set_claims(provider_url, "lena-at-work", email="lena@work.example", email_verified=True)
    started = await app.get("/auth/associate/oidc/authorize", headers=headers)
    assert started.status_code == 200
    callback = await at_provider(started.json()["authorization_url"], {"sub": "lena-at-work"})
    linked = await app.get("/auth/associate/oidc/callback", params=callback, headers=headers)
    assert linked.status_code == 200, linked.text
    assert linked.json()["email"] == "lena@example.org"
    listed = await app.get("/users/me/oauth-accounts", headers=headers)
    assert [(account["oauth_name"], account["account_id"]) for account in listed.json()] == [
        ("oidc", "lena-at-work")
    ]
    # The identity now signs in to Lena's account.
    signed_in = await sign_in(app, provider_url, "lena-at-work")
    me = await app.get("/users/me", headers=bearer(signed_in.json()["access_token"]))
    assert me.json()["email"] == "lena@example.org"

    # Someone else cannot link it.
    await make_user(email="mallory@example.org")
    login = await app.post(
        "/auth/jwt/login", data={"username": "mallory@example.org", "password": DEFAULT_PASSWORD}
    )
    other = bearer(login.json()["access_token"])
    started = await app.get("/auth/associate/oidc/authorize", headers=other)
    callback = await at_provider(started.json()["authorization_url"], {"sub": "lena-at-work"})
    refused = await app.get("/auth/associate/oidc/callback", params=callback, headers=other)
    assert refused.status_code == 400
    assert detail(refused) == "OAUTH_ACCOUNT_ALREADY_LINKED"
    assert await identities(db_sessionmaker, "mallory@example.org") == []


async def test_the_only_way_to_sign_in_cannot_be_unlinked(
    app: AsyncClient, provider_url: str, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    response = await sign_in(
        app, provider_url, "only-1", email="omar@example.org", email_verified=True
    )
    headers = bearer(response.json()["access_token"])
    (account,) = (await app.get("/users/me/oauth-accounts", headers=headers)).json()
    refused = await app.delete(f"/users/me/oauth-accounts/{account['id']}", headers=headers)
    assert refused.status_code == 409
    assert detail(refused) == "OAUTH_ACCOUNT_ONLY_SIGN_IN_METHOD"
    assert await identities(db_sessionmaker, "omar@example.org") == ["oidc"]

    # Someone else's link, or none, is unknown.
    await make_user(email="pia@example.org")
    login = await app.post(
        "/auth/jwt/login", data={"username": "pia@example.org", "password": DEFAULT_PASSWORD}
    )
    other = bearer(login.json()["access_token"])
    for link_id in (account["id"], str(uuid.uuid4())):
        unknown = await app.delete(f"/users/me/oauth-accounts/{link_id}", headers=other)
        assert unknown.status_code == 404
        assert detail(unknown) == "OAUTH_ACCOUNT_NOT_FOUND"

    # With a second identity, the first one may go.
    await set_claims(provider_url, "only-2", email="omar@elsewhere.example")
    started = await app.get("/auth/associate/oidc/authorize", headers=headers)
    callback = await at_provider(started.json()["authorization_url"], {"sub": "only-2"})
    assert (
        await app.get("/auth/associate/oidc/callback", params=callback, headers=headers)
    ).status_code == 200
    unlinked = await app.delete(f"/users/me/oauth-accounts/{account['id']}", headers=headers)
    assert unlinked.status_code == 204
    remaining = (await app.get("/users/me/oauth-accounts", headers=headers)).json()
    assert [entry["account_id"] for entry in remaining] == ["only-2"]


async def test_an_account_with_a_password_may_unlink_its_identity(
    app: AsyncClient, provider_url: str, make_user: MakeUser, db_sessionmaker: Sessionmaker
) -> None:
    await make_user(email="ines@example.org")
    login = await app.post(
        "/auth/jwt/login", data={"username": "ines@example.org", "password": DEFAULT_PASSWORD}
    )
    headers = bearer(login.json()["access_token"])
    await set_claims(provider_url, "ines", email="ines@example.org", email_verified=True)
    started = await app.get("/auth/associate/oidc/authorize", headers=headers)
    callback = await at_provider(started.json()["authorization_url"], {"sub": "ines"})
    linked = await app.get("/auth/associate/oidc/callback", params=callback, headers=headers)
    assert linked.status_code == 200, linked.text
    (account,) = (await app.get("/users/me/oauth-accounts", headers=headers)).json()
    unlinked = await app.delete(f"/users/me/oauth-accounts/{account['id']}", headers=headers)
    assert unlinked.status_code == 204
    assert await identities(db_sessionmaker, "ines@example.org") == []
    async with db_sessionmaker() as session:
        details = await session.scalar(
            select(audit_event.c.details).where(
                audit_event.c.action == AuditAction.USER_OAUTH_UNLINKED
            )
        )
    assert details == {"provider": "oidc"}


async def test_failed_callbacks_are_throttled_per_client_address(
    serve_with: ServeWith, oauth_config: AuthConfig, provider_url: str
) -> None:
    throttle = ThrottleConfig(login_failures_per_address=2)
    config = config_for_tests(oauth_providers=oauth_config.oauth_providers, throttle=throttle)
    async with serve_with(config) as app:
        for _ in range(2):
            bad = await app.get("/auth/oidc/callback", params={"code": "c", "state": "forged"})
            assert bad.status_code == 400
        # Even a good callback now waits.
        callback = await authorize(
            app, provider_url, "throttled-1", email="tess@example.org", email_verified=True
        )
        refused = await app.get("/auth/oidc/callback", params=callback)
    assert refused.status_code == 429
    assert detail(refused) == "TOO_MANY_REQUESTS"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_provider_that_is_down_fails_only_its_own_routes(
    serve_with: ServeWith, unused_tcp_port: int
) -> None:
    config = config_for_tests(oauth_providers=(oidc(f"http://127.0.0.1:{unused_tcp_port}"),))
    async with serve_with(config) as app:
        for _ in range(2):
            # The second one is answered from the remembered failure.
            response = await app.get("/auth/oidc/authorize")
            assert response.status_code == 503
            assert detail(response) == "OAUTH_PROVIDER_UNAVAILABLE"
            assert int(response.headers["retry-after"]) >= 1
        callback = await app.get("/auth/oidc/cookie/authorize")
        assert callback.status_code == 503
        assert (await app.get("/probe/db")).status_code == 200
        assert (await app.get("/users/me")).status_code == 401
