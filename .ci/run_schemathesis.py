"""Schemathesis against the running service: start `roster serve` on a fresh embedded Postgres,
sign two users in, run `st run` on /openapi.json in a few passes, stop the server.

    uv run python .ci/run_schemathesis.py          # the full run: every check, no time bound
    uv run python .ci/run_schemathesis.py --checks not_a_server_error --max-time 60  # CI

Exits non-zero when a pass finds anything, when the server logs an unhandled error, or when the
server does not come up. Deliberate answers (a weak password's 400, ...) are configured, with
their reasons, in .ci/schemathesis.toml; the passes are below.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
CONFIG: Final = ROOT / ".ci" / "schemathesis.toml"
PHASES: Final = "examples,coverage,fuzzing,stateful"
ADMIN_EMAIL: Final = "st-admin@example.com"
MEMBER_EMAIL: Final = "st-member@example.com"
READY_TIMEOUT_SECONDS: Final = 180.0
STOP_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Pass:
    """One `st run`: the operations it covers (schemathesis operation names, "METHOD /path"),
    whose token it sends, and its share of a `--max-time` budget."""

    name: str
    user: str  # "admin" or "member"
    share: float
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


# Operations that can lock the signed-in user out run apart from the rest, where they can only
# reach users they create: a superuser that deletes, deactivates or demotes itself, or changes
# its password or email, would turn every later request into a 401.
ACCOUNT_WRITES: Final = ("PATCH /users/me", "PATCH /users/{id}", "DELETE /users/{id}")
PASSES: Final = (
    # Everything else, as a superuser, so that the admin routes are reached too.
    Pass("main", user="admin", share=0.7, exclude=ACCOUNT_WRITES),
    # A plain user changing their own account (the one thing this user's token is for).
    Pass("users-me", user="member", share=0.15, include=("PATCH /users/me",)),
    # A superuser changing and deleting accounts; POST /users gives it accounts of its own to
    # change (it never learns the superuser's own id: no operation here returns it).
    Pass(
        "admin-user-writes",
        user="admin",
        share=0.15,
        include=("POST /users", "PATCH /users/{id}", "DELETE /users/{id}"),
    ),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def executable(name: str) -> str:
    """A console script of this virtual environment (roster, st)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"{path} is missing: run this with `uv run python {Path(__file__).name}`")
    return str(path)


