"""docker-compose.yml: valid Compose, every TUSK_* setting known, and started in order."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import ROOT, SETTINGS, env_names

SCHEMA = Path(__file__).with_name("compose-spec.json")
SERVICES = ("repo", "trigger", "scheduler", "inference", "console")
PORTS = {"inference": 8080, "repo": 8081, "trigger": 8082, "scheduler": 8083, "console": 8084}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_it_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_a_mistake(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["repo"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert not jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).is_valid(broken)


@pytest.mark.parametrize("name", [*SERVICES, "migrate"])
def test_every_tusk_setting_is_one_the_service_knows(compose: dict[str, Any], name: str) -> None:
    known = env_names(SETTINGS[name])
    passed = {k for k in environment(compose["services"][name]) if k.startswith("TUSK_")}
    assert passed, f"{name} gets no TUSK_* settings"
    assert passed <= known, f"{name}: unknown settings {sorted(passed - known)}"


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "kafka", "s3", *SERVICES):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["command"] == ["tusk", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["s3-init"]["depends_on"] == {"s3": {"condition": "service_healthy"}}
    assert services["repo"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "s3-init": {"condition": "service_completed_successfully"},
        "kafka": {"condition": "service_healthy"},
    }
    for name in ("trigger", "scheduler", "inference"):
        assert services[name]["depends_on"] == {"repo": {"condition": "service_healthy"}}
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["s3"]["image"].startswith("versity/versitygw:")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_built_from_its_dockerfile_and_probed(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"]["dockerfile"] == f"services/{name}/Dockerfile"
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    port = PORTS[name]
    assert service["ports"] == [f"{port}:{port}"]
    assert environment(service)[f"TUSK_{name.upper()}_PORT"] == str(port)
    ready = "/readyz"  # inference too: per-model readiness is at /v2/models/{m}/ready
    assert f"http://127.0.0.1:{port}{ready}" in " ".join(service["healthcheck"]["test"])
    env = environment(service)
    assert env["TUSK_MIGRATE_ON_START"] == "false"
    assert env["TUSK_DATABASE_URL"].startswith("postgresql+asyncpg://")
    if name != "repo":
        assert env["TUSK_REPO_URL"] == "http://repo:8081"


def test_the_scheduler_runs_the_local_runner_in_its_container(compose: dict[str, Any]) -> None:
    env = environment(compose["services"]["scheduler"])
    assert env["TUSK_RUNNER"] == "local"
    assert env["TUSK_SCHEDULER_CODE_DIR"] == "/app"


def test_the_bucket_the_services_use_is_the_one_created(compose: dict[str, Any]) -> None:
    env = environment(compose["services"]["repo"])
    bucket = re.match(r"s3://([^/]+)", env["TUSK_OBJECT_STORE_URL"])
    assert bucket is not None
    init = " ".join(compose["services"]["s3-init"]["command"])
    assert f"--bucket {bucket.group(1)}" in init
    s3 = compose["services"]["s3"]["environment"]
    assert env["TUSK_S3_ACCESS_KEY_ID"] == s3["ROOT_ACCESS_KEY"]
    assert env["TUSK_S3_SECRET_ACCESS_KEY"] == s3["ROOT_SECRET_KEY"]
