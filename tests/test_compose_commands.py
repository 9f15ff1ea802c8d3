"""The commands the containers run are real `roster` commands: parsed by the CLI itself (without
running them), and the same commands the service's end-to-end and command-line tests run."""

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import typer
from typer.exceptions import TyperException

from roster_api.cli import cli


@dataclass(frozen=True)
class ParsedCommand:
    path: tuple[str, ...]
    params: dict[str, Any]
    given: frozenset[str]
    """The parameters the command line set (the rest are defaults)."""


def parse_roster_command(argv: list[str]) -> ParsedCommand:
    """Resolve `roster ...` through the real command tree and parse its options and arguments
    exactly as a run would, without invoking it; an unknown command, option or value raises.
    (Typer ships its own copy of Click: its command objects are used by shape, as returned.)"""
    program, *words = argv
    assert program == "roster"
    command: Any = typer.main.get_command(cli)
    context = typer.Context(command, info_name=program)
    path: list[str] = []
    while getattr(command, "commands", None):
        name, *words = words
        subcommand = command.get_command(context, name)
        if subcommand is None:
            raise TyperException(f"No such command: roster {' '.join([*path, name])}")
        path.append(name)
        command = subcommand
        context = typer.Context(command, info_name=name, parent=context)
    leaf = command.make_context(path[-1], list(words), parent=context.parent)
    given = frozenset(
        name for name in leaf.params if leaf.get_parameter_source(name).name == "COMMANDLINE"
    )
    return ParsedCommand(tuple(path), dict(leaf.params), given)


def test_the_parser_refuses_what_the_cli_would_refuse() -> None:
    """The checks below are not vacuous: a misspelt command, option or value does not parse."""
    with pytest.raises(TyperException, match="No such command"):
        parse_roster_command(["roster", "migrate", "upgrad", "head"])
    with pytest.raises(TyperException, match="No such option"):
        parse_roster_command(["roster", "serve", "--hots", "localhost"])
    with pytest.raises(TyperException, match="valid integer"):
        parse_roster_command(["roster", "serve", "--port", "http"])
    with pytest.raises(TyperException, match="unexpected extra argument"):
        parse_roster_command(["roster", "seed", "sample"])


def test_migrate_runs_the_upgrade_to_head(compose: dict[str, Any]) -> None:
    parsed = parse_roster_command(compose["services"]["migrate"]["command"])
    assert parsed.path == ("migrate", "upgrade")
    assert parsed.params["revision"] == "head"


def test_api_serves_on_every_interface_at_the_published_container_port(
    compose: dict[str, Any],
) -> None:
    api = compose["services"]["api"]
    parsed = parse_roster_command(api["command"])
    assert parsed.path == ("serve",)
    assert parsed.params["host"] == "0.0.0.0"  # noqa: S104 - inside the container, on purpose
    published = api["ports"][0].rsplit(":", 1)[1]
    assert parsed.params["port"] == int(published)
    assert f":{parsed.params['port']}/health/ready" in api["healthcheck"]["test"][-1]
    # Migrations are the migrate service's job, once, not every replica's.
    assert parsed.params["migrate"] is None
    assert api["environment"]["ROSTER_DATABASE_URL"] is not None


def test_seed_loads_the_sample(compose: dict[str, Any]) -> None:
    parsed = parse_roster_command(compose["services"]["seed"]["command"])
    assert parsed.path == ("seed",)
    assert parsed.given == frozenset()


def test_the_images_default_command_is_what_the_api_service_runs(
    api_dockerfile: tuple[dockerfile.Command, ...], compose: dict[str, Any]
) -> None:
    (cmd,) = [command for command in api_dockerfile if command.cmd == "CMD"]
    assert list(cmd.value) == compose["services"]["api"]["command"]
    assert parse_roster_command(list(cmd.value)).path == ("serve",)


# --- the same commands the service's own tests run --------------------------------------------
# Read from the test files (they do not export their command lines): the end-to-end test runs
# `roster serve` in a subprocess in production mode, the command-line tests run every command
# through Typer's runner against a real database.

API_TESTS = Path("services/api/tests")
# Variables the end-to-end test sets only to fail fast while its database is cut off.
TEST_ONLY_VARIABLES = frozenset(
    {"ROSTER_DATABASE_CONNECT_TIMEOUT_SECONDS", "ROSTER_DATABASE_POOL_TIMEOUT_SECONDS"}
)


