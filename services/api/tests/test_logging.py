"""Logs: one JSON object a line in production, structured fields kept, secrets blanked, and
access lines without query strings."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from roster_api.app import create_app
from roster_api.logging import REDACTED, build_formatter
from roster_api.settings import LogFormat
from roster_auth.testing import config_for_tests

from .conftest import UNREACHABLE_DATABASE_URL, make_settings, serve


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
