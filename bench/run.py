"""The benchmark, end to end: Postgres, migrations, data, roster, the ceiling and the floor under
uvicorn, load on loopback, one table.

    uv run python -m bench               # full run (about 5 minutes), writes bench/RESULTS.md
    uv run python -m bench --tiny        # about 15 s, small data, writes nothing

See README.md (section "Benchmarks") for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench import dataset, postgres, profiling
from bench.generators import Generator, LoadSettings, RunningLoad, wrk_available
from bench.load import LoadResult
from bench.pinning import plan_cores
from bench.plan import RequestPlan
from bench.report import FLOOD_LOGINS, MIB, Measurement, Report, machine_description
from bench.scenarios import Kind, Scenario, build_scenarios, scenario_keys
from bench.servers import RunningServer, ServerSpec, UvicornOptions, serving

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_RESULTS = BENCH_DIR / "RESULTS.md"
NOTES = BENCH_DIR / "NOTES.md"


@dataclass(frozen=True)
class Mode:
    group_sizes: tuple[int, ...]
    duration_s: float
    warmup_s: float
    connections: int
    scenarios: tuple[str, ...] | None  # None: all of them
    # Requests between adding a member and removing them again (see member_toggle_plan): at
    # 2 * 4096 requests per request timeout (10 s), safe up to about 800 writes per second.
    write_lag: int = 4096
    # login-flood: the 64 anonymous clients at once, each read beside them a modest
    # closed loop, and how long the flood runs alone before the reads are measured (it takes a
    # moment for waiting logins to pile up).
    flood_connections: int = 64
    # The login scenario measures admitted logins: as many connections as one roster process
    # hashes and queues (max_concurrent_password_hashes 1 + max_waiting_password_hashes 4, the
    # defaults); more would measure the queue's 503s, which login-flood does.
    login_connections: int = 5
    probe_connections: int = 4
    flood_lead_s: float = 2


FULL = Mode((10, 100, 1000, 10_000), duration_s=12, warmup_s=2, connections=32, scenarios=None)
# The smoke test's mode: small data, half a second per scenario, the scenarios that use every part
# (the floor, both auth paths' JWT side, the write path, the login flood).
TINY = Mode(
    (10, 100),
    duration_s=0.5,
    warmup_s=0,
    connections=8,
    scenarios=("group-users", "me-jwt", "write", "login-flood"),
    # Half a second never reaches the 2 * 256 requests after which removals start to follow
    # the run's own additions.
    write_lag=256,
    # Still more logins than hashing slots, but few enough that a service which queues them
    # all (today's) gets through them in seconds, not the minute that 64 would take.
    flood_connections=8,
    probe_connections=2,
    flood_lead_s=0.5,
)
# The flood's generator runs niced (see measure_flood).
FLOOD_NICENESS = 10
# How long the server may still be working through a flood's logins after the flood stopped
# (those whose client gave up still run) before the run goes on regardless.
FLOOD_DRAIN_TIMEOUT_S = 120


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small data, 0.5 s per scenario")
    parser.add_argument("--duration", type=float, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each scenario")
    parser.add_argument("--connections", type=int, help="concurrent connections (default 32)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn workers (default 1; with more, SQL/req is not counted)",
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk when installed (auto), or the Python fallback",
    )
    parser.add_argument(
        "--scenarios", help="comma-separated scenario keys (default: all); see --list"
    )
    parser.add_argument("--list", action="store_true", help="list the scenario keys and exit")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(postgres.DATABASE_URL_VARIABLE),
        help=f"a Postgres server to create the bench database on (default: "
        f"${postgres.DATABASE_URL_VARIABLE}, else an embedded Postgres)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="where to write the Markdown report (default: bench/RESULTS.md for a full run, "
        "nowhere for --tiny)",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements as JSON here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring each read or login scenario, sample the server with py-spy "
        "during one more run and write a per-function summary to DIR",
    )
    return parser.parse_args(argv)


def roster_environment(database_url: str, jwt_secret: str) -> dict[str, str]:
    """Production settings, as a deployment gives them, with the access log off: it logs at
    INFO, so WARNING silences it (and the floor has none)."""
    return {
        "ROSTER_ENVIRONMENT": "production",
        "ROSTER_LOG_LEVEL": "WARNING",
        "ROSTER_DATABASE_URL": database_url,
        "ROSTER_ACCESS_TOKEN_SECRET": jwt_secret,
        "ROSTER_RESET_PASSWORD_SECRET": secrets.token_urlsafe(48),
        "ROSTER_VERIFY_SECRET": secrets.token_urlsafe(48),
    }


def ceiling_environment(database_url: str, jwt_secret: str) -> dict[str, str]:
    from bench.ceiling.app import DATABASE_URL_VARIABLE, JWT_SECRET_VARIABLE

    return {DATABASE_URL_VARIABLE: database_url, JWT_SECRET_VARIABLE: jwt_secret}


def floor_environment(dsn: str, jwt_secret: str) -> dict[str, str]:
    from bench.floor.app import DSN_VARIABLE, JWT_SECRET_VARIABLE

    return {DSN_VARIABLE: dsn, JWT_SECRET_VARIABLE: jwt_secret}


async def _load_data(dsn: str, spec: dataset.DatasetSpec, jwt_secret: str) -> dataset.Dataset:
    connection = await asyncpg.connect(dsn)
    try:
        return await dataset.load(connection, spec, jwt_secret)
    finally:
        await connection.close()


def _body(answer: httpx.Response) -> object:
    try:
        return answer.json()
    except ValueError:
        return answer.text


def check_parity(servers: Mapping[str, RunningServer], scenarios: list[Scenario]) -> None:
    """The ceiling and the floor must answer what roster answers, or the comparison means
    nothing."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        for scenario in scenarios:
            apps = scenario.apps()
            if len(apps) < 2:
                continue
            request = scenario.plan.cycle[0]
            answers = [
                client.request(request.method, servers[app].base_url + request.path,
                               headers=request.headers, content=request.body)
                for app in apps
            ]  # fmt: skip
            bodies = [_body(answer) for answer in answers]
            statuses = [answer.status_code for answer in answers]
            totals = [answer.headers.get("x-total-count") for answer in answers]
            # Each app names itself in its links: compare them without the address.
            links = [
                (answer.headers.get("link") or "").replace(servers[app].base_url, "")
                for app, answer in zip(apps, answers, strict=True)
            ]
            for app, body, status, total, link in zip(
                apps[1:], bodies[1:], statuses[1:], totals[1:], links[1:], strict=True
            ):
                if (status, body, total, link) != (200, bodies[0], totals[0], links[0]) or (
                    statuses[0] != 200
                ):
                    raise RuntimeError(
                        f"{servers[app].log_tail()}\n"
                        f"roster and the {app} disagree on {request.method} {request.path}: "
                        f"{statuses[0]} vs {status}, X-Total-Count {totals[0]} vs {total}, "
                        f"Link {links[0]} vs {link}\n"
                        f"roster: {bodies[0]!r:.1500}\n{app}: {body!r:.1500}"
                    )


