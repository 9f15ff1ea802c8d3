"""services/api/Dockerfile and .dockerignore, checked without a Docker engine."""

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from docker.utils.build import exclude_paths

DOCKERFILE = "services/api/Dockerfile"
STAGE_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def stages(commands: tuple[dockerfile.Command, ...]) -> dict[str, list[dockerfile.Command]]:
    """Each build stage's instructions after its FROM, by stage name (the last one is the image)."""
    by_stage: dict[str, list[dockerfile.Command]] = {}
    current: list[dockerfile.Command] | None = None
    for command in commands:
        if command.cmd == "FROM":
            value = [word.lower() for word in command.value]
            name = command.value[value.index("as") + 1] if "as" in value else f"#{len(by_stage)}"
            current = by_stage.setdefault(name, [command])
        elif current is not None:
            current.append(command)
    return by_stage


def base_of(stage: list[dockerfile.Command]) -> str:
    base: str = stage[0].value[0]
    return base


def flags_of(command: dockerfile.Command) -> dict[str, list[str]]:
    """`--mount=type=bind,source=a,target=b` -> {"mount": ["type=bind,source=a,target=b"]}."""
    flags: dict[str, list[str]] = {}
    for flag in command.flags:
        name, _, value = flag.removeprefix("--").partition("=")
        flags.setdefault(name, []).append(value)
    return flags


def mounts_of(command: dockerfile.Command) -> list[dict[str, str]]:
    return [
        dict(part.split("=", 1) for part in mount.split(","))
        for mount in flags_of(command).get("mount", [])
    ]


def uv_syncs(stage: list[dockerfile.Command]) -> Iterator[tuple[dockerfile.Command, list[str]]]:
    for command in stage:
        if command.cmd == "RUN" and command.value[0].startswith("uv sync"):
            yield command, shlex.split(command.value[0])


