"""The benchmark cannot rot: `python -m bench --tiny` runs end to end (migrations, data, roster
and the floor under uvicorn, the Python load generator, the report) on the session's Postgres.

No speed is asserted: only that every scenario was served without an error, that statements
were counted, and that the report was written.
"""

import json
import subprocess
import sys
from pathlib import Path

from roster_db.testkit import PostgresServer

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

    measurements = json.loads(measurements_file.read_text())
    assert {(m["key"], m["app"]) for m in measurements} == {
        ("group-users", "roster"),
        ("group-users", "floor"),
        ("me-jwt", "roster"),
        ("me-jwt", "floor"),
        ("write", "roster"),
    }
    for measurement in measurements:
        label = f"{measurement['key']} on {measurement['app']}"
        assert measurement["load"]["requests"] > 0, label
        assert measurement["load"]["errors"] == 0, label
        # Every one of these requests reads or writes the database at least once.
        assert measurement["statements_per_request"] >= 1, label
        assert measurement["round_trips_per_request"] >= measurement["statements_per_request"]
        assert measurement["rss_mb"] > 0, label

    text = report.read_text()
    assert "| scenario | app | req/s |" in text
    assert "x req/s" in text  # the roster/floor ratio column is filled
    assert "## Targets" in text
