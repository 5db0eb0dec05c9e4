"""Spouts and service pipelines on the Kubernetes runner, against a real kube-apiserver (no
kubelet: the objects are what is checked) and a repo service that checks tokens: a Deployment
per spout, a Deployment and a Service per service pipeline; created when the pipeline appears,
replaced when it changes or its input moves, deleted with it; adopted, not duplicated, by a
restarted scheduler; each with a credential of its own, revoked when it is replaced."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.backing.kube import (
    KubeApiError,
    KubeApiServer,
)
from tests.deploy.test_chart import ROLE_RULES
from tests.scheduler.conftest import clean_env, scheduler_settings
from tests.scheduler.helpers import commit_files, unique
from tests.scheduler.kube_fixtures import bind_role, new_namespace
from tests.scheduler.spout_helpers import PipelineList
from tests.scheduler.test_worker_credentials import ROOT, secured_repo_url
from tusk.client import RepoClient
from tusk.errors import Forbidden, Unauthorized
from tusk.wire.spouts import SpoutPlace
from tusk_scheduler.background.spouts import SpoutSupervisor
from tusk_scheduler.context import kube_workloads
from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate

__all__ = ["secured_repo_url"]  # the repo service that checks tokens, shared

TEMPLATE = PodTemplate(repo_url="http://repo.tusk:8081", run_as_user=1000)


@pytest.fixture
def namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube, "spouts")


@pytest.fixture
async def root(secured_repo_url: str) -> AsyncIterator[RepoClient]:
    async with RepoClient(secured_repo_url, ROOT) as client:
        yield client


class Scheduler:
    """A scheduler's spout supervisor: each ``reconcile`` is a new process's (its own runner,
    client and supervisor, nothing remembered), as after a restart."""

    def __init__(
        self, kube: KubeApiServer, namespace: str, tmp: Path, repo_url: str, repos: RepoClient
    ) -> None:
        self.kube, self.namespace, self.tmp = kube, namespace, tmp
        self.repo_url, self.repos = repo_url, repos
        self.pipelines = PipelineList()
        self.token: str | None = None  # the scheduler's identity; None: an admin's

    async def reconcile(self) -> None:
        config = self.kube.write_kubeconfig(
            self.tmp / "kubeconfig", token=self.token, namespace=self.namespace
        )
        runner = KubernetesRunner(TEMPLATE, kubeconfig=config)
        settings = scheduler_settings(
            self.tmp, self.repo_url, TUSK_TOKEN=ROOT, TUSK_RUNNER="kubernetes"
        )
        try:
            supervisor = SpoutSupervisor(
                settings,
                self.pipelines,
                self.repos,
                kubernetes=kube_workloads(runner),  # type: ignore[arg-type]
            )
            await supervisor.reconcile()
        finally:
            await runner.close()

    async def where(self, pipeline: str, *, exposed: bool = False) -> SpoutPlace:
        config = self.kube.write_kubeconfig(
            self.tmp / "kubeconfig", token=self.token, namespace=self.namespace
        )
        runner = KubernetesRunner(TEMPLATE, kubeconfig=config)
        try:
            workloads = kube_workloads(runner)
            assert workloads is not None
            return await workloads.where(pipeline, "spout", exposed=exposed)
        finally:
            await runner.close()

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        base = (
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
            if kind == "deployment"
            else f"/api/v1/namespaces/{self.namespace}/services"
        )
        try:
            found: dict[str, Any] = self.kube.api("GET", f"{base}/{name}")
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise
        return found

    def names(self, kind: str) -> list[str]:
        base = (
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
            if kind == "deployment"
            else f"/api/v1/namespaces/{self.namespace}/services"
        )
        return sorted(i["metadata"]["name"] for i in self.kube.api("GET", base)["items"])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def spout_spec(name: str, mode: str = "a") -> dict[str, Any]:
    return {
        "pipeline": {"name": name},
        "spout": {"overwrite": True},
        "transform": {
            "image": "registry.example/feeds:1",
            "cmd": ["python3", "/code/feed.py"],
            "env": {"MODE": mode},
        },
        "resource_requests": {"cpu": "250m", "memory": "128Mi"},
    }


async def test_a_spout_is_a_deployment_made_replaced_adopted_and_deleted(
    kube: KubeApiServer, namespace: str, tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    name = unique("feed")
    await root.create_repo(name)
    other = unique("other")
    await root.create_repo(other)
    scheduler = Scheduler(kube, namespace, tmp_path, secured_repo_url, root)
    scheduler.pipelines.put(spout_spec(name))
    await scheduler.reconcile()

    deployment = scheduler.get("deployment", f"tusk-spout-{name}")
    assert deployment is not None, scheduler.names("deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # one committer at a time
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "tusk-scheduler"
    assert labels["app.kubernetes.io/component"] == "spout"
    assert labels["tusk.io/pipeline"] == name
    assert labels["tusk.io/pipeline-version"] == "1"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"  # Kubernetes restarts a spout that dies
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/feeds:1"
    assert container["command"] == ["python3", "/code/feed.py"]
    assert "args" not in container
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = env_of(container)
    assert env["TUSK_REPO_URL"] == "http://repo.tusk:8081"
    assert env["TUSK_OUTPUT_REPO"] == name
    assert env["TUSK_OUTPUT_BRANCH"] == "master"
    assert env["PPS_PIPELINE_NAME"] == name
    assert env["TUSK_SPOUT_OVERWRITE"] == "true"
    assert env["MODE"] == "a"
    token = env["TUSK_TOKEN"]
    assert token != ROOT  # never the scheduler's own

    # The spout's credential: its own commits into its output repo, nothing elsewhere.
    async with RepoClient(secured_repo_url, token) as spout:
        started = await spout.start_commit(name, "master", pipeline=name)
        await spout.put_file(name, started.id, "/m.txt", b"message")
        await spout.finish_commit(name, started.id)
        abandoned = await spout.start_commit(name, "master", pipeline=name)
        await spout.abandon_commit(name, abandoned.id)
        with pytest.raises(Forbidden):
            await spout.start_commit(other, "master")
        with pytest.raises(Forbidden):
            await spout.delete_repo(name)
    assert [f.path async for f in root.walk(name, "master", "/")] == ["/m.txt"]

    place = await scheduler.where(name)
    assert (place.kind, place.runner, place.running) == ("spout", "kubernetes", True)
    assert (place.namespace, place.deployment) == (namespace, f"tusk-spout-{name}")
    assert place.where.startswith(f"Deployment tusk-spout-{name} in namespace {namespace} (")
    assert (place.logs, place.log_cursor) == ("", None)  # no kubelet here: no pod, no log

    # A restarted scheduler adopts it: not replaced, not duplicated, no new credential.
    before = deployment["metadata"]["resourceVersion"]
    await scheduler.reconcile()
    await scheduler.reconcile()
    assert scheduler.names("deployment") == [f"tusk-spout-{name}"]
    again = scheduler.get("deployment", f"tusk-spout-{name}")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == before
    assert again["metadata"]["uid"] == deployment["metadata"]["uid"]

    # A new version replaces it in place (rolling its pod) with a new credential; the old
    # credential is revoked.
    scheduler.pipelines.put(spout_spec(name, mode="b"), version=2)
    await scheduler.reconcile()
    replaced = scheduler.get("deployment", f"tusk-spout-{name}")
    assert replaced is not None
    assert replaced["metadata"]["uid"] == deployment["metadata"]["uid"]
    assert replaced["metadata"]["labels"]["tusk.io/pipeline-version"] == "2"
    (container,) = replaced["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["MODE"] == "b"
    assert env_of(container)["TUSK_TOKEN"] != token
    async with RepoClient(secured_repo_url, token) as old:
        with pytest.raises(Unauthorized):
            await old.start_commit(name, "master", pipeline=name)

    # Stopped or deleted: the Deployment goes, and its credential is revoked.
    newer = env_of(container)["TUSK_TOKEN"]
    scheduler.pipelines.specs.clear()
    await scheduler.reconcile()
    assert scheduler.get("deployment", f"tusk-spout-{name}") is None
    async with RepoClient(secured_repo_url, newer) as gone:
        with pytest.raises(Unauthorized):
            await gone.start_commit(name, "master", pipeline=name)


async def test_a_spout_with_a_service_gets_the_port_and_a_service_of_its_own(
    kube: KubeApiServer, namespace: str, tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    """``spout.service`` (a spout that also takes data in, e.g. webhooks): the port in the
    spout's pod and env, and a Service named as its Deployment; gone when the spec drops it."""
    name = unique("hook")
    await root.create_repo(name)
    scheduler = Scheduler(kube, namespace, tmp_path, secured_repo_url, root)
    served = {**spout_spec(name), "spout": {"service": {"internal_port": 9000}}}
    scheduler.pipelines.put(served)
    await scheduler.reconcile()

    deployment = scheduler.get("deployment", f"tusk-spout-{name}")
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "service", "containerPort": 9000, "protocol": "TCP"}]
    assert env_of(container)["TUSK_SERVICE_PORT"] == "9000"
    assert "initContainers" not in deployment["spec"]["template"]["spec"]  # no inputs
    svc = scheduler.get("service", f"tusk-spout-{name}")
    assert svc is not None
    assert svc["spec"]["type"] == "ClusterIP"
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9000, 9000)
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    place = await scheduler.where(name, exposed=True)
    assert place.service == f"tusk-spout-{name}"

    scheduler.pipelines.put(spout_spec(name), version=2)  # spout.service removed
    await scheduler.reconcile()
    assert scheduler.get("service", f"tusk-spout-{name}") is None
    kept = scheduler.get("deployment", f"tusk-spout-{name}")
    assert kept is not None
    (container,) = kept["spec"]["template"]["spec"]["containers"]
    assert "ports" not in container
    assert "TUSK_SERVICE_PORT" not in env_of(container)


