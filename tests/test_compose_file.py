"""docker-compose.yml and .env.example, checked without a Docker engine."""

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
from dotenv import dotenv_values

# `${NAME}`, `${NAME:-default}`, `${NAME:?error}` ... but not `$${NAME}`, which compose leaves
# to the container's shell.
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
)
SECRET_NAME = re.compile(r"SECRET|PASSWORD")
ROSTER_SERVICES = ("migrate", "api", "seed")


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def interpolations(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, operator, argument) of every variable the compose file reads from its environment."""
    return [
        (match["name"], match["operator"] or "", match["argument"] or "")
        for text in strings_in(compose)
        for match in INTERPOLATION.finditer(text)
    ]


def run_check_jsonschema(
    check_jsonschema: Path, compose_file: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, our own files
        [str(check_jsonschema), "--builtin-schema", "vendor.compose-spec", str(compose_file)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_validates_against_the_compose_specification(
    check_jsonschema: Path, repo_root: Path
) -> None:
    result = run_check_jsonschema(check_jsonschema, repo_root / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_misspelt_dependency_condition(
    check_jsonschema: Path, compose_text: str, tmp_path: Path
) -> None:
    """The validation above is not vacuous: the schema catches the mistakes that matter here."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        compose_text.replace("condition: service_completed_successfully", "condition: completed")
    )
    result = run_check_jsonschema(check_jsonschema, broken)
    assert result.returncode != 0
    assert "depends_on" in result.stdout + result.stderr


