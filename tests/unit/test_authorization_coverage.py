"""Every route of every service says who may call it: an authorization dependency, or it is
one of the few public paths (health probes, docs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.routes import authorized, routes
from tusk_inference.app import create_app as inference_app
from tusk_inference.config import InferenceSettings
from tusk_repo.app import create_app as repo_app
from tusk_repo.config import RepoSettings
from tusk_scheduler.app import create_app as scheduler_app
from tusk_scheduler.config import SchedulerSettings
from tusk_trigger.app import create_app as trigger_app
from tusk_trigger.config import TriggerSettings

DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def apps(tmp_path: Path) -> dict[str, FastAPI]:
    common = {"data_dir": tmp_path, "api_tokens": "t"}
    return {
        "repo": repo_app(RepoSettings(**common)),  # type: ignore[arg-type]
        "trigger": trigger_app(TriggerSettings(**common)),  # type: ignore[arg-type]
        "scheduler": scheduler_app(SchedulerSettings(**common)),  # type: ignore[arg-type]
        "inference": inference_app(InferenceSettings(**common)),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("service", ["repo", "trigger", "scheduler", "inference"])
def test_every_route_checks_who_calls_it(service: str, tmp_path: Path) -> None:
    app = apps(tmp_path)[service]
    unchecked = []
    documented = 0
    for route in routes(app):
        if route.path in DOCS:
            continue
        if route.dependant is None:  # plain Starlette routes: inference's hot path and probes
            assert service == "inference", route.path
            assert route.path.endswith("/infer") or route.path in app.state.public_paths, (
                route.path
            )
            continue
        documented += 1
        if not authorized(route.dependant):
            unchecked.append(f"{sorted(route.methods)} {route.path}")
    assert documented > 3
    assert unchecked == []


def test_only_probes_and_docs_are_public_and_metrics_is_not(tmp_path: Path) -> None:
    for name, app in apps(tmp_path).items():
        public = set(app.state.public_paths)
        assert "/metrics" not in public, name
        assert public - DOCS <= {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}