def measure(
    server: RunningServer, scenario: Scenario, load: LoadSettings, mode: Mode, workers: int
) -> Measurement:
    name = f"{scenario.key}-{server.name}"
    print(f"  {server.name:6} {scenario.title}", file=sys.stderr, flush=True)
    if mode.warmup_s > 0:
        load.run(scenario.warmup_plan, server.port, mode.warmup_s, name + "-warmup")
    before = server.idle_stats()
    result = load.run(scenario.plan, server.port, mode.duration_s, name)
    after = server.idle_stats()
    served = after.requests - before.requests
    if workers > 1:
        # Each worker counts for itself, and two stats requests may reach different workers.
        served = 0
    return Measurement(
        key=scenario.key,
        title=scenario.title,
        kind=scenario.kind,
        app=server.name,
        load=result,
        statements_per_request=(after.statements - before.statements) / served
        if served
        else math.nan,
        round_trips_per_request=(after.round_trips - before.round_trips) / served
        if served
        else math.nan,
        rss_mb=after.rss_bytes / MIB,
    )


def run_together(
    loads: Sequence[tuple[str, LoadSettings, RequestPlan]], port: int, duration_s: float, tag: str
) -> dict[str, LoadResult]:
    """Run several loads at once, each in its own generator process; their results by name."""
    running: dict[str, RunningLoad] = {}
    try:
        for name, settings, plan in loads:
            running[name] = settings.start(plan, port, duration_s, f"{name}-{tag}")
    finally:
        # Wait for every started generator, even when a later one failed to start.
        results = {name: load.wait() for name, load in running.items()}
    return results