def test_db_is_postgres_from_a_swappable_image_on_a_named_volume(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "${POSTGRES_IMAGE:-postgres:18-alpine}"
    volume, _, target = db["volumes"][0].partition(":")
    # Postgres 18 images keep PGDATA in a major-version subdirectory of /var/lib/postgresql.
    assert target == "/var/lib/postgresql"
    assert volume in compose["volumes"], "the data volume must be a named volume"


def test_db_health_check_asks_over_tcp_as_the_configured_user_and_database(
    compose: dict[str, Any],
) -> None:
    db = compose["services"]["db"]
    kind, command = db["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    argv = shlex.split(command)
    assert argv[0] == "pg_isready"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    # The initialising server listens on its Unix socket only: TCP cannot answer before it is done.
    assert options["-h"] == "127.0.0.1"
    # `$$` reaches the container's shell as `$`: the values db itself was configured with.
    assert options["-U"] == "$${POSTGRES_USER}"
    assert options["-d"] == "$${POSTGRES_DB}"
    assert {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"} <= set(db["environment"])


def test_migrate_is_one_shot_and_waits_for_a_healthy_database(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert migrate["restart"] == "no"
    assert "profiles" not in migrate, "migrations must run on every `docker compose up`"
    assert "ports" not in migrate
    assert "healthcheck" not in migrate


def test_api_starts_only_after_the_migrations_succeeded(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert api["restart"] in {"on-failure", "unless-stopped", "always"}


def test_api_health_check_asks_for_readiness_without_curl(compose: dict[str, Any]) -> None:
    kind, *argv = compose["services"]["api"]["healthcheck"]["test"]
    assert kind == "CMD"
    # The image ships no curl or wget: the virtual environment's Python makes the request.
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8000/health/ready'" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def test_api_publishes_its_port_from_a_variable(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["ports"] == ["${ROSTER_API_PORT:-8000}:8000"]
    assert api["command"][api["command"].index("--port") + 1] == "8000"
    # No other service is reachable from the host: Postgres stays on the compose network.
    assert [name for name, service in compose["services"].items() if "ports" in service] == ["api"]


def test_sample_data_loads_from_a_seed_service_behind_a_profile(compose: dict[str, Any]) -> None:
    seed = compose["services"]["seed"]
    assert seed["profiles"] == ["seed"]
    assert seed["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert seed["restart"] == "no"


def test_roster_services_share_one_image_and_its_production_settings(
    compose: dict[str, Any],
) -> None:
    services = [compose["services"][name] for name in ROSTER_SERVICES]
    for key in ("image", "build", "read_only", "cap_drop", "security_opt"):
        assert all(service[key] == services[0][key] for service in services), key
    environment = services[0]["environment"]
    assert compose["services"]["api"]["environment"] == environment
    # seed alone also passes the sample users' password through, and only when it is set.
    assert compose["services"]["seed"]["environment"] == {
        **environment,
        "ROSTER_SEED_PASSWORD": None,
    }
    assert environment["ROSTER_ENVIRONMENT"] == "production"
    assert environment["ROSTER_DATABASE_URL"] == (
        "postgresql+asyncpg://${POSTGRES_USER:-roster}:"
        "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (see .env.example)}"
        "@db:5432/${POSTGRES_DB:-roster}"
    )
    assert services[0]["cap_drop"] == ["ALL"]


def test_image_build_passes_the_base_images_through_with_the_dockerfile_defaults(
    compose: dict[str, Any], api_dockerfile: tuple[dockerfile.Command, ...]
) -> None:
    build = compose["services"]["api"]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == "services/api/Dockerfile"
    dockerfile_defaults = dict(
        command.value[0].split("=", 1) for command in api_dockerfile if command.cmd == "ARG"
    )
    assert set(build["args"]) == {"PYTHON_IMAGE", "UV_IMAGE"}
    for name, value in build["args"].items():
        assert value == f"${{{name}:-{dockerfile_defaults[name]}}}"


# Secrets of optional features: absent (empty) turns the feature off, so they may be empty,
# and nothing else (an identity provider's client secret).
OPTIONAL_SECRETS = frozenset(
    {"ROSTER_OIDC_CLIENT_SECRET", "ROSTER_GITHUB_CLIENT_SECRET", "ROSTER_GOOGLE_CLIENT_SECRET"}
)


def test_every_secret_is_required_and_never_defaulted(compose: dict[str, Any]) -> None:
    secrets = [ref for ref in interpolations(compose) if SECRET_NAME.search(ref[0])]
    required = [ref for ref in secrets if ref[0] not in OPTIONAL_SECRETS]
    assert {name for name, _, _ in required} == {
        "POSTGRES_PASSWORD",
        "ROSTER_ACCESS_TOKEN_SECRET",
        "ROSTER_RESET_PASSWORD_SECRET",
        "ROSTER_VERIFY_SECRET",
    }
    for name, operator, message in required:
        # `:?` also refuses an empty value, which is what a copied .env.example holds.
        assert operator == ":?", f"{name} must be required with ${{{name}:?...}}"
        assert ".env" in message, f"the error for {name} should say where to set it"
    optional = [ref for ref in secrets if ref[0] in OPTIONAL_SECRETS]
    assert {name for name, _, _ in optional} == OPTIONAL_SECRETS
    for name, operator, default in optional:
        assert (operator, default) == (":-", ""), f"{name} may default to empty, nothing else"


def test_every_other_variable_has_one_default(compose: dict[str, Any]) -> None:
    defaults: dict[str, set[str]] = {}
    for name, operator, argument in interpolations(compose):
        if not SECRET_NAME.search(name):
            assert operator == ":-", f"{name} needs a default: ${{{name}:-...}}"
            defaults.setdefault(name, set()).add(argument)
    assert {name: values for name, values in defaults.items() if len(values) > 1} == {}


def test_env_example_lists_every_variable_with_blank_secrets_and_the_defaults(
    compose: dict[str, Any], repo_root: Path
) -> None:
    example = dotenv_values(repo_root / ".env.example")
    used = {name: argument for name, _, argument in interpolations(compose)}
    # A variable listed without a value is passed through from .env when set there.
    passed_through = {
        name: ""
        for service in compose["services"].values()
        for name, value in service.get("environment", {}).items()
        if value is None
    }
    assert passed_through == {"ROSTER_SEED_PASSWORD": ""}
    used |= passed_through
    assert set(example) == set(used)
    for name, value in example.items():
        if SECRET_NAME.search(name):
            assert value == "", f"{name} must be left blank in .env.example"
        else:
            assert value == used[name], f"{name}: .env.example and the compose default differ"


def test_git_ignores_the_filled_in_env_file_but_not_the_example(repo_root: Path) -> None:
    def ignored(path: str) -> bool:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "check-ignore", "--quiet", "--no-index", path],  # noqa: S607 - git from PATH
            cwd=repo_root,
            check=False,
        )
        return result.returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")
