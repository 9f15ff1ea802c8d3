"""The benchmark cannot rot: `python -m bench --tiny` runs end to end (migrations, data, roster,
the ceiling and the floor under uvicorn, the Python load generator, the login flood, the
report) on the session's Postgres.

No speed is asserted: only that every scenario was served without an error, that statements
were counted, that the flood and its reads were measured and reported, and that the report was
written. Whether the service holds under the flood is the report's verdict, not the test's; the
last tests check those verdicts on made-up figures.
"""

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from roster_db.testkit import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
# bench/ is tooling at the repository's root, not an installed package: `python -m bench` finds it
# from there, and so do the report's unit tests below.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.generators import wrk_script  # noqa: E402
from bench.load import LoadResult  # noqa: E402
from bench.plan import RANDOM_TOKEN, HttpRequest, RequestPlan  # noqa: E402
from bench.report import FLOOD_LOGINS, Measurement, Report  # noqa: E402
from bench.scenarios import Kind  # noqa: E402

pytest_plugins = ["roster_db.testing"]


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
        ("group-users", "ceiling", "", False),
        ("group-users", "floor", "", False),
        ("me-jwt", "roster", "", False),
        ("me-jwt", "ceiling", "", False),
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
    assert "| roster/ceiling | roster/floor |" in text
    assert "x req/s" in text  # the ratio columns are filled
    assert "the ceiling's req/s" in text
    assert "## Login flood (`login-flood`)" in text
    assert "| GET /users/me, JWT | " in text
    assert "| GET /health/ready | " in text
    assert "| POST /auth/jwt/login, unknown emails (the flood) | " in text
    assert "## Targets" in text
    assert "beside the login flood: zero errors" in text
    assert "refused with 429 or 503 within 1 s" in text


def _load(
    p99_ms: float,
    statuses: dict[str, int],
    p99_by_status: dict[str, float] | None = None,
    failed: dict[str, int] | None = None,
) -> LoadResult:
    errors = {s: n for s, n in statuses.items() if not s.startswith("2")} | (failed or {})
    return LoadResult(
        requests=sum(statuses.values()), errors=sum(errors.values()), duration_s=1.0,
        p50_ms=p99_ms / 2, p99_ms=p99_ms, error_kinds=errors, statuses=statuses,
        status_p99_ms=p99_by_status or {},
    )  # fmt: skip


STEADY_READ = (_load(10.0, {"200": 500}), _load(25.0, {"200": 400}))
FAST_REFUSALS = _load(
    20.0, {"400": 30, "429": 900, "503": 40}, {"400": 900.0, "429": 15.0, "503": 5.0}
)


def _flood_verdicts(logins: LoadResult, reads: tuple[LoadResult, LoadResult]) -> tuple[bool, bool]:
    """(the read's verdict, the logins' verdict) for one flood of these figures."""

    def measurement(part: str, load: LoadResult, beside: bool) -> Measurement:
        return Measurement(
            "login-flood", "GET /users/me, JWT", Kind.FLOOD, "roster", load,
            math.nan, math.nan, 100.0, part, beside,
        )  # fmt: skip

    report = Report(
        [
            measurement(FLOOD_LOGINS, logins, beside=True),
            measurement("me-jwt", reads[0], beside=False),
            measurement("me-jwt", reads[1], beside=True),
        ]
    )
    read, login = (v.met for v in report.verdicts() if "flood" in v.target)
    return read, login


def test_flood_targets_are_met_by_fast_refusals_beside_steady_reads() -> None:
    assert _flood_verdicts(FAST_REFUSALS, STEADY_READ) == (True, True)


@pytest.mark.parametrize(
    "beside",
    [
        pytest.param(_load(7000.0, {"200": 4}), id="waiting-for-the-pool"),
        pytest.param(_load(25.0, {"200": 400, "503": 1}), id="an-error"),
        pytest.param(_load(math.nan, {}, failed={"timeout": 4}), id="no-answer-at-all"),
        # What wrk reports when every request outlasts its run: nothing, not even an error,
        # and 0 ms for every percentile.
        pytest.param(_load(0.0, {}), id="nothing-counted"),
    ],
)
def test_a_read_misses_its_flood_target(beside: LoadResult) -> None:
    assert _flood_verdicts(FAST_REFUSALS, (STEADY_READ[0], beside)) == (False, True)


