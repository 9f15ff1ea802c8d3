"""The apps under test, each served by uvicorn in its own process on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.counting import STATS_PATH
from bench.pinning import pinned

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServerStats:
    requests: int
    in_flight: int
    statements: int
    round_trips: int
    rss_bytes: int


def _production_default(name: str) -> Any:
    """The default of one of roster's settings: what `roster serve` gives uvicorn."""
    from roster_api.settings import Settings

    return Settings.model_fields[name].default


@dataclass(frozen=True)
class UvicornOptions:
    """How uvicorn serves every app of the run, the same for each: `roster serve`'s own
    connection options (its defaults: h11, `limit_concurrency`, keep-alive timeout, h11's
    incomplete-event bound; see `roster_api.cli.connection_options`), on uvloop, with no
    access log and one worker per process. The apps are compared as production serves roster:
    the HTTP parser is a cost every app pays alike, so it moves the absolute figures, not
    what roster's layers cost relative to the others."""

    workers: int = 1
    loop: str = "uvloop"
    http: str = field(default_factory=lambda: str(_production_default("http_parser")))
    limit_concurrency: int = field(
        default_factory=lambda: int(_production_default("limit_concurrency"))
    )
    timeout_keep_alive_s: int = field(
        default_factory=lambda: int(_production_default("timeout_keep_alive_seconds"))
    )
    h11_max_incomplete_event_size: int = field(
        default_factory=lambda: int(_production_default("h11_max_incomplete_event_size"))
    )

    def arguments(self) -> list[str]:
        return [
            "--workers", str(self.workers),
            "--loop", self.loop, "--http", self.http,
            "--limit-concurrency", str(self.limit_concurrency),
            "--timeout-keep-alive", str(self.timeout_keep_alive_s),
            "--h11-max-incomplete-event-size", str(self.h11_max_incomplete_event_size),
            "--no-access-log",
        ]  # fmt: skip

    def describe(self) -> str:
        return (
            f"uvicorn, {self.workers} worker(s), --loop {self.loop} --http {self.http} "
            f"--limit-concurrency {self.limit_concurrency} --timeout-keep-alive "
            f"{self.timeout_keep_alive_s} (roster serve's defaults), --no-access-log"
        )


@dataclass
class RunningServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stats(self) -> ServerStats:
        with httpx.Client(trust_env=False, timeout=10) as client:
            response = client.get(self.base_url + STATS_PATH)
        response.raise_for_status()
        data = response.json()
        return ServerStats(
            requests=int(data["requests"]),
            in_flight=int(data["in_flight"]),
            statements=int(data["statements"]),
            round_trips=int(data["round_trips"]),
            rss_bytes=int(data["rss_bytes"]),
        )

    def idle_stats(self, timeout_s: float = 30.0) -> ServerStats:
        """The counters once no request is in flight (those the load generator left behind
        when it stopped still run their statements)."""
        deadline = time.monotonic() + timeout_s
        stats = self.stats()
        while stats.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats()
        if stats.in_flight > 0:
            raise RuntimeError(f"{self.name} still has {stats.in_flight} requests in flight")
        return stats

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode} while starting:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.base_url + STATS_PATH).status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout_s} s:\n" + self.log_tail())

    def terminate(self) -> None:
        """Ask the server to shut down (uvicorn finishes what it is serving)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Shut down and wait for the process to end, killing it if it takes too long."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServerSpec:
    name: str
    factory: str  # "module:function" that builds the ASGI app
    env: Mapping[str, str]


def _start(
    spec: ServerSpec, options: UvicornOptions, cores: tuple[int, ...] | None, log_dir: Path
) -> RunningServer:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", spec.factory, "--factory",
        "--host", HOST, "--port", str(port),
        *options.arguments(), "--log-level", "warning",
    ]  # fmt: skip
    log_path = log_dir / f"{spec.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(command, cores),
            cwd=REPO_ROOT,
            env={**os.environ, **spec.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return RunningServer(spec.name, port, process, log_path, command)


@contextlib.contextmanager
def serving(
    specs: Sequence[ServerSpec],
    *,
    options: UvicornOptions,
    cores: tuple[int, ...] | None,
    log_dir: Path,
) -> Iterator[list[RunningServer]]:
    """Start every app at once (they start while the caller prepares the database; call
    `wait_until_ready` before using one) and stop them all at the end of the block."""
    servers: list[RunningServer] = []
    try:
        for spec in specs:
            servers.append(_start(spec, options, cores, log_dir))
        yield servers
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()