def env_of(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for command in stage:
        if command.cmd == "ENV":
            pairs = command.value
            env.update(zip(pairs[0::2], (value.strip('"') for value in pairs[1::2]), strict=True))
    return env


def workspace_members_needed_by(package: str, uv_lock: dict[str, Any]) -> dict[str, str]:
    """Workspace members `package` needs (itself included), name -> folder, from the lock."""
    by_name = {entry["name"]: entry for entry in uv_lock["package"]}
    needed: dict[str, str] = {}
    pending = [package]
    while pending:
        entry = by_name[pending.pop()]
        folder = entry["source"].get("editable")
        if folder is None or entry["name"] in needed:
            continue
        needed[entry["name"]] = folder
        pending.extend(dependency["name"] for dependency in entry.get("dependencies", []))
    return needed


@pytest.fixture(scope="module")
def by_stage(api_dockerfile: tuple[dockerfile.Command, ...]) -> dict[str, list[dockerfile.Command]]:
    return stages(api_dockerfile)


def run_hadolint(hadolint: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, our own files
        [str(hadolint), "--no-color", str(path)], capture_output=True, text=True, check=False
    )


def test_dockerfile_passes_hadolint(hadolint: Path, repo_root: Path) -> None:
    result = run_hadolint(hadolint, repo_root / DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_what_it_is_there_to_catch(hadolint: Path, tmp_path: Path) -> None:
    """The check above is not vacuous: an unpinned base image and a root user are reported."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nUSER root\nRUN pip install roster\n")
    result = run_hadolint(hadolint, careless)
    assert result.returncode != 0
    assert {"DL3007", "DL3002"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_every_base_image_is_a_build_argument_with_a_default(
    api_dockerfile: tuple[dockerfile.Command, ...],
    by_stage: dict[str, list[dockerfile.Command]],
) -> None:
    first_from = next(i for i, command in enumerate(api_dockerfile) if command.cmd == "FROM")
    global_args = dict(
        command.value[0].split("=", 1)
        for command in api_dockerfile[:first_from]
        if command.cmd == "ARG"
    )
    assert set(global_args) == {"PYTHON_IMAGE", "UV_IMAGE"}
    assert all(global_args.values()), "every base image argument needs a default"
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", global_args["UV_IMAGE"])
    for name, stage in by_stage.items():
        reference = STAGE_REFERENCE.fullmatch(base_of(stage))
        assert reference is not None, f"stage {name} is FROM {base_of(stage)}, not a build argument"
        assert reference["name"] in global_args


def test_uv_comes_from_the_uv_image_into_the_builder_only(
    by_stage: dict[str, list[dockerfile.Command]],
) -> None:
    assert base_of(by_stage["uv"]) == "${UV_IMAGE}"
    copies_from_uv = [
        (name, command.value)
        for name, stage in by_stage.items()
        for command in stage
        if command.cmd == "COPY" and flags_of(command).get("from") == ["uv"]
    ]
    assert copies_from_uv == [("builder", ("/uv", "/uvx", "/bin/"))]


def test_builder_compiles_bytecode_with_the_images_own_python(
    by_stage: dict[str, list[dockerfile.Command]],
) -> None:
    env = env_of(by_stage["builder"])
    assert env["UV_COMPILE_BYTECODE"] == "1"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    # A copy, not hard links into the cache mount, which does not end up in the image.
    assert env["UV_LINK_MODE"] == "copy"
    assert env["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"


def test_dependencies_install_from_the_lock_before_any_source_is_copied(
    by_stage: dict[str, list[dockerfile.Command]], uv_lock: dict[str, Any]
) -> None:
    builder = by_stage["builder"]
    syncs = list(uv_syncs(builder))
    assert len(syncs) == 2
    (dependencies, dependencies_argv), (project, project_argv) = syncs
    first_source_copy = next(
        command for command in builder if command.cmd == "COPY" and "from" not in flags_of(command)
    )
    assert dependencies.start_line < first_source_copy.start_line < project.start_line

    assert {"--frozen", "--no-dev", "--no-install-workspace"} <= set(dependencies_argv)
    assert dependencies_argv[dependencies_argv.index("--package") + 1] == "roster-api"
    bound = {mount["source"] for mount in mounts_of(dependencies) if mount["type"] == "bind"}
    members = workspace_members_needed_by("roster-api", uv_lock)
    assert set(members) == {"roster-api", "roster-groups", "roster-auth", "roster-db"}
    assert bound == {"uv.lock", "pyproject.toml"} | {
        f"{folder}/pyproject.toml" for folder in members.values()
    }

    assert {"--frozen", "--no-dev", "--no-editable"} <= set(project_argv)
    assert project_argv[project_argv.index("--package") + 1] == "roster-api"
    for command, _ in syncs:
        caches = [mount for mount in mounts_of(command) if mount["type"] == "cache"]
        assert [cache["target"] for cache in caches] == ["/root/.cache/uv"]


def test_final_image_holds_the_environment_and_migrations_and_runs_as_non_root(
    by_stage: dict[str, list[dockerfile.Command]],
) -> None:
    *_, final = by_stage.values()
    assert base_of(final) == base_of(by_stage["builder"]), "the venv must find the same Python"
    copies = [
        (flags_of(command).get("from"), command.value) for command in final if command.cmd == "COPY"
    ]
    assert copies == [
        (["builder"], ("/app/.venv", "/app/.venv")),
        (None, ("alembic.ini", "./")),
        (None, ("migrations/", "migrations/")),
    ]
    runs = [command.value[0] for command in final if command.cmd == "RUN"]
    assert not [run for run in runs if re.search(r"\b(uv|pip|apt-get|apk)\b", run)], (
        "nothing is installed in the final stage"
    )
    users = [command.value[0] for command in final if command.cmd == "USER"]
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0
    env = env_of(final)
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["ROSTER_MIGRATIONS_DIR"] == "/app/migrations"
    # Started without compose (`docker run`), the image still refuses development secrets.
    assert env["ROSTER_ENVIRONMENT"] == "production"
    (cmd,) = [command for command in final if command.cmd == "CMD"]
    assert cmd.json, "exec form, so that roster is PID 1 and receives SIGTERM"
    assert cmd.value[:2] == ("roster", "serve")


def make_tree(root: Path, paths: list[str]) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")


def test_dockerignore_keeps_environments_caches_secrets_and_local_data_out(
    repo_root: Path, tmp_path: Path
) -> None:
    needed = [
        "pyproject.toml",
        "uv.lock",
        "alembic.ini",
        "migrations/env.py",
        "migrations/versions/0001_initial.py",
        "packages/db/pyproject.toml",
        "packages/db/README.md",
        "packages/db/src/roster_db/__init__.py",
        "services/api/pyproject.toml",
        "services/api/src/roster_api/cli.py",
    ]
    unwanted = [
        ".env",
        ".git/HEAD",
        ".venv/bin/python",
        "packages/db/.venv/bin/python",
        "packages/db/src/roster_db/__pycache__/base.cpython-311.pyc",
        "migrations/__pycache__/env.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        "packages/auth/.ruff_cache/x",
        ".roster/postgres/PG_VERSION",
        "bench/.data/results.json",
        "packages/db/tests/test_base.py",
        "services/api/.env",
        "services/api/dist/roster_api-0.1.0-py3-none-any.whl",
    ]
    make_tree(tmp_path, needed + unwanted)
    patterns = [
        line.strip()
        for line in (repo_root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = exclude_paths(str(tmp_path), patterns)
    assert sorted(set(needed) - context) == []
    assert sorted(set(unwanted) & context) == []


def test_build_context_of_this_checkout_holds_what_the_dockerfile_copies(
    repo_root: Path,
) -> None:
    patterns = [
        line.strip()
        for line in (repo_root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = exclude_paths(str(repo_root), patterns, dockerfile=DOCKERFILE)
    for path in ("uv.lock", "pyproject.toml", "alembic.ini", "services/api/pyproject.toml"):
        assert path in context
    assert not [
        path for path in context if re.search(r"(^|/)(\.venv|\.git|__pycache__)(/|$)", path)
    ]
