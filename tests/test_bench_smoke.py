"""The benchmark cannot rot: `python -m bench --tiny` runs end to end (migrations, data, roster
and the floor under uvicorn, the Python load generator, the login flood, the report) on the
session's Postgres.

No speed is asserted: only that every scenario was served without an error, that statements
were counted, that the flood and its reads were measured and reported, and that the report was
written. Whether the service holds under the flood is the report's verdict, not the test's.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from roster_db.testing import PostgresServer

pytest_plugins = ["roster_db.testing"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_tiny_benchmark_serves_every_scenario_without_errors(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    report = tmp_path / "RESULTS.md"
    measurements_file = tmp_path / "measurements.json"
    command = [
        sys.executable, "-m", "bench", "--tiny", "--generator", "python",
        "--database-url", postgres_server.url,
        "--results", str(report), "--json", str(measurements_file),
    ]  # fmt: skip
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]

    measurements: list[dict[str, Any]] = json.loads(measurements_file.read_text())
    assert [(m["key"], m["app"], m["part"], m["beside_flood"]) for m in measurements] == [
        ("group-users", "roster", "", False),
        ("group-users", "floor", "", False),
        ("me-jwt", "roster", "", False),
        ("me-jwt", "floor", "", False),
        ("write", "roster", "", False),
        ("login-flood", "roster", "logins", True),
        ("login-flood", "roster", "me-jwt", False),
        ("login-flood", "roster", "me-jwt", True),
        ("login-flood", "roster", "health-ready", False),
        ("login-flood", "roster", "health-ready", True),
    ]
    for measurement in measurements:
        if measurement["kind"] == "flood":
            continue
        label = f"{measurement['key']} on {measurement['app']}"
        assert measurement["load"]["requests"] > 0, label
        assert measurement["load"]["errors"] == 0, label
        # Every one of these requests reads or writes the database at least once.
        assert measurement["statements_per_request"] >= 1, label
        assert measurement["round_trips_per_request"] >= measurement["statements_per_request"]
        assert measurement["rss_mb"] > 0, label

    logins, *reads = (m for m in measurements if m["kind"] == "flood")
    answers = logins["load"]["statuses"]
    unanswered = {k: n for k, n in logins["load"]["error_kinds"].items() if not k.isdigit()}
    assert sum(answers.values()) + sum(unanswered.values()) > 0
    # Unknown emails are never let in, and the form is one the login route accepts (a 422 would
    # mean the scenario no longer measures logins).
    assert set(answers) <= {"400", "429", "503"}, answers
    assert set(logins["load"]["status_p99_ms"]) == set(answers)
    assert set(unanswered) <= {"timeout", "socket"}, unanswered
    for read in reads:
        label = f"{read['part']}, beside the flood: {read['beside_flood']}"
        assert read["title"].startswith("GET /"), label
        if read["beside_flood"]:
            assert read["load"]["requests"] + read["load"]["errors"] > 0, label
            assert "p99_ratio_to_without_flood" in read, label
        else:
            assert read["load"]["requests"] > 0, label
            assert read["load"]["errors"] == 0, label

    text = report.read_text()
    assert "| scenario | app | req/s |" in text
    assert "x req/s" in text  # the roster/floor ratio column is filled
    assert "## Login flood (`login-flood`)" in text
    assert "| GET /users/me, JWT | " in text
    assert "| GET /health/ready | " in text
    assert "| POST /auth/jwt/login, unknown emails (the flood) | " in text
    assert "## Targets" in text
    assert "beside the login flood: zero errors" in text
    assert "refused with 429 or 503 within 1 s" in text
