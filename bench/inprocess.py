"""Each app's own cost per request, in one process, with no network and no HTTP parser: the
reads of issue 11 sent straight into the ASGI apps (roster as production builds it, and the
stack-ceiling app), alternating between them round after round, against one Postgres.

What the served benchmark measures is this plus uvicorn's, h11's and the load generator's
share, which each app pays alike; here the apps' difference stands alone, with less noise
(a few seconds per figure, no second core needed), so a change to roster's request path can
be judged in a minute. The figures are microseconds of the event loop per request at the
given concurrency; `--profile` samples roster's rounds with cProfile instead.

`uv run python -m bench.inprocess [--requests N] [--rounds N] [--concurrency N]
[--scenarios KEY,...] [--profile FILE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import sys
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from bench import dataset, postgres
from bench.plan import HttpRequest
from bench.run import ceiling_environment, roster_environment
from bench.scenarios import Kind, build_scenarios

Message = MutableMapping[str, Any]

GROUP_SIZES = (10, 1000, 10_000)


class Lifespan:
    """Runs an ASGI app's lifespan: started on entry, shut down on exit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.state: dict[str, Any] = {}

    async def __aenter__(self) -> Lifespan:
        async def receive() -> Message:
            return await self.to_app.get()

        async def send(message: Message) -> None:
            await self.from_app.put(message)

        scope = {"type": "lifespan", "state": self.state}
        self.task = asyncio.create_task(self.app(scope, receive, send))  # type: ignore[arg-type]
        await self.to_app.put({"type": "lifespan.startup"})
        answer = await self.from_app.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {answer}")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.to_app.put({"type": "lifespan.shutdown"})
        await self.from_app.get()
        assert self.task is not None
        await self.task


def http_scope(request: HttpRequest) -> dict[str, Any]:
    path, _, query = request.path.partition("?")
    headers = [(b"host", b"bench")] + [
        (name.lower().encode(), value.encode()) for name, value in request.headers.items()
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: ASGIApp, request: HttpRequest, state: dict[str, Any]) -> int:
    """One request through the app; its status."""
    scope = http_scope(request)
    scope["state"] = dict(state)
    sent = False
    status = 0

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def postgres_cpu_seconds() -> float:
    """CPU time of every Postgres process on this machine so far (Linux: /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name.startswith("postgres"):
            fields = text[text.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    wall_us: float
    cpu_us: float  # this process's CPU time per request
    postgres_us: float  # Postgres's


async def run_requests(
    app: ASGIApp, request: HttpRequest, state: dict[str, Any], count: int, concurrency: int
) -> Round:
    """Per-request times of `count` requests, `concurrency` at a time; every answer must be
    a 200."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await call(app, request, state)
            if status != 200:
                raise RuntimeError(f"{request.method} {request.path} answered {status}")

    started = time.perf_counter()
    cpu_started = time.process_time()
    postgres_started = postgres_cpu_seconds()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Round(
        (time.perf_counter() - started) / count * 1e6,
        (time.process_time() - cpu_started) / count * 1e6,
        (postgres_cpu_seconds() - postgres_started) / count * 1e6,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per app and scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scenarios", help="comma-separated keys (default: the ceiling's)")
    parser.add_argument("--profile", help="write roster's cProfile statistics here")
    parser.add_argument(
        "--core",
        type=int,
        default=0,
        help="the core this process runs on once Postgres has started (-1: any)",
    )
    return parser.parse_args(argv)


async def measure(args: argparse.Namespace, database_url: str, dsn: str) -> None:
    jwt_secret = secrets.token_urlsafe(48)
    roster_env = roster_environment(database_url, jwt_secret)
    postgres.migrate(roster_env)
    spec = dataset.DatasetSpec(group_sizes=GROUP_SIZES, write_lag=8, write_pool_size=32)
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        data = await dataset.load(connection, spec, jwt_secret)
    finally:
        await connection.close()
    wanted = set(args.scenarios.split(",")) if args.scenarios else None
    scenarios = [
        scenario
        for scenario in build_scenarios(data)
        if scenario.kind is Kind.READ
        and (scenario.key in wanted if wanted is not None else scenario.on_ceiling)
    ]
    # Both apps read their variables in their lifespans too; their names do not overlap.
    os.environ.update(roster_env)
    os.environ.update(ceiling_environment(database_url, jwt_secret))
    from bench.ceiling.app import create_app
    from roster_api.app import create_app_from_environment

    roster = create_app_from_environment()
    ceiling = create_app()
    profiler = cProfile.Profile() if args.profile else None
    async with Lifespan(roster) as roster_life, Lifespan(ceiling) as ceiling_life:
        apps: dict[str, tuple[ASGIApp, dict[str, Any]]] = {
            "roster": (roster, roster_life.state),
            "ceiling": (ceiling, ceiling_life.state),
        }
        print(
            f"{args.requests} requests a round, {args.concurrency} at a time, "
            f"{args.rounds} rounds; microseconds per request (the best round of each): the "
            "time taken, this process's CPU time, Postgres's CPU time; roster, the ceiling, "
            "roster/ceiling"
        )
        print(f"{'scenario':<16} {'wall':^21}   {'python cpu':^21}   {'postgres cpu':^21}")
        for scenario in scenarios:
            request = scenario.plan.cycle[0]
            times: dict[str, list[Round]] = {name: [] for name in apps}
            for app, state in apps.values():  # warm-up
                await run_requests(app, request, state, args.requests // 4, args.concurrency)
            for _ in range(args.rounds):
                for name, (app, state) in apps.items():
                    if profiler is not None and name == "roster":
                        profiler.enable()
                    measured = await run_requests(
                        app, request, state, args.requests, args.concurrency
                    )
                    if profiler is not None and name == "roster":
                        profiler.disable()
                    times[name].append(measured)
            columns = []
            for field in ("wall_us", "cpu_us", "postgres_us"):
                roster_us = min(getattr(r, field) for r in times["roster"])
                ceiling_us = min(getattr(r, field) for r in times["ceiling"])
                # A short round may see no Postgres CPU tick (1/100 s) at all.
                ratio = f"{roster_us / ceiling_us:5.2f}" if ceiling_us else "    -"
                columns.append(f"{roster_us:7.0f} {ceiling_us:7.0f} {ratio}")
            print(f"{scenario.key:<16} " + "   ".join(columns), flush=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with postgres.postgres_server(os.environ.get(postgres.DATABASE_URL_VARIABLE)) as (url, _):
        database_url = asyncio.run(postgres.create_database(url))
        try:
            dsn = postgres.BenchDatabase(database_url, "").dsn
            if args.core >= 0:
                # Postgres, started before, keeps every core.
                os.sched_setaffinity(0, {args.core})
            try:
                import uvloop
            except ImportError:  # the stdlib loop is slower but works (as bench.pyload)
                asyncio.run(measure(args, database_url, dsn))
            else:
                uvloop.run(measure(args, database_url, dsn))
        finally:
            asyncio.run(postgres.drop_database(url, database_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
