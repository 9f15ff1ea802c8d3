"""The providers' configuration: the GitHub and Google presets, what `OAuthProvider` refuses,
and that only configured providers are served (no provider is asked anything here)."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient

from roster_auth import AuthConfigError, OAuthProvider
from roster_auth.config import GOOGLE_DISCOVERY_URL
from roster_auth.testing import config_for_tests

ServeWith = Callable[..., AbstractAsyncContextManager[AsyncClient]]


def test_the_github_preset_asks_for_read_only_scopes() -> None:
    github = OAuthProvider.github(client_id="id", client_secret="secret")
    assert (github.name, github.kind) == ("github", "github")
    # Not httpx-oauth's default `user`, which may write the profile.
    assert github.scopes == ("read:user", "user:email")
    assert github.discovery_url is None


def test_the_google_preset_is_google_s_openid_connect_provider() -> None:
    google = OAuthProvider.google(client_id="id", client_secret="secret")
    assert (google.name, google.kind) == ("google", "openid")
    assert google.discovery_url == GOOGLE_DISCOVERY_URL
    assert GOOGLE_DISCOVERY_URL.startswith("https://accounts.google.com/")
    assert google.scopes == ("openid", "email")


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"name": "jwt"}, "name"),
        ({"name": "associate"}, "name"),
        ({"name": "Bad Name"}, "name"),
        ({"name": "x" * 33}, "name"),
        ({"client_id": ""}, "client id"),
        ({"client_secret": ""}, "client id and secret"),
        ({"discovery_url": "http://idp.example.com/.well-known/openid-configuration"}, "https"),
        ({"scopes": ("email",)}, "openid"),
    ],
)
def test_a_provider_that_cannot_work_is_refused(fields: dict[str, object], complaint: str) -> None:
    settings: dict[str, object] = {
        "discovery_url": "https://idp.example.com/.well-known/openid-configuration",
        "client_id": "id",
        "client_secret": "secret",
        **fields,
    }
    with pytest.raises(AuthConfigError, match=complaint):
        OAuthProvider.openid(**settings)  # type: ignore[arg-type]


def test_loopback_discovery_over_http_is_allowed_for_trying_out() -> None:
    local = OAuthProvider.openid(
        discovery_url="http://localhost:9400/.well-known/openid-configuration",
        client_id="id",
        client_secret="secret",
    )
    assert local.discovery_url is not None


def test_two_providers_may_not_share_a_name() -> None:
    github = OAuthProvider.github(client_id="id", client_secret="secret")
    with pytest.raises(AuthConfigError, match="differ"):
        config_for_tests(oauth_providers=(github, github))


async def test_only_configured_providers_are_served(serve_with: ServeWith) -> None:
    github = OAuthProvider.github(client_id="gh-client", client_secret="secret")
    async with serve_with(config_for_tests(oauth_providers=(github,))) as app:
        paths = set((await app.get("/openapi.json")).json()["paths"])
        started = await app.get("/auth/github/authorize")
        absent = await app.get("/auth/oidc/authorize")
    assert {
        "/auth/github/authorize",
        "/auth/github/callback",
        "/auth/github/cookie/authorize",
        "/auth/github/cookie/callback",
        "/auth/associate/github/authorize",
        "/auth/associate/github/callback",
        "/users/me/oauth-accounts",
        "/users/me/oauth-accounts/{link_id}",
    } <= paths
    assert not any("oidc" in path or "google" in path for path in paths)
    assert absent.status_code == 404

    # GitHub's authorization URL needs no request to GitHub.
    assert started.status_code == 200, started.text
    url = urlsplit(started.json()["authorization_url"])
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("https", "github.com", "/login/oauth/authorize")
    assert query["client_id"] == ["gh-client"]
    assert query["scope"] == ["read:user user:email"]
    assert query["redirect_uri"] == ["https://roster.test/auth/github/callback"]
    assert query["code_challenge_method"] == ["S256"]
    # The session cookie's flags, on the auth routes only; lax, so that it comes back with
    # the provider's redirect.
    cookie = started.headers["set-cookie"].lower()
    assert cookie.startswith("fastapiusersoauthcsrf=")
    for flag in ("httponly", "secure", "path=/auth", "samesite=lax", "max-age=600"):
        assert flag in cookie


async def test_without_providers_there_are_no_provider_routes(serve_with: ServeWith) -> None:
    async with serve_with(config_for_tests()) as app:
        paths = set((await app.get("/openapi.json")).json()["paths"])
    assert not any("associate" in path or "oauth" in path for path in paths)