@pytest.mark.parametrize(
    "logins",
    [
        pytest.param(
            _load(9000.0, {"400": 95}, {"400": 9900.0}, failed={"timeout": 17}), id="queued"
        ),
        pytest.param(_load(900.0, {"400": 95}, {"400": 950.0}), id="none-refused"),
        pytest.param(_load(20.0, {"429": 900}, {"429": 1500.0}), id="slow-refusals"),
        pytest.param(
            _load(20.0, {"429": 900}, {"429": 15.0}, failed={"timeout": 1}), id="a-timeout"
        ),
        pytest.param(_load(20.0, {"429": 900, "500": 1}, {"429": 15.0, "500": 3.0}), id="a-500"),
        pytest.param(_load(20.0, {"429": 900}), id="refusals-not-timed"),
    ],
)
def test_the_logins_miss_their_flood_target(logins: LoadResult) -> None:
    assert _flood_verdicts(logins, STEADY_READ) == (True, False)


def test_random_tokens_get_fresh_values_on_every_send() -> None:
    request = HttpRequest(
        "POST", "/auth/jwt/login", body=f"u={RANDOM_TOKEN}&p={RANDOM_TOKEN}".encode()
    )
    bodies = {request.body_to_send() for _ in range(100)}
    assert len(bodies) == 100
    for body in bodies:
        user, password = (part.split(b"=")[1] for part in body.split(b"&"))
        assert user != password
        assert len(user) == len(password) == 16
        assert set(user + password) <= set(b"0123456789abcdef")


def _read(app: str, requests_per_s: float, p99_ms: float, errors: int = 0) -> Measurement:
    load = LoadResult(
        requests=int(requests_per_s), errors=errors, duration_s=1.0, p50_ms=p99_ms / 2,
        p99_ms=p99_ms, error_kinds={"500": errors} if errors else {}, statuses={},
        status_p99_ms={},
    )  # fmt: skip
    return Measurement("me-jwt", "GET /users/me, JWT", Kind.READ, app, load, 1.0, 1.0, 100.0)


@pytest.mark.parametrize(
    ("roster", "met"),
    [
        pytest.param(_read("roster", 900.0, 15.0), True, id="at-0.9x-and-1.5x"),
        pytest.param(_read("roster", 899.0, 10.0), False, id="too-slow"),
        pytest.param(_read("roster", 1000.0, 15.1), False, id="p99-too-high"),
        pytest.param(_read("roster", 1000.0, 10.0, errors=1), False, id="an-error"),
    ],
)
def test_the_ceiling_target_needs_0_9x_its_throughput_and_1_5x_its_p99(
    roster: Measurement, met: bool
) -> None:
    report = Report([roster, _read("ceiling", 1000.0, 10.0)])
    (verdict,) = (v for v in report.verdicts() if "the ceiling's" in v.target)
    assert verdict.met is met
    assert report.ratio_to(roster, "ceiling") == (
        f"{roster.load.requests_per_s / 1000:.2f}x req/s, {roster.load.p99_ms / 10:.2f}x p99"
    )


def test_wrk_requests_carry_a_host_header() -> None:
    """h11, roster serve's parser, answers 400 to an HTTP/1.1 request without one."""
    script = wrk_script(RequestPlan.repeat(HttpRequest("GET", "/users/me")))
    assert '["Host"] = "127.0.0.1"' in script


def _members(key: str, p50_ms: float) -> Measurement:
    load = LoadResult(
        requests=100, errors=0, duration_s=1.0, p50_ms=p50_ms, p99_ms=2 * p50_ms,
        error_kinds={}, statuses={}, status_p99_ms={},
    )  # fmt: skip
    return Measurement(key, f"members ({key})", Kind.READ, "roster", load, 1.0, 1.0, 100.0)


def test_flatness_is_judged_against_the_smallest_full_page_and_by_cursor() -> None:
    """A 10-member page has a fifth of a full page's rows, so it is no baseline; the offset's
    deep page walks what it skips, so the cursor's deep page is the one judged."""
    report = Report(
        [
            _members("members-10", 10.0),
            _members("members-100", 20.0),
            _members("members-10000", 26.0),
            _members("members-deep", 60.0),
            _members("members-deep-cursor", 27.0),
        ]
    )
    flatness = {
        v.target.rsplit("(", 1)[-1]: v.met for v in report.verdicts() if "full page" in v.target
    }
    assert flatness == {
        "members-10)": True,
        "members-10000)": True,
        "members-deep-cursor)": False,
    }
    assert all(
        "(members (members-100))" in v.target for v in report.verdicts() if "full page" in v.target
    )
