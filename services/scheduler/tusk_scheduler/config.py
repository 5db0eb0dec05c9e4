from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tusk.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8083, alias="TUSK_SCHEDULER_PORT")
    repo_url: str = Field(
        default="http://127.0.0.1:8081",
        alias="TUSK_REPO_URL",
        description="The repo service: inputs, output commits and meta commits.",
    )
    trigger_url: str = Field(
        default="http://127.0.0.1:8082",
        alias="TUSK_TRIGGER_URL",
        description="The trigger service: the pipeline spec a job.created names, read once "
        "per pipeline version.",
    )
    token: str | None = Field(
        default=None,
        alias="TUSK_TOKEN",
        description="Bearer token for the repo and trigger APIs (an admin's: it asks for each "
        "job's worker credential). Workers never get it.",
    )
    runner: Literal["local", "kubernetes"] = Field(
        default="local",
        alias="TUSK_RUNNER",
        description="Where workers run: `local` (subprocesses) or `kubernetes` (pods).",
    )
    kube_namespace: str | None = Field(
        default=None,
        alias="TUSK_KUBE_NAMESPACE",
        description="Kubernetes runner: the namespace of worker pods; default: the "
        "kubeconfig context's, or the scheduler pod's own.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        alias="TUSK_KUBECONFIG",
        description="Kubernetes runner: a kubeconfig file; default: the pod's service "
        "account (in a cluster), else ~/.kube/config.",
    )
    kube_worker_image: str = Field(
        default="tusk-worker:latest",
        alias="TUSK_KUBE_WORKER_IMAGE",
        description="Kubernetes runner: the image of pipelines without transform.image.",
    )
    kube_worker_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None,
        alias="TUSK_KUBE_WORKER_IMAGE_PULL_POLICY",
        description="Kubernetes runner: the workers' imagePullPolicy; unset: Kubernetes' "
        "default (Always for :latest). IfNotPresent runs images built into the node "
        "(minikube) without a registry.",
    )
    kube_worker_service_account: str | None = Field(
        default="tusk-worker",
        alias="TUSK_KUBE_WORKER_SERVICE_ACCOUNT",
        description="Kubernetes runner: the workers' service account (its token is not mounted).",
    )
    kube_worker_repo_url: str | None = Field(
        default=None,
        alias="TUSK_KUBE_WORKER_REPO_URL",
        description="Kubernetes runner: the repo service as pods reach it; default: TUSK_REPO_URL.",
    )
    kube_worker_token_secret: str | None = Field(
        default=None,
        alias="TUSK_KUBE_WORKER_TOKEN_SECRET",
        description="Kubernetes runner: a Secret whose key `token` workers get as "
        "TUSK_TOKEN (instead of the token in plain pod env).",
    )
    kube_node_selector: dict[str, str] = Field(
        default_factory=dict,
        alias="TUSK_KUBE_NODE_SELECTOR",
        description='Kubernetes runner: nodeSelector of worker pods, as JSON {"k": "v"}.',
    )
    kube_tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        alias="TUSK_KUBE_TOLERATIONS",
        description="Kubernetes runner: tolerations of worker pods, as a JSON list.",
    )
    kube_image_pull_secrets: list[str] = Field(
        default_factory=list,
        alias="TUSK_KUBE_IMAGE_PULL_SECRETS",
        description="Kubernetes runner: names of image pull secrets, as a JSON list.",
    )
    kube_restricted: bool = Field(
        default=True,
        alias="TUSK_KUBE_RESTRICTED",
        description="Kubernetes runner: the restrictive security context (non-root, "
        "read-only root, no capabilities, RuntimeDefault seccomp).",
    )
    kube_run_as_user: int | None = Field(
        default=None,
        alias="TUSK_KUBE_RUN_AS_USER",
        description="Kubernetes runner: runAsUser/runAsGroup/fsGroup of worker pods.",
    )
    kube_unschedulable_timeout: float = Field(
        default=300.0,
        gt=0,
        alias="TUSK_KUBE_UNSCHEDULABLE_TIMEOUT",
        description="Kubernetes runner: seconds a pod may stay unschedulable before its "
        "shard fails with that reason.",
    )
    kube_node_lost_after: int | None = Field(
        default=60,
        ge=0,
        alias="TUSK_KUBE_NODE_LOST_AFTER",
        description="Kubernetes runner: seconds a worker pod tolerates a NotReady or "
        "unreachable node before it is evicted (and its shard runs elsewhere).",
    )
    kube_warm_pods: int = Field(
        default=1,
        ge=0,
        alias="TUSK_KUBE_WARM_PODS",
        description="Kubernetes runner: warm worker pods kept per pipeline that does not set "
        "autoscaling: true, made ahead so that the next job's shard starts without pod and "
        "worker start-up; each holds its pipeline's resource requests while idle. 0: none.",
    )
    kube_warm_port: int = Field(
        default=8090,
        ge=1,
        le=65535,
        alias="TUSK_KUBE_WARM_PORT",
        description="Kubernetes runner: the port a warm worker pod takes its shard on (the "
        "scheduler must be able to reach worker pods on it).",
    )
    kube_warm_handover_timeout: float = Field(
        default=2.0,
        gt=0,
        alias="TUSK_KUBE_WARM_HANDOVER_TIMEOUT",
        description="Kubernetes runner: seconds to wait for a warm pod that is still getting "
        "warm to take its shard before a new pod is made for it instead.",
    )
    workspace_dir: Path | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_WORKSPACE_DIR",
        description="The local runner's scratch space (staged inputs, worker logs); "
        "default: <data dir>/scheduler.",
    )
    worker_command: tuple[str, ...] | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_WORKER_COMMAND",
        description='The worker program as a JSON list, e.g. ["tusk-worker"]; default: the '
        "tusk-worker installed next to this Python.",
    )
    warm_workers: int = Field(
        default=2,
        ge=0,
        alias="TUSK_SCHEDULER_WARM_WORKERS",
        description="Local runner: workers kept started ahead of need (each about 50 MB), so a "
        "shard starts without the quarter second a worker's start-up takes; 0: none.",
    )
    max_local_workers: int = Field(
        default_factory=lambda: max(2, 2 * (os.cpu_count() or 1)),
        ge=1,
        alias="TUSK_SCHEDULER_MAX_LOCAL_WORKERS",
        description="Local runner: the most worker processes at once, across all jobs "
        "(running, starting and warm ones); a shard beyond it waits for a worker to end, and "
        "a larger parallelism_spec.constant is cut to it. Default: twice the CPUs, at least 2.",
    )
    code_dir: Path | None = Field(
        default=None,
        alias="TUSK_SCHEDULER_CODE_DIR",
        description="Local runner: the directory pipeline commands run in (relative paths in "
        "transform.cmd resolve there); default: the directory the scheduler was started in.",
    )
    max_running_jobs: int = Field(
        default=8,
        ge=1,
        alias="TUSK_SCHEDULER_MAX_RUNNING_JOBS",
        description="Jobs executing at once (across pipelines; one per pipeline at a time).",
    )
    poll_interval: float = Field(
        default=0.25,
        gt=0,
        alias="TUSK_SCHEDULER_POLL_INTERVAL",
        description="Seconds between looks at running workers and at their results.",
    )
    progress_interval: float = Field(
        default=2.0,
        gt=0,
        alias="TUSK_SCHEDULER_PROGRESS_INTERVAL",
        description="Least seconds between two job.progress events of a job.",
    )
    shard_attempts: int = Field(
        default=3,
        ge=1,
        alias="TUSK_SCHEDULER_SHARD_ATTEMPTS",
        description="Times a shard whose worker died without results is started again.",
    )
    log_tail_bytes: int = Field(
        default=16 * 1024,
        ge=0,
        alias="TUSK_SCHEDULER_LOG_TAIL_BYTES",
        description="How much of each datum's log the scheduler keeps (the whole log stays "
        "in the job's meta commit).",
    )
    cancel_grace: float = Field(
        default=10.0,
        ge=0,
        alias="TUSK_SCHEDULER_CANCEL_GRACE",
        description="Seconds a worker gets after SIGTERM before SIGKILL (more than the "
        "worker's own TUSK_WORKER_KILL_GRACE, so that it can stop its command first).",
    )
    spout_interval: float = Field(
        default=2.0,
        gt=0,
        alias="TUSK_SCHEDULER_SPOUT_INTERVAL",
        description="Seconds between looks at the spout pipelines (started, restarted when "
        "they die, stopped when deleted).",
    )
    # Egress (``egress: {URL: s3://…}``): the S3 server output commits are copied to. Unset,
    # botocore's own chain applies (AWS_* variables, profiles, instance roles, AWS_ENDPOINT_URL).
    egress_s3_endpoint_url: str | None = Field(
        default=None,
        alias="TUSK_EGRESS_S3_ENDPOINT_URL",
        description="Egress: an S3-compatible server other than AWS (e.g. http://minio:9000).",
    )
    egress_s3_region: str | None = Field(
        default=None, alias="TUSK_EGRESS_S3_REGION", description="Egress: the S3 region."
    )
    egress_s3_access_key_id: str | None = Field(
        default=None,
        alias="TUSK_EGRESS_S3_ACCESS_KEY_ID",
        description="Egress: the access key (with TUSK_EGRESS_S3_SECRET_ACCESS_KEY).",
    )
    egress_s3_secret_access_key: str | None = Field(
        default=None,
        alias="TUSK_EGRESS_S3_SECRET_ACCESS_KEY",
        description="Egress: the secret key.",
    )

    @property
    def resolved_workspace_dir(self) -> Path:
        return self.workspace_dir or self.data_dir / "scheduler"
