"""OPTIONS is answered, and a 405 names every method of the path (Starlette named only the
methods of the first route whose path matched)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tusk_inference.app import create_app as inference_app
from tusk_inference.config import InferenceSettings
from tusk_repo.app import create_app as repo_app
from tusk_repo.config import RepoSettings
from tusk_trigger.app import create_app as trigger_app
from tusk_trigger.config import TriggerSettings


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/repos", "GET, OPTIONS, POST"),
        ("/v1/repos/raw", "DELETE, GET, OPTIONS"),
        ("/v1/repos/raw/commits/master/file", "DELETE, GET, OPTIONS, PUT"),
        ("/healthz", "GET, OPTIONS"),
    ],
)
async def test_options_and_405_name_every_method_of_the_path(
    tmp_path: Path, path: str, allowed: str
) -> None:
    app = repo_app(RepoSettings(data_dir=tmp_path))  # type: ignore[call-arg]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://repo"
    ) as client:
        options = await client.options(path)
        assert options.status_code == 204
        assert options.headers["allow"] == allowed
        refused = await client.patch(path)
        assert refused.status_code == 405
        assert refused.headers["allow"] == allowed
        assert (await client.options("/v1/nowhere")).status_code == 404


async def test_the_inference_hot_path_answers_options(tmp_path: Path) -> None:
    app = inference_app(InferenceSettings(data_dir=tmp_path))  # type: ignore[call-arg]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://inference"
    ) as client:
        options = await client.options("/v2/models/m/versions/0123abcd/infer")
        assert options.status_code == 204
        assert options.headers["allow"] == "OPTIONS, POST"
        assert (await client.get("/v2/models/m/infer")).headers["allow"] == "OPTIONS, POST"


@pytest.mark.parametrize("service", ["repo", "trigger"])
def test_every_link_leads_to_an_operation(tmp_path: Path, service: str) -> None:
    if service == "repo":
        document = repo_app(RepoSettings(data_dir=tmp_path)).openapi()  # type: ignore[call-arg]
    else:
        app = trigger_app(TriggerSettings(data_dir=tmp_path))  # type: ignore[call-arg]
        document = app.openapi()
    operations = {
        op["operationId"]: path for path, ops in document["paths"].items() for op in ops.values()
    }
    links = [
        link
        for ops in document["paths"].values()
        for op in ops.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 4
    for link in links:
        target = operations[link["operationId"]]
        for parameter in link["parameters"]:
            assert "{" + parameter + "}" in target, (link, target)