def request(
    url: str, *, form: dict[str, str] | None = None, body: object = None, token: str = ""
) -> tuple[int, bytes]:
    data: bytes | None = None
    headers = {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextmanager
def running_server(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        server = subprocess.Popen(
            [executable("roster"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield server
    finally:
        stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a person would: uvicorn drains, then `roster serve` stops its Postgres."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print("the server did not stop in time: killing it", file=sys.stderr)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def wait_until_ready(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, _ = request(f"{base_url}/health/ready")
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.5)
    sys.exit(f"the server was not ready after {READY_TIMEOUT_SECONDS:.0f} s")


def log_in(base_url: str, email: str, password: str) -> str:
    status, body = request(
        f"{base_url}/auth/jwt/login", form={"username": email, "password": password}
    )
    if status != 200:
        sys.exit(f"logging in as {email} answered {status}: {body[:300]!r}")
    token: str = json.loads(body)["access_token"]
    return token


def sign_in_users(base_url: str, env: dict[str, str]) -> dict[str, str]:
    """The superuser through the command line (as an operator makes one), the member through
    the API (as anyone registers); a token for each."""
    admin_password = secrets.token_urlsafe(24)
    subprocess.run(
        [executable("roster"), "create-superuser", "--email", ADMIN_EMAIL],
        env={**env, "ROSTER_SUPERUSER_PASSWORD": admin_password},
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    member_password = secrets.token_urlsafe(24)
    status, body = request(
        f"{base_url}/auth/register", body={"email": MEMBER_EMAIL, "password": member_password}
    )
    if status != 201:
        sys.exit(f"registering {MEMBER_EMAIL} answered {status}: {body[:300]!r}")
    return {
        "admin": log_in(base_url, ADMIN_EMAIL, admin_password),
        "member": log_in(base_url, MEMBER_EMAIL, member_password),
    }


@dataclass
class Outcome:
    name: str
    returncode: int
    operations: str = "?"
    generated: str = "?"
    failures: str = "0"


# st's closing lines: "Selected: 24/29", "Tested: 24", "28005 generated, 22 found 24 unique
# failures" (or "... generated, ... passed").
_TESTED = re.compile(r"^\s*Tested: (\d+)", re.MULTILINE)
_GENERATED = re.compile(r"^\s*(\d+) generated", re.MULTILINE)
_FAILURES = re.compile(r"(\d+) unique failures?")


def run_pass(
    test_pass: Pass, schema_url: str, token: str, options: argparse.Namespace, report_dir: Path
) -> Outcome:
    command = [
        executable("st"),
        "--config-file",
        str(CONFIG),
        "run",
        schema_url,
        "--phases",
        PHASES,
        "--checks",
        options.checks,
        "--header",
        f"Authorization: Bearer {token}",
        "--workers",
        str(options.workers),
        "--report",
        "junit",
        "--report-dir",
        str(report_dir / test_pass.name),
    ]
    for name in test_pass.include:
        command += ["--include-name", name]
    for name in test_pass.exclude:
        command += ["--exclude-name", name]
    if options.max_time is not None:
        command += ["--max-time", str(max(1, round(options.max_time * test_pass.share)))]
    if options.max_examples is not None:
        command += ["--max-examples", str(options.max_examples)]
    if options.seed is not None:
        command += ["--seed", str(options.seed)]
    command += options.st_args
    print(f"\n==> schemathesis pass {test_pass.name!r} ({test_pass.user})", flush=True)
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=ROOT,
        # st prints marks such as ✅ whatever the locale (CI's may be POSIX).
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="utf-8",
        errors="replace",
    ) as st:
        assert st.stdout is not None
        for line in st.stdout:  # shown as it comes: a full pass takes minutes
            sys.stdout.write(line)
            lines.append(line)
    output = "".join(lines)
    outcome = Outcome(test_pass.name, st.returncode)
    if tested := _TESTED.search(output):
        outcome.operations = tested.group(1)
    if generated := _GENERATED.search(output):
        outcome.generated = generated.group(1)
    if failures := _FAILURES.search(output):
        outcome.failures = failures.group(1)
    return outcome


def unhandled_errors(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "unhandled" in line]


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", default="all", help="st's --checks [default: all]")
    parser.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="seconds for all passes together, shared out by PASSES [default: no bound]",
    )
    parser.add_argument("--max-examples", type=int, default=None, help="st's --max-examples")
    parser.add_argument("--workers", type=int, default=2, help="st's --workers [default: 2]")
    parser.add_argument("--seed", type=int, default=None, help="st's --seed, to replay a run")
    parser.add_argument(
        "--pass",
        dest="passes",
        action="append",
        choices=[test_pass.name for test_pass in PASSES],
        help="run only this pass (repeatable) [default: every pass]",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=ROOT / "schemathesis-report",
        help="JUnit reports and the server's log [default: schemathesis-report/]",
    )
    parser.add_argument("st_args", nargs="*", help="more `st run` options, after `--`")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    options = parse_arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")
    report_dir: Path = options.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    log = report_dir / "server.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="roster-schemathesis-") as data_dir:
        env = {
            **os.environ,
            # Said explicitly: production, which needs real secrets and a database URL, may
            # be the default.
            "ROSTER_ENVIRONMENT": "development",
            "ROSTER_DATA_DIR": data_dir,
            "ROSTER_LOG_FORMAT": "json",
            # A full run outlasts the default 15 minutes of a JWT.
            "ROSTER_ACCESS_TOKEN_LIFETIME_SECONDS": str(24 * 3600),
        }
        env.pop("ROSTER_DATABASE_URL", None)
        with running_server(port, env, log) as server:
            wait_until_ready(server, base_url, log)
            tokens = sign_in_users(base_url, env)
            selected = [p for p in PASSES if not options.passes or p.name in options.passes]
            outcomes = [
                run_pass(p, f"{base_url}/openapi.json", tokens[p.user], options, report_dir)
                for p in selected
            ]
            alive = server.poll() is None
    errors = unhandled_errors(log)
    print("\n==> schemathesis summary")
    print(f"{'pass':<20} {'operations':>10} {'test cases':>11} {'failures':>9}  exit")
    for outcome in outcomes:
        print(
            f"{outcome.name:<20} {outcome.operations:>10} {outcome.generated:>11} "
            f"{outcome.failures:>9}  {outcome.returncode}"
        )
    if errors:
        print(f"the server logged {len(errors)} unhandled errors (see {log}):")
        print("\n".join(errors[:20]))
    if not alive:
        print("the server died during the run")
    failed = any(outcome.returncode != 0 for outcome in outcomes) or bool(errors) or not alive
    print("schemathesis: " + ("FAILED" if failed else "nothing found"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
