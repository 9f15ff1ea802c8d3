"""Settings: the environment in, and production refusing what would be unsafe, naming the
variable to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from roster_api.app import build_auth_config, build_invitation_config
from roster_api.settings import (
    DEVELOPMENT_SECRETS,
    Environment,
    LogFormat,
    Settings,
    variable_name,
)

from .conftest import make_settings

GOOD_SECRETS = {
    "access_token_secret": "Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga-access",
    "reset_password_secret": "Yp2u6Wa0Kv8Qj1Sm4Gi7Le3Oc5Rb9Fz-reset",
    "verify_secret": "Xo1t5Vz9Ju7Pi0Rl3Fh6Kd2Nb4Qa8Ey-verify",
}
PRODUCTION_URL = "postgresql+asyncpg://roster:pw@db.internal:5432/roster"


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "production",
        "database_url": PRODUCTION_URL,
        "log_format": None,
        **GOOD_SECRETS,
    }
    values.update(overrides)
    return make_settings(**values)


def refusal(**overrides: object) -> str:
    with pytest.raises(ValidationError) as raised:
        production(**overrides)
    return str(raised.value)


def test_production_accepts_strong_distinct_secrets() -> None:
    settings = production()
    assert settings.is_production
    assert settings.uses_development_secrets() == []
    assert settings.resolved_log_format is LogFormat.JSON


def test_production_refuses_missing_secrets_and_url_naming_each_variable() -> None:
    message = refusal(
        database_url=None, access_token_secret=None, reset_password_secret=None, verify_secret=None
    )
    for variable in (
        "ROSTER_DATABASE_URL",
        "ROSTER_ACCESS_TOKEN_SECRET",
        "ROSTER_RESET_PASSWORD_SECRET",
        "ROSTER_VERIFY_SECRET",
    ):
        assert variable in message


def test_production_refuses_a_short_secret() -> None:
    message = refusal(verify_secret="x" * 31)
    assert "ROSTER_VERIFY_SECRET is shorter than 32 bytes" in message
    assert "ROSTER_ACCESS_TOKEN_SECRET" not in message


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("é" * 16, True), ("é" * 15 + "x", False)],
    ids=["16 characters, 32 bytes", "16 characters, 31 bytes"],
)
def test_a_secrets_length_is_counted_in_bytes(value: str, accepted: bool) -> None:
    # The HS256 key is the secret's UTF-8 bytes.
    if accepted:
        assert production(verify_secret=value).verify_secret is not None
    else:
        assert "ROSTER_VERIFY_SECRET is shorter than 32 bytes" in refusal(verify_secret=value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"access_token_secret": "short"}, "ROSTER_ACCESS_TOKEN_SECRET is shorter than 32 bytes"),
        ({"verify_secret": "   "}, "ROSTER_VERIFY_SECRET is empty"),
        (
            {"access_token_secret": "s" * 40, "reset_password_secret": "s" * 40},
            "ROSTER_RESET_PASSWORD_SECRET has the same value as ROSTER_ACCESS_TOKEN_SECRET",
        ),
    ],
)
def test_development_refuses_a_weak_secret_it_is_given(
    overrides: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        make_settings(**overrides)
    assert problem in str(raised.value)
    assert "production" not in str(raised.value)


def test_development_takes_a_placeholder_it_is_given() -> None:
    settings = make_settings(access_token_secret="changeme-changeme-changeme-changeme")
    assert settings.uses_development_secrets() == [
        "ROSTER_RESET_PASSWORD_SECRET",
        "ROSTER_VERIFY_SECRET",
    ]


@pytest.mark.parametrize(
    "placeholder",
    [
        "changeme-changeme-changeme-changeme",
        "please-replace-me-with-a-real-secret-value",
        DEVELOPMENT_SECRETS["access_token_secret"],
    ],
)
def test_production_refuses_placeholders(placeholder: str) -> None:
    message = refusal(access_token_secret=placeholder)
    assert "ROSTER_ACCESS_TOKEN_SECRET is a placeholder value" in message


def test_production_refuses_one_secret_for_two_purposes() -> None:
    message = refusal(verify_secret=GOOD_SECRETS["access_token_secret"])
    assert "ROSTER_VERIFY_SECRET has the same value as ROSTER_ACCESS_TOKEN_SECRET" in message


def test_development_runs_on_marked_development_secrets() -> None:
    settings = make_settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.uses_development_secrets() == [
        "ROSTER_ACCESS_TOKEN_SECRET",
        "ROSTER_RESET_PASSWORD_SECRET",
        "ROSTER_VERIFY_SECRET",
    ]
    value = settings.secret("access_token_secret").get_secret_value()
    assert value.startswith("development-")
    assert len(value) >= 32
    assert settings.resolved_log_format is LogFormat.CONSOLE


def without_roster_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("ROSTER_"):
            monkeypatch.delenv(name)


def test_production_is_the_default_and_development_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_roster_variables(monkeypatch)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    message = str(raised.value)
    assert "refusing to start in production" in message
    assert "ROSTER_ACCESS_TOKEN_SECRET is not set" in message
    assert "set ROSTER_ENVIRONMENT=development" in message

    monkeypatch.setenv("ROSTER_DATABASE_URL", PRODUCTION_URL)
    for name, value in GOOD_SECRETS.items():
        monkeypatch.setenv(variable_name(name), value)
    assert Settings(_env_file=None).is_production
    monkeypatch.setenv("ROSTER_ENVIRONMENT", "development")
    assert Settings(_env_file=None).environment is Environment.DEVELOPMENT


def test_environment_variables_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSTER_ENVIRONMENT", "development")
    monkeypatch.setenv("ROSTER_DATABASE_URL", "postgresql://u:p@h:5432/d")
    monkeypatch.setenv("ROSTER_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ROSTER_MAX_BODY_SIZE", "2048")
    monkeypatch.setenv("ROSTER_LOG_LEVEL", "debug")
    settings = Settings(_env_file=None)
    # Hosting providers hand out postgresql:// URLs; roster talks asyncpg.
    assert settings.database_url_value() == "postgresql+asyncpg://u:p@h:5432/d"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.max_body_size == 2048
    assert settings.log_level == "DEBUG"


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = production()
    text = repr(settings)
    assert GOOD_SECRETS["access_token_secret"] not in text
    assert "pw@db.internal" not in text


def test_the_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [
        variable_name(field)
        for field in Settings.model_fields
        if f"`{variable_name(field)}`" not in table
    ]
    assert missing == []


def test_invitation_settings_reach_the_groups_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROSTER_INVITATION_LIFETIME_SECONDS", "3600")
    monkeypatch.setenv("ROSTER_INVITATION_ACCEPT_PATH", "/welcome")
    monkeypatch.setenv("ROSTER_PUBLIC_BASE_URL", "https://people.example")
    settings = make_settings()
    auth_config = build_auth_config(settings)
    config = build_invitation_config(settings, auth_config)
    assert (config.lifetime_seconds, config.accept_path) == (3600, "/welcome")
    assert config.public_base_url == "https://people.example"
    # The same mailer as every other mail.
    assert config.mailer is auth_config.mailer

    monkeypatch.delenv("ROSTER_INVITATION_LIFETIME_SECONDS")
    monkeypatch.delenv("ROSTER_INVITATION_ACCEPT_PATH")
    defaults = make_settings()
    assert defaults.invitation_lifetime_seconds == 7 * 24 * 3600
    assert defaults.invitation_accept_path == "/invitations/accept"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("invitation_lifetime_seconds", 0),
        ("invitation_lifetime_seconds", -5),
        ("invitation_accept_path", "invitations/accept"),
        ("invitation_accept_path", "https://elsewhere.example/accept"),
    ],
)
def test_bad_invitation_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        make_settings(**{field: value})
    assert field in str(raised.value)
