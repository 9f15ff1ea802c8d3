"""Fixtures for the workspace-wide checks: the repository's files, parsed once per session."""

import sys
import tomllib
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def compose_text() -> str:
    return (REPO_ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="session")
def compose(compose_text: str) -> dict[str, Any]:
    """The compose file as compose sees it before interpolation (YAML merge keys resolved)."""
    document = yaml.safe_load(compose_text)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="session")
def api_dockerfile() -> tuple[dockerfile.Command, ...]:
    """The API Dockerfile's instructions, parsed by BuildKit's own parser."""
    return tuple(dockerfile.parse_file(str(REPO_ROOT / "services/api/Dockerfile")))


@pytest.fixture(scope="session")
def uv_lock() -> dict[str, Any]:
    with (REPO_ROOT / "uv.lock").open("rb") as lock:
        return tomllib.load(lock)


def _dev_tool(name: str) -> Path:
    """An executable of the root dev group, installed next to the running interpreter."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is not installed next to {sys.executable}: run `uv sync`"
    return path


@pytest.fixture(scope="session")
def check_jsonschema() -> Path:
    return _dev_tool("check-jsonschema")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return _dev_tool("hadolint")
