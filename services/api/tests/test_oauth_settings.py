"""The identity providers' settings: each provider configured by its variables, all of them or
none, refused at startup (naming the variables) otherwise, and present in the app and its
OpenAPI schema only when configured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from starlette.routing import NoMatchFound
from typer.testing import CliRunner

from roster_api.app import build_auth_config, create_app
from roster_api.cli import cli
from roster_api.settings import Settings
from roster_auth import AuthConfig, OAuthProvider
from roster_auth.config import GOOGLE_DISCOVERY_URL

from .conftest import MIGRATIONS_DIR, UNREACHABLE_DATABASE_URL, make_settings, serve

DISCOVERY_URL: Final = "https://login.example.com/.well-known/openid-configuration"
OIDC_SECRET: Final = "oidc-client-secret-value-1f3a"
GITHUB_SECRET: Final = "github-client-secret-value-9c2e"
GOOGLE_SECRET: Final = "google-client-secret-value-7b5d"
OIDC: Final = {
    "oidc_discovery_url": DISCOVERY_URL,
    "oidc_client_id": "roster-oidc",
    "oidc_client_secret": OIDC_SECRET,
}
GITHUB: Final = {"github_client_id": "Iv1.roster", "github_client_secret": GITHUB_SECRET}
GOOGLE: Final = {
    "google_client_id": "123.apps.googleusercontent.com",
    "google_client_secret": GOOGLE_SECRET,
}
# Every route a provider `oidc` adds, and the two that any provider adds.
OIDC_PATHS: Final = {
    "/auth/oidc/authorize",
    "/auth/oidc/callback",
    "/auth/oidc/cookie/authorize",
    "/auth/oidc/cookie/callback",
    "/auth/associate/oidc/authorize",
    "/auth/associate/oidc/callback",
}
ACCOUNT_PATHS: Final = {"/users/me/oauth-accounts", "/users/me/oauth-accounts/{link_id}"}


def providers(**overrides: Any) -> tuple[OAuthProvider, ...]:
    return build_auth_config(make_settings(**overrides)).oauth_providers


def refusal(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        make_settings(**overrides)
    return str(raised.value)


def test_no_provider_is_configured_by_default() -> None:
    config = build_auth_config(make_settings())
    library = AuthConfig(access_token_secret="a", reset_password_secret="b", verify_secret="c")
    assert config.oauth_providers == ()
    assert config.oauth_associate_by_email is library.oauth_associate_by_email is False
    assert config.oauth_timeout_seconds == library.oauth_timeout_seconds == 5.0


def test_an_openid_connect_provider_alone() -> None:
    (provider,) = providers(**OIDC)
    assert provider == OAuthProvider.openid(
        discovery_url=DISCOVERY_URL,
        client_id="roster-oidc",
        client_secret=SecretStr(OIDC_SECRET),
        name="oidc",
        scopes=("openid", "email"),
    )


def test_github_alone() -> None:
    (provider,) = providers(**GITHUB)
    assert provider == OAuthProvider.github(
        client_id="Iv1.roster", client_secret=SecretStr(GITHUB_SECRET)
    )
    assert (provider.name, provider.kind) == ("github", "github")


def test_google_alone() -> None:
    (provider,) = providers(**GOOGLE)
    assert provider == OAuthProvider.google(
        client_id="123.apps.googleusercontent.com", client_secret=SecretStr(GOOGLE_SECRET)
    )
    assert (provider.name, provider.discovery_url) == ("google", GOOGLE_DISCOVERY_URL)


def test_the_three_providers_together_with_the_openid_options() -> None:
    configured = providers(
        **OIDC,
        **GITHUB,
        **GOOGLE,
        oidc_name="corp",
        oidc_scopes=("openid", "email", "profile"),
        oauth_associate_by_email=True,
        oauth_timeout_seconds=2.5,
    )
    assert [(provider.name, provider.kind) for provider in configured] == [
        ("corp", "openid"),
        ("github", "github"),
        ("google", "openid"),
    ]
    assert configured[0].scopes == ("openid", "email", "profile")
    config = build_auth_config(make_settings(**GITHUB, oauth_associate_by_email=True))
    assert config.oauth_associate_by_email is True


def test_the_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("ROSTER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROSTER_ENVIRONMENT", "development")
    monkeypatch.setenv("ROSTER_OIDC_DISCOVERY_URL", "http://localhost:9400/.well-known/x")
    monkeypatch.setenv("ROSTER_OIDC_CLIENT_ID", "roster")
    monkeypatch.setenv("ROSTER_OIDC_CLIENT_SECRET", OIDC_SECRET)
    monkeypatch.setenv("ROSTER_OIDC_SCOPES", "openid, email profile,groups")
    monkeypatch.setenv("ROSTER_OAUTH_ASSOCIATE_BY_EMAIL", "true")
    monkeypatch.setenv("ROSTER_OAUTH_TIMEOUT_SECONDS", "3")
    # Empty, as docker compose passes an unset `${VARIABLE:-}`: not configured.
    monkeypatch.setenv("ROSTER_GITHUB_CLIENT_ID", "")
    monkeypatch.setenv("ROSTER_GITHUB_CLIENT_SECRET", "")
    settings = Settings(_env_file=None)
    assert settings.oidc_scopes == ("openid", "email", "profile", "groups")
    config = build_auth_config(settings)
    (provider,) = config.oauth_providers
    assert (provider.name, provider.client_id, provider.scopes[-1]) == ("oidc", "roster", "groups")
    assert (config.oauth_associate_by_email, config.oauth_timeout_seconds) == (True, 3.0)


@pytest.mark.parametrize(
    ("overrides", "missing", "needed"),
    [
        (
            {"github_client_id": "Iv1.roster"},
            ["ROSTER_GITHUB_CLIENT_SECRET"],
            "ROSTER_GITHUB_CLIENT_ID and ROSTER_GITHUB_CLIENT_SECRET",
        ),
        (
            {"google_client_secret": GOOGLE_SECRET},
            ["ROSTER_GOOGLE_CLIENT_ID"],
            "ROSTER_GOOGLE_CLIENT_ID and ROSTER_GOOGLE_CLIENT_SECRET",
        ),
        (
            {"oidc_discovery_url": DISCOVERY_URL},
            ["ROSTER_OIDC_CLIENT_ID", "ROSTER_OIDC_CLIENT_SECRET"],
            "ROSTER_OIDC_DISCOVERY_URL and ROSTER_OIDC_CLIENT_ID and ROSTER_OIDC_CLIENT_SECRET",
        ),
        (
            {"oidc_client_id": "roster-oidc", "oidc_client_secret": OIDC_SECRET},
            ["ROSTER_OIDC_DISCOVERY_URL"],
            "ROSTER_OIDC_DISCOVERY_URL",
        ),
        (
            # An option without the provider is a forgotten variable, not nothing.
            {"oidc_name": "corp"},
            ["ROSTER_OIDC_DISCOVERY_URL", "ROSTER_OIDC_CLIENT_ID", "ROSTER_OIDC_CLIENT_SECRET"],
            "ROSTER_OIDC_DISCOVERY_URL",
        ),
        (
            {**GITHUB, "google_client_id": "123.apps.googleusercontent.com"},
            ["ROSTER_GOOGLE_CLIENT_SECRET"],
            "ROSTER_GOOGLE_CLIENT_ID and ROSTER_GOOGLE_CLIENT_SECRET",
        ),
    ],
    ids=[
        "github id",
        "google secret",
        "oidc discovery url",
        "oidc id and secret",
        "oidc name",
        "github and google id",
    ],
)
def test_a_partial_provider_is_refused_naming_the_missing_variables(
    overrides: dict[str, Any], missing: list[str], needed: str
) -> None:
    message = refusal(**overrides)
    assert f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set" in message
    assert needed in message


def test_a_partial_provider_is_refused_in_production_too() -> None:
    message = refusal(
        environment="production",
        database_url=UNREACHABLE_DATABASE_URL,
        access_token_secret="Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga-access",
        reset_password_secret="Yp2u6Wa0Kv8Qj1Sm4Gi7Le3Oc5Rb9Fz-reset",
        verify_secret="Xo1t5Vz9Ju7Pi0Rl3Fh6Kd2Nb4Qa8Ey-verify",
        github_client_secret=GITHUB_SECRET,
    )
    assert "ROSTER_GITHUB_CLIENT_ID is not set" in message
    # Not a production-only refusal: development would refuse it as well.
    assert "refusing to start in production" not in message


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"oidc_discovery_url": "http://login.example.com/.well-known/openid-configuration"},
            "the discovery URL must be https (http only on localhost)",
        ),
        ({"oidc_name": "Corp"}, "OAuth provider name 'Corp' must be 1 to 32 lower-case"),
        ({"oidc_name": "cookie"}, "OAuth provider name 'cookie' must be"),
        ({"oidc_scopes": "email profile"}, "scopes must hold 'openid'"),
    ],
    ids=["http off localhost", "upper case name", "reserved name", "no openid scope"],
)
def test_values_roster_auth_refuses_are_refused_by_the_settings(
    overrides: dict[str, Any], reason: str
) -> None:
    message = refusal(**(OIDC | overrides))
    assert "ROSTER_OIDC_NAME, ROSTER_OIDC_DISCOVERY_URL or ROSTER_OIDC_SCOPES is refused" in message
    assert reason in message


def test_a_loopback_discovery_url_over_http_is_accepted() -> None:
    (provider,) = providers(**(OIDC | {"oidc_discovery_url": "http://127.0.0.1:9400/.well-known"}))
    assert provider.discovery_url == "http://127.0.0.1:9400/.well-known"


@pytest.mark.parametrize("name", ["github", "google"])
def test_the_openid_provider_may_not_take_another_providers_name(name: str) -> None:
    message = refusal(**OIDC, **GITHUB, **GOOGLE, oidc_name=name)
    assert f"ROSTER_OIDC_NAME '{name}' is the name of another configured provider" in message


@pytest.mark.parametrize("seconds", [0, -1, 61])
def test_the_timeout_is_bounded_as_roster_auth_bounds_it(seconds: float) -> None:
    assert "oauth_timeout_seconds" in refusal(oauth_timeout_seconds=seconds)


def test_serve_refuses_a_partial_provider_with_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    environment: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("ROSTER_") and "TEST" not in name
    }
    environment |= {
        "ROSTER_ENVIRONMENT": "development",
        "ROSTER_MIGRATIONS_DIR": str(MIGRATIONS_DIR),
        "ROSTER_DATA_DIR": str(tmp_path / "data"),
        "ROSTER_OIDC_DISCOVERY_URL": "http://idp.example/.well-known/openid-configuration",
        "ROSTER_OIDC_CLIENT_ID": "roster",
        "ROSTER_OIDC_CLIENT_SECRET": OIDC_SECRET,
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(cli, ["serve"], env=environment)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "invalid configuration:" in output
    assert "the discovery URL must be https (http only on localhost)" in output
    assert "Traceback" not in output
    # Refused before anything started.
    assert not (tmp_path / "data").exists()


def test_secrets_stay_out_of_the_reprs() -> None:
    settings = make_settings(**OIDC, **GITHUB, **GOOGLE)
    config = build_auth_config(settings)
    for text in (repr(settings), repr(config), repr(config.oauth_providers)):
        for secret in (OIDC_SECRET, GITHUB_SECRET, GOOGLE_SECRET):
            assert secret not in text
    # The client ids are not secrets: they show where the provider is configured.
    assert "roster-oidc" in repr(settings)


def route_names(name: str) -> set[str]:
    """The names of the routes a provider `name` adds (FastAPI Users' naming)."""
    return {
        f"oauth:{name}.jwt.authorize",
        f"oauth:{name}.jwt.callback",
        f"oauth:{name}.cookie.authorize",
        f"oauth:{name}.cookie.callback",
        f"oauth-associate:{name}.authorize",
        f"oauth-associate:{name}.callback",
    }


ACCOUNT_ROUTES: Final = {"users:oauth_accounts", "users:unlink_oauth_account"}


def routes_found(app: FastAPI, names: set[str]) -> dict[str, str]:
    """The path of each route of `names` that the app has."""
    found: dict[str, str] = {}
    for name in names:
        params = {"link_id": "x"} if name == "users:unlink_oauth_account" else {}
        try:
            found[name] = app.url_path_for(name, **params)
        except NoMatchFound:
            continue
    return found


async def test_without_providers_the_app_has_no_provider_routes() -> None:
    app = create_app(make_settings(database_url=UNREACHABLE_DATABASE_URL))
    assert routes_found(app, route_names("oidc") | ACCOUNT_ROUTES) == {}
    schema = set(app.openapi()["paths"])
    assert "/auth/jwt/login" in schema
    assert not {path for path in schema if "oauth" in path or "associate" in path}
    assert OIDC_PATHS.isdisjoint(schema)
    async with serve(app) as client:
        absent = await client.get("/auth/oidc/authorize")
    assert (absent.status_code, absent.json()) == (404, {"detail": "Not Found"})


def test_each_configured_provider_has_its_routes_in_the_app_and_the_schema() -> None:
    app = create_app(
        make_settings(database_url=UNREACHABLE_DATABASE_URL, **OIDC, **GITHUB, **GOOGLE)
    )
    names = route_names("oidc") | route_names("github") | route_names("google") | ACCOUNT_ROUTES
    found = routes_found(app, names)
    assert set(found) == names
    assert found["oauth:oidc.cookie.callback"] == "/auth/oidc/cookie/callback"
    assert found["oauth-associate:google.callback"] == "/auth/associate/google/callback"
    expected = OIDC_PATHS | ACCOUNT_PATHS
    for name in ("github", "google"):
        expected |= {path.replace("oidc", name) for path in OIDC_PATHS}
    assert expected <= set(app.openapi()["paths"])


async def test_a_provider_that_is_down_is_a_503_of_its_own_routes_only() -> None:
    # Nothing listens on port 1 of the loopback: the discovery document cannot be fetched.
    settings = make_settings(
        database_url=UNREACHABLE_DATABASE_URL,
        **(OIDC | {"oidc_discovery_url": "http://127.0.0.1:1/.well-known/openid-configuration"}),
        oauth_timeout_seconds=2,
    )
    async with serve(create_app(settings)) as client:
        down = await client.get("/auth/oidc/authorize")
        # A second request within the retry delay is refused without asking again.
        again = await client.get("/auth/oidc/cookie/authorize")
        live = await client.get("/health/live")
        schema = await client.get("/openapi.json")
    assert (down.status_code, down.json()) == (503, {"detail": "OAUTH_PROVIDER_UNAVAILABLE"})
    assert int(down.headers["retry-after"]) >= 1
    assert (again.status_code, again.json()) == (503, {"detail": "OAUTH_PROVIDER_UNAVAILABLE"})
    assert "set-cookie" not in down.headers
    assert live.status_code == 200
    assert schema.status_code == 200
