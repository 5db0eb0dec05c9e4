"""Faults of a pipeline's pods on the real cluster: each ends in a clear error in
`tusk job inspect` and in the pods' events (`kubectl describe`), and nothing hangs.

A node lost mid-job and an image that does not exist are in test_kubernetes.py.
"""

from __future__ import annotations

from pathlib import Path

from e2e.kube import UNPULLABLE_WITHIN, job_pods_prefix, kubelet_events, pipeline_spec, run_to_end

# A worker that keeps running out of memory is started again `shard_attempts` (3) times, each
# start a pod: a few minutes on a loaded machine, not the hour a hung job would take.
OOM_WITHIN = 600.0


def test_a_pod_out_of_memory_fails_the_job_saying_so(
    release: dict[str, str], tmp_path: Path
) -> None:
    env = release
    # One gibibyte written (so resident) under a 128 MiB limit: the kernel kills the datum.
    spec = pipeline_spec(
        tmp_path,
        "oom",
        "tusk/worker:0.1.0",
        ["python", "-c", "data = b'x' * (1 << 30)"],
        resource_requests={"memory": "64Mi"},
        resource_limits={"memory": "128Mi"},
    )
    job = run_to_end(env, tmp_path, spec, within=OOM_WITHIN)
    assert job["state"] == "failure", job
    assert "memory" in job["reason"].lower(), job


def test_a_missing_secret_fails_the_job_naming_it(release: dict[str, str], tmp_path: Path) -> None:
    env = release
    spec = pipeline_spec(
        tmp_path,
        "nosecret",
        "tusk/worker:0.1.0",
        ["sh", "-c", "cp /pfs/nosecret-in/* /pfs/out/"],
        transform_extra={
            "secrets": [{"name": "tusk-no-such-secret", "key": "password", "env_var": "PASSWORD"}]
        },
    )
    job = run_to_end(env, tmp_path, spec, within=UNPULLABLE_WITHIN)
    assert job["state"] == "failure", job
    assert "tusk-no-such-secret" in job["reason"], job
    assert "not retried" in job["reason"], job
    described = kubelet_events(env, job_pods_prefix("nosecret"))
    assert 'secret "tusk-no-such-secret" not found' in described, described