def words_of(node: ast.expr) -> list[str]:
    """A literal argument list as words; an expression becomes `{its source}`: `{str(port)}`."""
    if isinstance(node, ast.List | ast.Tuple):
        return [word for element in node.elts for word in words_of(element)]
    if isinstance(node, ast.Starred):
        return words_of(node.value)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return [f"{{{ast.unparse(node)}}}"]


def calls_in(path: Path, is_target: Any) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and is_target(node.func)]


@pytest.fixture(scope="module")
def end_to_end_serve(repo_root: Path) -> tuple[list[str], dict[str, Any]]:
    """The command line and the ROSTER_* environment of the end-to-end test's `roster serve`."""
    path = repo_root / API_TESTS / "test_end_to_end.py"
    (popen,) = calls_in(path, lambda f: isinstance(f, ast.Attribute) and f.attr == "Popen")
    argv = words_of(popen.args[0])
    environments = [
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Dict)
        and any(
            isinstance(key, ast.Constant) and key.value == "ROSTER_ENVIRONMENT" for key in node.keys
        )
    ]
    (environment,) = environments
    variables = {
        key.value: value.value if isinstance(value, ast.Constant) else ast.unparse(value)
        for key, value in zip(environment.keys, environment.values, strict=True)
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }
    return argv, variables


@pytest.fixture(scope="module")
def cli_test_commands(repo_root: Path) -> list[list[str]]:
    """The leading literal words of every `roster(...)` call in the command-line tests."""
    path = repo_root / API_TESTS / "test_cli.py"
    commands = []
    for call in calls_in(path, lambda f: isinstance(f, ast.Name) and f.id == "roster"):
        words = []
        for argument in call.args:
            if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                break
            words.append(argument.value)
        if words:
            commands.append(["roster", *words])
    assert commands, f"no roster(...) calls found in {path}"
    return commands


def test_the_end_to_end_test_runs_the_roster_script(
    end_to_end_serve: tuple[list[str], dict[str, Any]], repo_root: Path
) -> None:
    argv, _ = end_to_end_serve
    assert argv[:3] == ["{sys.executable}", "-m", "roster_api.cli"]
    with (repo_root / "services/api/pyproject.toml").open("rb") as manifest:
        scripts = tomllib.load(manifest)["project"]["scripts"]
    # `python -m roster_api.cli` and the `roster` script are one entry point.
    assert scripts == {"roster": "roster_api.cli:main"}


def test_api_runs_the_serve_command_the_end_to_end_test_runs(
    compose: dict[str, Any], end_to_end_serve: tuple[list[str], dict[str, Any]]
) -> None:
    argv, _ = end_to_end_serve
    # A computed value (the free port) parses as any valid one would.
    tested = parse_roster_command(
        ["roster", *("0" if word.startswith("{") else word for word in argv[3:])]
    )
    served = parse_roster_command(compose["services"]["api"]["command"])
    assert served.path == tested.path == ("serve",)
    assert served.given == tested.given == {"host", "port"}


def test_api_gets_every_production_variable_the_end_to_end_test_needed(
    compose: dict[str, Any],
    end_to_end_serve: tuple[list[str], dict[str, Any]],
    api_dockerfile: tuple[dockerfile.Command, ...],
) -> None:
    _, tested = end_to_end_serve
    assert tested["ROSTER_ENVIRONMENT"] == "production"
    environment = compose["services"]["api"]["environment"]
    assert environment["ROSTER_ENVIRONMENT"] == "production"
    image_env = {
        name for command in api_dockerfile if command.cmd == "ENV" for name in command.value[0::2]
    }
    needed = {name for name in tested if name.startswith("ROSTER_")} - TEST_ONLY_VARIABLES
    # The image sets ROSTER_MIGRATIONS_DIR; compose sets the rest.
    assert needed - set(environment) == {"ROSTER_MIGRATIONS_DIR"}
    assert "ROSTER_MIGRATIONS_DIR" in image_env


@pytest.mark.parametrize("service", ["migrate", "seed"])
def test_one_shot_services_run_commands_the_cli_tests_run(
    compose: dict[str, Any], cli_test_commands: list[list[str]], service: str
) -> None:
    composed = parse_roster_command(compose["services"][service]["command"])
    tested = [
        parse_roster_command(command)
        for command in cli_test_commands
        if tuple(command[1 : 1 + len(composed.path)]) == composed.path
    ]
    # The same command with the same resolved arguments (`head` given or by default).
    assert (composed.path, composed.params) in [(run.path, run.params) for run in tested]