def measure_flood(
    server: RunningServer, scenario: Scenario, load: LoadSettings, mode: Mode
) -> list[Measurement]:
    """The reads on their own, then the flood alone for `flood_lead_s`, then the same reads
    beside it: one measurement per read and phase, and one of the flood's logins."""
    print(f"  {server.name:6} {scenario.title}", file=sys.stderr, flush=True)
    # The Python generator for every load here: it times the answers of each status (the 429s
    # and the 503s), and it waits for the requests still unanswered when the duration ends
    # (until they time out), where wrk drops them uncounted: under a flood those are the
    # requests that matter.
    probe_load = replace(load, generator="python", connections=mode.probe_connections)
    # The reads' generators share the load core with the flood's, which is busy when the
    # service refuses logins quickly: niced, it waits while they measure.
    flood_load = replace(
        load, generator="python", connections=mode.flood_connections, niceness=FLOOD_NICENESS
    )
    probes = [(f"{scenario.key}-{probe.key}", probe_load, probe.plan) for probe in scenario.probes]
    if mode.warmup_s > 0:
        run_together(probes, server.port, mode.warmup_s, "warmup")
    server.idle_stats()
    quiet = run_together(probes, server.port, mode.duration_s, "without-flood")
    server.idle_stats()
    flood = flood_load.start(
        scenario.plan, server.port, mode.flood_lead_s + mode.duration_s, scenario.key
    )
    try:
        time.sleep(mode.flood_lead_s)
        beside = run_together(probes, server.port, mode.duration_s, "beside-flood")
    finally:
        logins = flood.wait()
    stopped = time.monotonic()
    try:
        after = server.idle_stats(timeout_s=FLOOD_DRAIN_TIMEOUT_S)
        drain_s = time.monotonic() - stopped
    except RuntimeError:
        after, drain_s = server.stats(), math.inf

    def measurement(part: str, title: str, result: LoadResult, flooded: bool) -> Measurement:
        # Statements are counted per process, and each phase mixes requests of several kinds.
        return Measurement(
            key=scenario.key,
            title=title,
            kind=scenario.kind,
            app=server.name,
            load=result,
            statements_per_request=math.nan,
            round_trips_per_request=math.nan,
            rss_mb=after.rss_bytes / MIB,
            part=part,
            beside_flood=flooded,
            drain_s=drain_s if part == FLOOD_LOGINS else math.nan,
        )

    measurements = [measurement(FLOOD_LOGINS, scenario.title, logins, flooded=True)]
    for probe, (name, _, _) in zip(scenario.probes, probes, strict=True):
        measurements.append(measurement(probe.key, probe.title, quiet[name], flooded=False))
        measurements.append(measurement(probe.key, probe.title, beside[name], flooded=True))
    return measurements


