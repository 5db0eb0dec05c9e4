"""Pachyderm fields tusk accepts but cannot apply (yet, or at all), each with the reason: shown
when a pipeline is created or updated, so nothing in a spec is silently ignored.

Applied, so not listed: names in either spelling, ``pipeline.project`` and ``pfs.project``
(projects are namespaces: the pipeline is ``<project>/<name>``, an input without a project
reads its pipeline's), ``pfs.empty_files`` (staged empty),
``pfs.lazy`` (the files are staged before the command starts: what it reads is the same),
``autoscaling`` (``true``: workers exist only while a job has datums; ``false``, the default
as in Pachyderm: on Kubernetes a warm worker pod per pipeline waits between jobs, see
``TUSK_KUBE_WARM_PODS``, and the local runner's warm workers serve every pipeline), GPUs in
both forms,
``accept_return_code``, ``err_cmd``, ``transform.secrets``, a ``join`` without ``join_on``,
``transform.datum_batching`` (one process asks for datums in turn: ``tusk-worker next-datum``),
``pfs.trigger`` by ``size``, ``commits``, ``cron_spec`` and ``rate_limit_spec`` (the trigger
service moves the input branch), ``egress`` to an ``s3://`` URL (the scheduler copies each
finished output commit) or ``sql_database`` with a ``postgresql://`` or ``mysql://`` (MySQL,
MariaDB) URL (the scheduler loads its tables; ``snowflake://`` is warned about: see below),
``pfs.s3`` and ``s3_out`` (the worker's S3 sidecar at ``S3_ENDPOINT`` serves the datum),
``spout`` (with ``spout.service``) and ``service`` (the scheduler keeps their commands
running)."""

from __future__ import annotations

from tusk.pipelines.models import PipelineSpec, format_loc


def spec_warnings(spec: PipelineSpec) -> list[str]:
    """``"<field>: <why it has no effect>"`` for each such field the spec sets."""
    warnings: list[str] = []

    def warn(field: str, why: str) -> None:
        warnings.append(f"{field}: {why}")

    if spec.input is not None:
        for loc, node in spec.input.walk():
            pfs = node.pfs
            if pfs is None:
                continue
            here = format_loc((*loc, "pfs"))
            trigger = pfs.trigger
            if trigger is not None and (trigger.branch or "master") == pfs.branch:
                warn(
                    f"{here}.trigger.branch",
                    f"the trigger watches {pfs.branch!r}, the branch the pipeline reads, so the "
                    "pipeline runs on every commit to it; commit to another branch and name it "
                    "in trigger.branch to defer the pipeline until the condition holds",
                )
    egress = spec.egress
    if egress is not None and egress.sql_database is not None:
        sql = egress.sql_database
        if sql.scheme == "snowflake":
            # Snowflake is a hosted service only: no server can run beside the tests, so a
            # loader for it could never be checked, and it is not written to.
            warn(
                "egress.sql_database.url",
                "snowflake:// is not written to: Snowflake runs only as a hosted service, which "
                "tusk's tests cannot start or reach, so tusk does not claim to load it; SQL "
                "egress loads postgresql:// and mysql:// (MySQL, MariaDB) databases. Output "
                "commits stay in the output repo only",
            )
        elif not sql.is_loaded:
            warn(
                "egress.sql_database.url",
                f"{sql.scheme}:// databases are not written to (SQL egress loads postgresql:// "
                "and mysql:// databases, as Pachyderm does, less snowflake://); output commits "
                "stay in the output repo only",
            )
    elif egress is not None and egress.s3_target is None:
        field = "egress.object_storage.url" if egress.object_storage else "egress.URL"
        warn(
            field,
            f"only s3:// egress is implemented: {egress.target_url} is not written to; output "
            "commits stay in the output repo only",
        )
    service = spec.exposed
    if service is not None:
        where = "service" if spec.service is not None else "spout.service"
        for field, value in (
            ("external_port", service.external_port),
            ("type", service.type),
            ("annotations", service.annotations or None),
        ):
            if value is not None:
                warn(
                    f"{where}.{field}",
                    "applies on the Kubernetes runner only (TUSK_RUNNER=kubernetes makes the "
                    "pipeline's Service); on the local runner the command serves on "
                    f"127.0.0.1:{service.internal_port} (internal_port)",
                )
    if spec.scheduling_spec is not None:
        warn(
            "scheduling_spec",
            "applies on the Kubernetes runner only (TUSK_RUNNER=kubernetes: the pods' "
            "nodeSelector and priorityClassName); the local runner runs on this machine",
        )
    if spec.transform.image_pull_secrets:
        warn(
            "transform.image_pull_secrets",
            "applies on the Kubernetes runner only (the pods' imagePullSecrets); the local "
            "runner pulls no image",
        )
    if spec.determined is not None:
        warn("determined", "tusk has no Determined integration; the field has no effect")
    if spec.metadata is not None:
        warn("metadata", "labels and annotations apply to Kubernetes pods only")
    if spec.transform.user is not None:
        warn("transform.user", "the local runner runs the command as the worker's user")
    if spec.transform.debug:
        warn("transform.debug", "tusk's workers log at TUSK_LOG_LEVEL; the field has no effect")
    resources = [spec.resource_requests, spec.resource_limits]
    if any(r is not None and r.disk is not None for r in resources):
        warn(
            "resource_limits.disk",
            "ephemeral-storage is requested on the Kubernetes runner only",
        )
    return warnings
