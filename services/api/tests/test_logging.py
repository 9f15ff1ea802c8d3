"""Logs: one JSON object a line in production, structured fields kept, secrets blanked, and
access lines without query strings; an unhandled error's traceback without frame locals."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any, Final

import pytest
from fastapi import Request

from roster_api.app import create_app
from roster_api.logging import REDACTED, build_formatter, configure_logging
from roster_api.settings import LogFormat
from roster_auth.testing import config_for_tests

from .conftest import UNREACHABLE_DATABASE_URL, make_settings, serve

# Values that must never reach a log line, whatever the format.
CANARY_PASSWORD: Final = "canary-password-4f0c1e9a"
CANARY_COOKIE: Final = "canary-cookie-8d2e41b7"
CANARY_TOKEN: Final = "canary-bearer-3b9a77c5"
CANARIES: Final = (CANARY_PASSWORD, CANARY_COOKIE, CANARY_TOKEN)
PRODUCTION_SECRETS: Final = {
    "access_token_secret": "Zq3v7Xb1Lw9Rk2Tn5Hj8Mf4Pd6Sc0Ga-access",
    "reset_password_secret": "Yp2u6Wa0Kv8Qj1Sm4Gi7Le3Oc5Rb9Fz-reset",
    "verify_secret": "Xo1t5Vz9Ju7Pi0Rl3Fh6Kd2Nb4Qa8Ey-verify",
}


def render(record: logging.LogRecord, log_format: LogFormat = LogFormat.JSON) -> str:
    return build_formatter(log_format).format(record)


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("roster_api.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_level_logger_time_and_fields() -> None:
    line = render(make_record("user %s registered", "u-1", path="/auth/register", status=201))
    assert "\n" not in line
    event = json.loads(line)
    assert event["event"] == "user u-1 registered"
    assert event["level"] == "info"
    assert event["logger"] == "roster_api.test"
    assert event["timestamp"].endswith("Z")
    assert (event["path"], event["status"]) == ("/auth/register", 201)


def test_fields_named_like_secrets_are_blanked() -> None:
    event = json.loads(
        render(make_record("login", password="hunter2-hunter2", access_token="eyJ.x.y", user="u"))
    )
    assert event["password"] == REDACTED
    assert event["access_token"] == REDACTED
    assert event["user"] == "u"


@pytest.mark.parametrize("name", ["httpx", "httpcore"])
def test_the_providers_http_client_stays_quiet_even_at_debug(name: str) -> None:
    # httpcore's debug lines carry request headers: a provider's access token, a client secret.
    try:
        configure_logging("DEBUG", LogFormat.JSON)
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("roster_auth").getEffectiveLevel() == logging.DEBUG
    finally:
        configure_logging("INFO", LogFormat.CONSOLE)


def test_a_traceback_stays_inside_one_json_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord(
            "roster_api.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = render(record)
    assert "\n" not in line
    assert json.loads(line)["exception"][0]["exc_type"] == "ValueError"


def test_development_lines_are_plain_text() -> None:
    line = render(make_record("started", port=8000), LogFormat.CONSOLE)
    assert "started" in line
    assert "port" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_the_access_log_leaves_out_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(
        make_settings(database_url=UNREACHABLE_DATABASE_URL), auth_config=config_for_tests()
    )
    with caplog.at_level(logging.INFO, logger="roster_api.access"):
        async with serve(app) as client:
            response = await client.get("/health/live?token=very-secret-reset-token")
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "roster_api.access"]
    event = json.loads(render(record))
    assert (event["method"], event["path"], event["status"]) == ("GET", "/health/live", 200)
    assert event["duration_ms"] >= 0
    assert "very-secret-reset-token" not in json.dumps(event)


async def test_above_info_the_access_log_is_silent_and_answers_are_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(
        make_settings(database_url=UNREACHABLE_DATABASE_URL), auth_config=config_for_tests()
    )
    with caplog.at_level(logging.WARNING, logger="roster_api.access"):
        async with serve(app) as client:
            live = await client.get("/health/live")
            missing = await client.get("/no-such-route")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert missing.status_code == 404
    assert [r for r in caplog.records if r.name == "roster_api.access"] == []


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restored_root_logger")
@pytest.mark.parametrize("log_format", list(LogFormat))
@pytest.mark.parametrize("body_kind", ["form", "json"])
async def test_an_unhandled_error_logs_its_traceback_without_the_requests_secrets(
    log_format: LogFormat, body_kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service in production, with its own log configuration, answers a request carrying
    a password, a session cookie and a bearer token with an unhandled error, while the
    raising frame holds all three in local variables: the log has the traceback, no secret."""
    auth_config = config_for_tests()
    settings = make_settings(
        environment="production",
        database_url=UNREACHABLE_DATABASE_URL,
        log_format=log_format,
        **PRODUCTION_SECRETS,
    )
    app = create_app(settings, auth_config=auth_config)

    @app.post("/test-only/explode")
    async def explode(request: Request) -> None:
        body: Any = await request.form() if body_kind == "form" else await request.json()
        password = body["password"]
        cookie = request.cookies[auth_config.cookie_name]
        authorization = request.headers["authorization"]
        raise RuntimeError(f"failed with {len(password) + len(cookie) + len(authorization)}")

    # What `roster serve` configures, writing to stderr (captured here).
    configure_logging("INFO", log_format)
    capsys.readouterr()
    body = {"username": "someone@example.com", "password": CANARY_PASSWORD}
    async with serve(app) as client:
        response = await client.post(
            "/test-only/explode",
            data=body if body_kind == "form" else None,
            json=body if body_kind == "json" else None,
            headers={
                "Authorization": f"Bearer {CANARY_TOKEN}",
                "Cookie": f"{auth_config.cookie_name}={CANARY_COOKIE}",
            },
        )
    log = capsys.readouterr().err

    assert response.status_code == 500
    # The traceback is there, down to the raising frame...
    assert "unhandled error" in log
    assert "RuntimeError" in log
    assert "explode" in log
    if log_format is LogFormat.JSON:
        [event] = [
            json.loads(line)
            for line in log.splitlines()
            if json.loads(line)["event"] == "unhandled error"
        ]
        [exception] = event["exception"]
        assert exception["exc_type"] == "RuntimeError"
        assert exception["frames"][-1]["name"] == "explode"
    # ...and none of what the request carried.
    leaked = [canary for canary in CANARIES if canary in log]
    assert leaked == []