def tool_version(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    lines = (completed.stdout or completed.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = TINY if args.tiny else FULL
    mode = replace(
        base,
        duration_s=args.duration if args.duration is not None else base.duration_s,
        warmup_s=args.warmup if args.warmup is not None else base.warmup_s,
        connections=args.connections or base.connections,
        scenarios=tuple(args.scenarios.split(",")) if args.scenarios else base.scenarios,
    )
    keys = scenario_keys(mode.group_sizes)
    if args.list:
        print("\n".join(keys))
        return 0
    unknown = set(mode.scenarios or ()) - set(keys)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
        return 2
    generator: Generator
    if args.generator == "auto":
        generator = "wrk" if wrk_available() else "python"
    else:
        generator = "wrk" if args.generator == "wrk" else "python"
    if generator == "wrk" and not wrk_available():
        print("wrk is not installed (apt-get install wrk), use --generator python", file=sys.stderr)
        return 2
    cores = plan_cores()
    options = UvicornOptions(workers=args.workers)
    spec = dataset.DatasetSpec(
        group_sizes=mode.group_sizes,
        write_lag=mode.write_lag,
        write_pool_size=2 * mode.write_lag + mode.connections,
    )
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    jwt_secret = secrets.token_urlsafe(48)
    measurements: list[Measurement] = []

    with (
        tempfile.TemporaryDirectory(prefix="roster-bench-") as workdir,
        postgres.postgres_server(args.database_url) as (server_url, source),
    ):
        work = Path(workdir)
        database_url = asyncio.run(postgres.create_database(server_url))
        try:
            roster_env = roster_environment(database_url, jwt_secret)
            dsn = postgres.BenchDatabase(database_url, source).dsn
            specs = [
                ServerSpec("roster", "bench.serve:create_bench_app", roster_env),
                ServerSpec(
                    "ceiling",
                    "bench.ceiling.app:create_app",
                    ceiling_environment(database_url, jwt_secret),
                ),
                ServerSpec(
                    "floor", "bench.floor.app:create_app", floor_environment(dsn, jwt_secret)
                ),
            ]
            # The apps import and start while the database is migrated and filled: neither
            # touches the tables before its first request.
            with serving(specs, options=options, cores=cores.server, log_dir=work) as servers:
                roster = servers[0]
                by_name = {server.name: server for server in servers}
                print("migrating and loading data", file=sys.stderr, flush=True)
                postgres.migrate(roster_env)
                loading = time.monotonic()
                data = asyncio.run(_load_data(dsn, spec, jwt_secret))
                load_seconds = time.monotonic() - loading
                pg_version = asyncio.run(postgres.server_version(dsn))
                scenarios = build_scenarios(data)
                scenarios = [
                    scenario
                    for scenario in scenarios
                    if mode.scenarios is None or scenario.key in mode.scenarios
                ]
                load = LoadSettings(generator, mode.connections, cores.load, work)
                for server in servers:
                    server.wait_until_ready()
                check_parity(by_name, scenarios)
                print(f"running {len(scenarios)} scenarios", file=sys.stderr, flush=True)
                for scenario in scenarios:
                    if scenario.kind is Kind.FLOOD:
                        measurements += measure_flood(roster, scenario, load, mode)
                        continue
                    scenario_load = (
                        replace(load, connections=mode.login_connections)
                        if scenario.kind is Kind.LOGIN
                        else load
                    )
                    for server in (by_name[app] for app in scenario.apps()):
                        measurements.append(
                            measure(server, scenario, scenario_load, mode, options.workers)
                        )
                        if args.profile is not None and scenario.kind is not Kind.WRITE:
                            summary = profiling.profile(
                                server, scenario, load, mode.duration_s, args.profile
                            )
                            print(f"    profile: {summary}", file=sys.stderr, flush=True)
        finally:
            asyncio.run(postgres.drop_database(server_url, database_url))

    load_after = os.getloadavg()
    command = "uv run python -m bench" + (
        " " + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    generator_text = (
        f"{' '.join(tool_version(['wrk', '--version']).split()[:2])}, 1 thread"
        if generator == "wrk"
        else "bench.pyload (Python fallback, asyncio + h11)"
    )
    report = Report(
        measurements,
        context=[
            ("Date", started.strftime("%Y-%m-%d %H:%M UTC")),
            ("Command", f"`{command}`"),
            ("Machine", machine_description()),
            (
                "Load average (1, 5, 15 min)",
                f"{_loadavg(load_before)} before the run; {_loadavg(load_after)} after it "
                "(which counts the run's own server and load generator, about 2)",
            ),
            ("Postgres", f"{pg_version}, {source}"),
            (
                "Server",
                f"{options.describe()}; roster with production settings; the ceiling and "
                "the floor served the same way",
            ),
            ("Cores", cores.describe()),
            (
                "Load",
                f"{generator_text}, {mode.connections} connections "
                f"({mode.login_connections} for the login scenario), "
                f"{mode.duration_s:g} s per scenario after {mode.warmup_s:g} s of warm-up",
            ),
            *(
                [("Login flood", _flood_description(mode))]
                if any(m.kind is Kind.FLOOD for m in measurements)
                else []
            ),
            (
                "Data",
                f"groups of {', '.join(f'{size:,}' for size in mode.group_sizes)} members, "
                f"{data.user_count:,} users, {data.membership_count:,} memberships, "
                f"loaded in {load_seconds:.1f} s",
            ),
        ],
    )
    print(report.text())
    results = args.results or (None if args.tiny else DEFAULT_RESULTS)
    if results is not None:
        notes = [NOTES.read_text()] if NOTES.is_file() and results == DEFAULT_RESULTS else []
        results.write_text(report.markdown("Benchmark results", notes))
        print(f"\nwritten to {results}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([_as_json(m, report) for m in measurements], indent=2))
    return 0


def _loadavg(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _flood_description(mode: Mode) -> str:
    return (
        f"{mode.flood_connections} connections posting logins with unknown emails, alone for "
        f"{mode.flood_lead_s:g} s, then {mode.duration_s:g} s beside {mode.probe_connections} "
        f"connections on each read; the same reads measured for {mode.duration_s:g} s without "
        "the flood just before (after the warm-up); bench.pyload for all of them (it times the "
        "answers of each status and waits for the last requests until they time out, where wrk "
        f"drops them), one process per load, all on the load core, the flood's under "
        f"`nice -n {FLOOD_NICENESS}`"
    )


def _as_json(measurement: Measurement, report: Report) -> Mapping[str, object]:
    data = asdict(measurement)
    data["requests_per_s"] = measurement.load.requests_per_s
    if measurement.kind is Kind.FLOOD and measurement.beside_flood:
        read = report.flood_read(measurement.key, measurement.part)
        if read is not None:
            data["p99_ratio_to_without_flood"] = read.p99_ratio
    return data
