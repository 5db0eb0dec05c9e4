"""Every Dockerfile: hadolint-clean, copies only paths that exist, and follows the house rules."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ALL_ENV_NAMES, ROOT, SETTINGS, env_names
from tests.deploy.tools import hadolint

SERVICES = {"repo": 8081, "trigger": 8082, "scheduler": 8083, "inference": 8080, "console": 8084}
DOCKERFILES = sorted(
    [*(ROOT / "services").glob("*/Dockerfile"), *(ROOT / "examples").glob("*/Dockerfile")]
)
BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore's patterns (last match wins) exclude a path from the context."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [relative, *(str(p) for p in Path(relative).parents if str(p) != ".")]
        if pattern == "**" or any(
            fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "*/"))
            for c in candidates
        ):
            excluded = not negate
    return excluded


def test_there_is_one_per_service_and_the_worker() -> None:
    assert {p.parent.name for p in (ROOT / "services").glob("*/Dockerfile")} == {
        *SERVICES,
        "worker",
    }


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_hadolint_is_clean(path: Path) -> None:
    result = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=ids)
def test_every_copied_path_exists_in_the_build_context(path: Path) -> None:
    copies = 0
    for keyword, rest in instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        if "--from=" in rest:
            continue  # from another stage
        *sources, _destination = args
        for source in sources:
            matches = list(ROOT.glob(source.rstrip("/")))
            assert matches, f"{ids(path)}: COPY {source}: nothing in the repository"
            for match in matches:
                relative = str(match.relative_to(ROOT))
                assert not dockerignored(relative), f"{relative} is excluded by .dockerignore"
            copies += 1
    assert copies


@pytest.mark.parametrize("name", [*SERVICES, "worker"])
def test_multi_stage_slim_pinned_and_non_root(name: str) -> None:
    path = ROOT / "services" / name / "Dockerfile"
    text = path.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert BASE.match(base.group(1)), "pin an exact python:3.11.x-slim tag"
    parts = stages(path)
    assert len(parts) == 2
    assert parts[0][0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    final = parts[-1]
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    final_text = " ".join(rest for _, rest in final)
    for tool in ("gcc", "build-essential", "apt-get install", "make "):
        assert tool not in final_text, f"{tool} in the final stage"
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final or any(
        k == "COPY" and "--from=builder" in r and "/opt/venv /opt/venv" in r for k, r in final
    )
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert [k for k, _ in final].count("HEALTHCHECK") == 1


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_services_expose_their_port_and_check_their_health(name: str, port: int) -> None:
    final = stages(ROOT / "services" / name / "Dockerfile")[-1]
    assert ("EXPOSE", str(port)) in final
    health = next(rest for k, rest in final if k == "HEALTHCHECK")
    ready = "/readyz"  # inference too: per-model readiness is at /v2/models/{m}/ready
    assert f"http://127.0.0.1:{port}{ready}" in health
    cmd = next(rest for k, rest in final if k == "CMD")
    assert f'"tusk_{name}.app:create_app"' in cmd
    assert f'"{port}"' in cmd


@pytest.mark.parametrize("name", [*SERVICES, "worker"])
def test_env_defaults_are_known_settings(name: str) -> None:
    known = env_names(SETTINGS[name]) if name in SETTINGS else ALL_ENV_NAMES
    final = stages(ROOT / "services" / name / "Dockerfile")[-1]
    names = {
        m.group(1)
        for keyword, rest in final
        if keyword == "ENV"
        for m in re.finditer(r"(?:^|\s)(TUSK_[A-Z0-9_]+)=", rest)
    }
    assert names <= known, sorted(names - known)


def test_the_credit_image_builds_on_the_worker_image() -> None:
    text = (ROOT / "examples" / "credit" / "Dockerfile").read_text()
    assert "ARG TUSK_WORKER_IMAGE=tusk/worker:" in text
    assert "FROM ${TUSK_WORKER_IMAGE}" in text
