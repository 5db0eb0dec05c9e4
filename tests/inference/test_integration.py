"""Against real backing services: the repo service on PostgreSQL + S3 behind a real HTTP
server, publishing to a real Kafka broker; the inference service reading that broker and that
server exactly as in production (its own KafkaBus and RepoClient, from its settings)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.backing.kafka import KafkaBroker
from tests.backing.postgres import PostgresServer
from tests.backing.s3 import S3Server
from tests.conftest import real_settings
from tests.inference import models
from tests.inference.conftest import affine_request, commit_files, serve_app
from tusk.client import RepoClient
from tusk_inference.app import create_app
from tusk_inference.config import InferenceSettings
from tusk_inference.context import Context, build_context
from tusk_repo.app import create_app as create_repo_app
from tusk_repo.context import build_context as build_repo_context

pytestmark = [pytest.mark.kafka, pytest.mark.s3, pytest.mark.postgres]


@pytest.fixture(scope="session")
def inference_kafka() -> Iterator[KafkaBroker]:
    broker = KafkaBroker(num_partitions=3)
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
async def repo_service(
    postgres: PostgresServer, s3: S3Server, inference_kafka: KafkaBroker, tmp_path: Path
) -> AsyncIterator[str]:
    """The repo service, its events on Kafka; its base URL."""
    settings = real_settings(postgres, s3, tmp_path, kafka_bootstrap=inference_kafka.bootstrap)
    async with (
        build_repo_context(settings) as context,
        serve_app(create_repo_app(context=context)) as address,
    ):
        yield f"http://{address}"


async def test_models_follow_their_branch_through_kafka(
    repo_service: str, inference_kafka: KafkaBroker
) -> None:
    repo = f"train-{uuid.uuid4().hex[:8]}"
    async with RepoClient(repo_service) as repos:
        raw = await commit_files(repos, f"raw-{repo}", {"/day.csv": b"x\n1\n"})
        first = await commit_files(
            repos, repo, {"/model.onnx": models.affine(scale=1.0)}, provenance=[raw]
        )
        settings = InferenceSettings(  # type: ignore[call-arg]
            TUSK_MODELS=f"credit={repo}@master:/model.onnx",
            TUSK_REPO_URL=repo_service,
            kafka_bootstrap=inference_kafka.bootstrap,
            TUSK_INFERENCE_WARMUP_RUNS=3,
        )
        async with build_context(settings) as context:
            await asyncio.wait_for(context.service.wait_loaded(), 30)
            # No wait for the reader to "settle": its position was fixed when it subscribed.
            assert context.registry.resolve("credit").commit == first.id
            app = create_app(context=context)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://inference"
            ) as http:
                answers: list[httpx.Response] = []
                stop = asyncio.Event()

                async def client() -> None:
                    while not stop.is_set():
                        answers.append(
                            await http.post(
                                "/v2/models/credit/infer", json=affine_request([[1, 1, 1, 1]])
                            )
                        )
                        await asyncio.sleep(0.002)

                clients = [asyncio.create_task(client()) for _ in range(4)]
                try:
                    second = await commit_files(
                        repos, repo, {"/model.onnx": models.affine(scale=2.0)}, provenance=[raw]
                    )
                    await _until_serving(context, second.id)
                    corrupt = await commit_files(repos, repo, {"/model.onnx": models.CORRUPT})
                    await _until_failed(context, corrupt.id)
                    await asyncio.sleep(0.1)
                finally:
                    stop.set()
                    await asyncio.gather(*clients)
                assert answers
                assert all(a.status_code == 200 for a in answers)
                versions = {a.json()["model_version"] for a in answers}
                assert second.id in versions
                final = (
                    await http.post("/v2/models/credit/infer", json=affine_request([[1, 1, 1, 1]]))
                ).json()
                assert final["model_version"] == second.id
                assert final["outputs"][0]["data"] == [3.0] * 4
                assert final["parameters"]["data_commits"] == f"raw-{repo}@{raw.id}"
                metadata = (await http.get("/v2/models/credit")).json()
                assert metadata["parameters"]["last_error_commit"] == corrupt.id


async def _until_serving(context: Context, commit: str) -> None:
    slot = context.registry.slot("credit")

    async def wait() -> None:
        while slot.latest is None or slot.latest.commit != commit:
            await context.service.changed()

    await asyncio.wait_for(wait(), 30)


async def _until_failed(context: Context, commit: str) -> None:
    slot = context.registry.slot("credit")

    async def wait() -> None:
        while slot.last_failure is None or slot.last_failure.commit != commit:
            await context.service.changed()

    await asyncio.wait_for(wait(), 30)
