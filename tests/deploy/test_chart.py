"""charts/tusk: lint, render (default and development values), settings names, security, RBAC,
and acceptance by a real kube-apiserver (server-side dry run), with the scheduler's Role used
for real by the KubernetesRunner."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.backing.kube import SCHEDULER_NAMESPACE, KubeApiError, KubeApiServer
from tests.deploy.conftest import ALL_ENV_NAMES, CHART, SETTINGS, VALUES, env_names, render
from tests.deploy.tools import helm
from tests.scheduler.kube_fixtures import new_namespace
from tusk_scheduler.runners.base import SecretNotFound, ShardLaunch
from tusk_scheduler.runners.kubernetes import KubernetesRunner, PodTemplate

Rendered = tuple[str, list[dict[str, Any]]]
COMPONENTS = {"repo": 8081, "trigger": 8082, "scheduler": 8083, "inference": 8080, "console": 8084}
ROLE_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "get", "list", "watch", "delete", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["create", "get", "list", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "list", "delete"]},
]
# kind -> (API path prefix, plural); every kind the chart may render must be listed here.
RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict[str, Any]) -> str | None:
    return doc["metadata"]["labels"].get("app.kubernetes.io/component")


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint_strict(values: str) -> None:
    result = subprocess.run(
        [str(helm()), "lint", "--strict", str(CHART), *VALUES[values]],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_values_schema_rejects_unknown_keys_and_settings() -> None:
    for bad in ("repo.replica=2", "repo.env.REPO_PORT=1", "scheduler.runner=docker"):
        result = subprocess.run(
            [str(helm()), "template", "t", str(CHART), "--set", bad],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr, bad


def test_labels_are_the_conventional_ones(rendered: Rendered) -> None:
    _, docs = rendered
    for doc in docs:
        labels = doc["metadata"]["labels"]
        for key in (
            "helm.sh/chart",
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ):
            assert key in labels, (doc["kind"], doc["metadata"]["name"], key)


def test_every_configmap_setting_is_one_its_service_knows(rendered: Rendered) -> None:
    _, docs = rendered
    maps = of_kind(docs, "ConfigMap")
    assert {component(m) for m in maps.values()} == set(COMPONENTS)
    for doc in maps.values():
        name = component(doc)
        assert name is not None
        keys = set(doc["data"])
        unknown = keys - env_names(SETTINGS[name])
        assert not unknown, f"{name}: {sorted(unknown)}"
    for name, secret in of_kind(docs, "Secret").items():
        keys = {k for k in secret["stringData"] if k.startswith("TUSK_")}
        assert keys, name
        assert keys <= ALL_ENV_NAMES, (name, sorted(keys - ALL_ENV_NAMES))


def test_configmap_check_catches_a_renamed_setting() -> None:
    docs = render("--set", "repo.env.TUSK_REPO_CHUNK_BYTES=1")
    data = of_kind(docs, "ConfigMap")["tusk-repo"]["data"]
    assert "TUSK_REPO_CHUNK_BYTES" in data
    assert "TUSK_REPO_CHUNK_BYTES" not in env_names(SETTINGS["repo"])


def test_each_service_has_probes_resources_and_a_locked_down_pod(rendered: Rendered) -> None:
    _, docs = rendered
    deployments = of_kind(docs, "Deployment")
    for name, port in COMPONENTS.items():
        pod = deployments[f"tusk-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["ports"][0]["containerPort"] == port
        assert container["command"][:3] == ["uvicorn", "--factory", f"tusk_{name}.app:create_app"]
        live = "/v2/health/live" if name == "inference" else "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == live
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # Start-up is liveness: a fresh install has no model yet and must not restart forever.
        assert container["startupProbe"]["httpGet"]["path"] == live
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert_locked_down(pod, container)
        if name == "scheduler":
            assert pod["serviceAccountName"] == "tusk-scheduler"
            assert pod["automountServiceAccountToken"] is True
        else:
            assert pod["automountServiceAccountToken"] is False
            assert "serviceAccountName" not in pod


def assert_locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_the_migration_is_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = render()
    job = of_kind(docs, "Job")["tusk-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["tusk", "migrate"]
    assert pod["automountServiceAccountToken"] is False
    assert_locked_down(pod, container)
    secret = of_kind(docs, "Secret")["tusk-migrate"]  # hooks run before the release's Secret
    assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"
    ref = container["env"][1]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "tusk-migrate", "key": "TUSK_DATABASE_URL"}
    for cm in of_kind(docs, "ConfigMap").values():
        assert cm["data"]["TUSK_MIGRATE_ON_START"] == "false"


def test_development_values_run_backing_services_in_the_cluster() -> None:
    docs = render(*VALUES["dev"])
    deployments = of_kind(docs, "Deployment")
    assert {"tusk-postgresql", "tusk-kafka", "tusk-s3"} <= set(deployments)
    assert "tusk-migrate" not in of_kind(docs, "Job")  # no database before install: on start
    cm = of_kind(docs, "ConfigMap")["tusk-repo"]["data"]
    assert cm["TUSK_KAFKA_BOOTSTRAP"] == "tusk-kafka:9092"
    assert cm["TUSK_S3_ENDPOINT_URL"] == "http://tusk-s3:7070"
    assert cm["TUSK_MIGRATE_ON_START"] == "true"
    url = of_kind(docs, "Secret")["tusk"]["stringData"]["TUSK_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    assert "@tusk-postgresql:5432/" in url
    default = render()
    assert not {"tusk-postgresql", "tusk-kafka", "tusk-s3"} & set(of_kind(default, "Deployment"))


def test_the_scheduler_role_is_exactly_the_runners(rendered: Rendered) -> None:
    _, docs = rendered
    (role,) = of_kind(docs, "Role").values()
    assert role["rules"] == ROLE_RULES
    (binding,) = of_kind(docs, "RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tusk-scheduler", "namespace": "tusk"}
    ]
    accounts = of_kind(docs, "ServiceAccount")
    assert accounts["tusk-worker"]["automountServiceAccountToken"] is False
    assert not of_kind(docs, "ClusterRole")
    assert not of_kind(docs, "ClusterRoleBinding")
    cm = of_kind(docs, "ConfigMap")["tusk-scheduler"]["data"]
    assert cm["TUSK_RUNNER"] == "kubernetes"
    assert cm["TUSK_KUBE_NAMESPACE"] == "tusk"
    assert cm["TUSK_KUBE_WORKER_SERVICE_ACCOUNT"] == "tusk-worker"


def test_inference_scales_with_an_hpa() -> None:
    docs = render()
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["tusk-inference"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tusk-inference"
    assert "replicas" not in of_kind(docs, "Deployment")["tusk-inference"]["spec"]


# -- a real kube-apiserver


def path_of(doc: dict[str, Any], namespace: str) -> str:
    prefix, plural = RESOURCES[doc["kind"]]
    return f"{prefix}/namespaces/{namespace}/{plural}/{doc['metadata']['name']}"


def apply(kube: KubeApiServer, doc: dict[str, Any], namespace: str, dry_run: bool) -> Any:
    query = "?fieldManager=tusk-tests&force=true&fieldValidation=Strict" + (
        "&dryRun=All" if dry_run else ""
    )
    return kube.api(
        "PATCH", path_of(doc, namespace) + query, doc, content_type="application/apply-patch+yaml"
    )


def test_the_apiserver_accepts_every_manifest(kube: KubeApiServer, rendered: Rendered) -> None:
    values, _ = rendered
    namespace = new_namespace(kube, f"chart-{values}")
    docs = render(*VALUES[values], namespace=namespace)
    problems = []
    for doc in docs:
        assert doc["kind"] in RESOURCES, f"add {doc['kind']} to RESOURCES"
        try:
            applied = apply(kube, doc, namespace, dry_run=True)
        except KubeApiError as e:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {e}")
            continue
        assert applied["metadata"]["namespace"] == namespace
    assert not problems, "\n".join(problems)


def test_the_dev_s3_pod_creates_its_own_bucket() -> None:
    """versitygw keeps the bucket in its pod's emptyDir, and the pod is replaced whenever its
    template changes (each skaffold run labels it with a new run id): a one-shot bucket Job
    left the new pod without a bucket, and the repo service, which checks the bucket on start,
    never became Ready. The pod makes the bucket itself and is Ready only once it exists."""
    docs = render(*VALUES["dev"])
    assert not of_kind(docs, "Job")  # nothing one-shot that a new versitygw pod would miss
    pod = of_kind(docs, "Deployment")["tusk-s3"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"versitygw", "bucket"}
    url = of_kind(docs, "ConfigMap")["tusk-repo"]["data"]["TUSK_OBJECT_STORE_URL"]
    bucket = url.removeprefix("s3://").split("/")[0]
    script = containers["bucket"]["args"][0]
    # this pod's own server: the Service has no endpoint until the pod is Ready
    assert f"--endpoint-url http://127.0.0.1:7070 s3api create-bucket --bucket {bucket}" in script
    assert containers["bucket"]["readinessProbe"]["exec"]["command"] == [
        "test",
        "-f",
        "/tmp/created",
    ]
    assert "touch /tmp/created" in script
    assert containers["bucket"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in containers["bucket"]["volumeMounts"]


def launch() -> ShardLaunch:
    return ShardLaunch(
        job=uuid.uuid4().hex,
        pipeline="chart",
        shard=0,
        attempt=0,
        output_repo="out",
        meta_commit="c" * 32,
        image="tusk/worker:0.1.0",
        resource_requests={"cpu": "100m"},
        resource_limits={"memory": "256Mi"},
        env={},
        secrets=(),
        version=1,
    )


async def test_the_chart_role_is_enough_for_the_runner_and_no_more(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    # Rendered for the namespace the apiserver's scheduler identity lives in, applied for real
    # into a fresh one: the binding's subject is that identity, the Role grants only there.
    docs = render(namespace=SCHEDULER_NAMESPACE)
    namespace = new_namespace(kube, "chart-rbac")
    for doc in (*of_kind(docs, "Role").values(), *of_kind(docs, "RoleBinding").values()):
        apply(kube, doc, namespace, dry_run=False)

    def allowed(
        verb: str, resource: str, subresource: str = "", ns: str = namespace, group: str = ""
    ) -> bool:
        review = kube.api(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": kube.scheduler_user,
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": {
                        "namespace": ns,
                        "group": group,
                        "verb": verb,
                        "resource": resource,
                        "subresource": subresource,
                    },
                },
            },
        )
        return bool(review["status"].get("allowed"))

    for verb in ("create", "get", "list", "watch", "delete", "patch"):  # patch: warm pods
        assert allowed(verb, "pods"), verb
    assert allowed("get", "pods", "log")
    for verb in ("create", "get", "list", "update", "delete"):  # spouts and services
        assert allowed(verb, "deployments", group="apps"), verb
    for verb in ("create", "list", "delete"):
        assert allowed(verb, "services"), verb
    assert allowed("get", "secrets")  # an SQL egress's password, by name
    assert not allowed("patch", "deployments", "scale", group="apps")
    for verb, resource, sub in [
        ("update", "pods", ""),
        ("deletecollection", "pods", ""),
        ("create", "pods", "exec"),
        ("patch", "pods", "status"),
        ("list", "secrets", ""),
        ("watch", "secrets", ""),
        ("list", "configmaps", ""),
        ("create", "statefulsets", ""),
    ]:
        assert not allowed(verb, resource, sub), (verb, resource, sub)
    assert not allowed("list", "pods", ns="default")

    config = kube.write_kubeconfig(tmp_path / "scheduler", token=kube.scheduler_token)
    runner = KubernetesRunner(
        PodTemplate(repo_url="http://tusk-repo:8081"),
        namespace=namespace,
        kubeconfig=config,
        cancel_grace=0,
    )
    try:
        handle = await runner.start(launch())
        assert (await runner.status(handle)).running
        assert await runner.find_running(handle.job) == [handle]
        await runner.output(handle, 100)  # pods/log
        kube.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            {"metadata": {"name": "egress-db"}, "stringData": {"PASSWORD": "s3cret"}},
        )
        assert await runner.read_secret("egress-db", "PASSWORD") == "s3cret"
        with pytest.raises(SecretNotFound, match="has no key 'OTHER'"):
            await runner.read_secret("egress-db", "OTHER")
        with pytest.raises(SecretNotFound, match="no Secret 'nosuch'"):
            await runner.read_secret("nosuch", "PASSWORD")
        await runner.cancel(handle)
        await runner.cleanup(handle.job)
        assert (await runner.status(handle)).state == "lost"
    finally:
        await runner.close()


@pytest.mark.parametrize(
    "change",
    [
        "config.logLevel=DEBUG",  # common config, in every service's ConfigMap
        "repo.env.TUSK_REPO_CHUNK_BYTES=1048576",
        "secrets.apiTokens=rotated",  # the Secret every pod reads
        "secrets.s3SecretAccessKey=rotated",
    ],
)
def test_every_config_change_rolls_the_pods_that_read_it(change: str) -> None:
    """`helm upgrade` restarts a pod only when its template changes: the checksum annotations
    must cover the common settings and the Secret, not only the service's own values."""

    def annotations() -> dict[str, dict[str, str]]:
        return {
            name: d["spec"]["template"]["metadata"]["annotations"]
            for name, d in of_kind(docs, "Deployment").items()
        }

    docs = render()
    before = annotations()
    docs = render("--set", change)
    after = annotations()
    changed = {name for name in before if before[name] != after[name]}
    expected = {"tusk-repo"} if change.startswith("repo.") else set(before)
    assert changed == expected, (change, changed)