async def test_a_service_is_a_deployment_and_a_node_port_rolled_when_its_input_moves(
    kube: KubeApiServer, namespace: str, tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    site, name = unique("site"), unique("web")
    await root.create_repo(site)
    await root.create_repo(name)
    scheduler = Scheduler(kube, namespace, tmp_path, secured_repo_url, root)
    scheduler.pipelines.put(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"name": "pages", "repo": site, "glob": "/"}},
            "transform": {"image": "registry.example/web:2", "cmd": ["serve", "/pfs/pages"]},
            "service": {
                "internal_port": 8080,
                "external_port": 30080,
                "annotations": {"example.com/team": "web"},
            },
        }
    )
    await scheduler.reconcile()
    assert scheduler.names("deployment") == []  # no input commit yet: nothing to serve

    first = await commit_files(root, site, {"/index.html": b"one"})
    await scheduler.reconcile()
    deployment = scheduler.get("deployment", f"tusk-service-{name}")
    assert deployment is not None
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["revisionHistoryLimit"] == 2  # it rolls on every input commit
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["tusk.io/inputs"] == f"pages={site}@{first}"
    (stage,) = template["spec"]["initContainers"]
    assert stage["image"] == "registry.example/web:2"
    assert stage["command"] == ["tusk-worker", "stage"]
    assert stage["args"] == [f"pages={site}@{first}"]
    assert env_of(stage)["TUSK_PFS_ROOT"] == "/pfs"
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["serve", "/pfs/pages"]
    assert container["ports"] == [{"name": "service", "containerPort": 8080, "protocol": "TCP"}]
    env = env_of(container)
    assert env["pages"] == "/pfs/pages"
    assert env["pages_COMMIT"] == first
    assert env["TUSK_SERVICE_PORT"] == "8080"
    # The service's credential reads its input (what the init container stages with it).
    async with RepoClient(secured_repo_url, env["TUSK_TOKEN"]) as service:
        assert [f.path async for f in service.walk(site, first, "/")] == ["/index.html"]
        with pytest.raises(Forbidden):
            await service.start_commit(name, "master")

    svc = scheduler.get("service", f"tusk-service-{name}")
    assert svc is not None
    assert svc["spec"]["type"] == "NodePort"
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (8080, 8080, 30080)
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["annotations"]["example.com/team"] == "web"

    # Adopted by a restarted scheduler.
    await scheduler.reconcile()
    assert scheduler.names("deployment") == [f"tusk-service-{name}"]
    assert scheduler.names("service") == [f"tusk-service-{name}"]
    same = scheduler.get("deployment", f"tusk-service-{name}")
    assert same is not None
    assert same["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]

    # The input moves: the pod template names the new commit (which rolls the pods); the
    # Service stays as it is.
    second = await commit_files(root, site, {"/index.html": b"two"})
    await scheduler.reconcile()
    rolled = scheduler.get("deployment", f"tusk-service-{name}")
    assert rolled is not None
    assert rolled["metadata"]["uid"] == deployment["metadata"]["uid"]
    annotations = rolled["spec"]["template"]["metadata"]["annotations"]
    assert annotations["tusk.io/inputs"] == f"pages={site}@{second}"
    assert rolled["spec"]["template"]["spec"]["initContainers"][0]["args"] == [
        f"pages={site}@{second}"
    ]
    kept = scheduler.get("service", f"tusk-service-{name}")
    assert kept is not None
    assert kept["metadata"]["uid"] == svc["metadata"]["uid"]

    scheduler.pipelines.specs.clear()
    await scheduler.reconcile()
    assert scheduler.get("deployment", f"tusk-service-{name}") is None
    assert scheduler.get("service", f"tusk-service-{name}") is None


async def test_the_stage_command_downloads_a_services_inputs(
    tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    """What a service pod's init container runs: the worker's staging of whole commits."""
    site = unique("site")
    await root.create_repo(site)
    commit = await commit_files(root, site, {"/index.html": b"home", "/a/b.txt": b"deep"})
    issued = await root.create_worker_token(
        job="a" * 32, pipeline="web", output_repo="web", read_repos=[site], write_commits=[]
    )
    pfs = tmp_path / "pfs"
    worker = Path(sys.executable).parent / "tusk-worker"
    env = clean_env(TUSK_REPO_URL=secured_repo_url, TUSK_TOKEN=issued.token, TUSK_PFS_ROOT=str(pfs))
    done = subprocess.run(
        [str(worker), "stage", f"pages={site}@{commit}"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (pfs / "pages" / "index.html").read_bytes() == b"home"
    assert (pfs / "pages" / "a" / "b.txt").read_bytes() == b"deep"
    assert (pfs / "out").is_dir()

    refused = subprocess.run(
        [str(worker), "stage", "no-equals-sign"], env=env, capture_output=True, timeout=120
    )
    assert refused.returncode != 0
    assert b"NAME=REPO@COMMIT" in refused.stderr


async def test_the_charts_role_is_enough_for_spouts_and_services(
    kube: KubeApiServer, namespace: str, tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    """As the scheduler's own identity, bound to the Role the Helm chart makes, no more."""
    bind_role(kube, namespace, ROLE_RULES)
    site, name, feed = unique("site"), unique("web"), unique("feed")
    for repo in (site, name, feed):
        await root.create_repo(repo)
    await commit_files(root, site, {"/index.html": b"one"})
    scheduler = Scheduler(kube, namespace, tmp_path, secured_repo_url, root)
    scheduler.token = kube.scheduler_token
    scheduler.pipelines.put(spout_spec(feed))
    scheduler.pipelines.put(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": site, "glob": "/"}},
            "transform": {"cmd": ["serve"]},
            "service": {"internal_port": 8080},
        }
    )
    await scheduler.reconcile()
    assert scheduler.names("deployment") == sorted([f"tusk-service-{name}", f"tusk-spout-{feed}"])
    assert scheduler.names("service") == [f"tusk-service-{name}"]
    scheduler.pipelines.put(spout_spec(feed, mode="b"), version=2)
    await scheduler.reconcile()  # replaced: get and update
    scheduler.pipelines.specs.clear()
    await scheduler.reconcile()
    assert scheduler.names("deployment") == []
    assert scheduler.names("service") == []


async def test_a_refused_service_does_not_hold_up_the_others(
    kube: KubeApiServer, namespace: str, tmp_path: Path, secured_repo_url: str, root: RepoClient
) -> None:
    """A NodePort outside the cluster's range is refused by the apiserver: that pipeline is
    said to be not deployed, and the spout beside it runs all the same."""
    site, name, feed = unique("site"), unique("web"), unique("feed")
    for repo in (site, name, feed):
        await root.create_repo(repo)
    await commit_files(root, site, {"/index.html": b"one"})
    scheduler = Scheduler(kube, namespace, tmp_path, secured_repo_url, root)
    scheduler.pipelines.put(
        {
            "pipeline": {"name": name},
            "input": {"pfs": {"repo": site, "glob": "/"}},
            "transform": {"cmd": ["serve"]},
            "service": {"internal_port": 8080, "external_port": 80},
        }
    )
    scheduler.pipelines.put(spout_spec(feed))
    await scheduler.reconcile()
    await scheduler.reconcile()  # refused again: still no error out of the look
    assert f"tusk-spout-{feed}" in scheduler.names("deployment")
    assert scheduler.names("service") == []
