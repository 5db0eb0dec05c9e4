"""From a job's spec and input commits to its datums, what to skip, and its shards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tusk.client import RepoClient
from tusk.pipelines import (
    Datum,
    DatumPlan,
    Match,
    PipelineSpec,
    compute_datums,
    plan_datums,
    split_into_shards,
)
from tusk.pipelines.glob import expand_key
from tusk.pipelines.spec import PfsInput
from tusk.worker.protocol import (
    DatumInputSpec,
    DatumSpec,
    SecretSpec,
    ShardSpec,
    TransformSpec,
)


class RepoLister:
    """``InputLister`` on the repo service's glob."""

    def __init__(self, repos: RepoClient) -> None:
        self.repos = repos

    async def glob(self, repo: str, commit: str, pattern: str) -> list[Match]:
        found = await self.repos.glob(repo, commit, pattern)
        return [Match(f.path, f.type, f.hash, f.size_bytes) for f in found]


@dataclass(frozen=True)
class JobPlan:
    datums: list[Datum]
    plan: DatumPlan
    carried: dict[str, list[dict[str, Any]]]  # skipped datum id → the outputs it carries
    shards: list[list[Datum]]  # the new datums, split

    @property
    def links(self) -> list[tuple[str, str]]:
        """(path, content hash) of every carried-forward output."""
        return [(o["path"], o["hash"]) for d in self.plan.skipped for o in self.carried[d.id]]


async def job_datums(
    spec: PipelineSpec, commits: Mapping[str, str], repos: RepoClient
) -> list[Datum]:
    return await compute_datums(spec.resolved_input(), commits, RepoLister(repos))


def make_plan(
    spec: PipelineSpec,
    datums: list[Datum],
    processed: dict[str, list[dict[str, Any]]],
    *,
    max_shards: int | None = None,
) -> JobPlan:
    """``max_shards``: the runner's cap on one job's shards (worker processes at once)."""
    plan = plan_datums(datums, processed.keys())
    shards = spec.parallelism_spec.constant
    if max_shards is not None:
        shards = min(shards, max_shards)
    return JobPlan(
        datums=datums,
        plan=plan,
        carried={d.id: processed[d.id] for d in plan.skipped},
        shards=split_into_shards(plan.new, shards),
    )


def datum_spec(datum: Datum) -> DatumSpec:
    return DatumSpec(
        id=datum.id,
        inputs=tuple(
            DatumInputSpec(name=i.name, repo=i.repo, commit=i.commit, path=i.path, type=i.type)
            for i in datum.inputs
        ),
    )


def shard_spec(
    spec: PipelineSpec,
    *,
    job: str,
    shard: int,
    output_repo: str,
    output_commit: str,
    meta_commit: str,
    datums: Iterable[DatumSpec],
    log_tail_bytes: int,
) -> ShardSpec:
    """``log_tail_bytes``: how much of each datum's log the worker puts in its result, so the
    scheduler needs no request for it (the scheduler's setting of that name)."""
    transform = spec.transform
    return ShardSpec(
        job=job,
        pipeline=spec.name,
        shard=shard,
        output_repo=output_repo,
        output_commit=output_commit,
        meta_commit=meta_commit,
        transform=TransformSpec(
            cmd=transform.cmd,
            stdin=transform.stdin,
            env=transform.env,
            secrets=tuple(SecretSpec.model_validate(s.model_dump()) for s in transform.secrets),
            accept_return_code=transform.accept_return_code,
            err_cmd=transform.err_cmd,
            err_stdin=transform.err_stdin,
            datum_batching=transform.datum_batching,
        ),
        datum_tries=spec.datum_tries,
        datum_timeout_seconds=(
            spec.datum_timeout.total_seconds() if spec.datum_timeout is not None else None
        ),
        log_tail_bytes=log_tail_bytes,
        datums=tuple(
            with_empty_files(with_keys(d, keyed_inputs(spec)), empty_inputs(spec)) for d in datums
        ),
        s3_inputs=tuple(sorted({p.name for p in spec.pfs_inputs() if p.s3})),
        s3_out=spec.s3_out,
    )


def empty_inputs(spec: PipelineSpec) -> frozenset[str]:
    """The names of the pfs inputs with ``empty_files``."""
    return frozenset(p.name for p in spec.pfs_inputs() if p.empty_files)


def with_empty_files(datum: DatumSpec, empty: frozenset[str]) -> DatumSpec:
    if not empty:
        return datum
    parts = tuple(
        p.model_copy(update={"empty_files": True}) if p.name in empty else p for p in datum.inputs
    )
    return datum.model_copy(update={"inputs": parts})


def keyed_inputs(spec: PipelineSpec) -> dict[str, tuple[PfsInput, str]]:
    """The pfs inputs of joins and groups by name, with ``join_on`` or ``group_by``."""
    found: dict[str, tuple[PfsInput, str]] = {}
    if spec.input is None:
        return found
    for _, node in spec.resolved_input().walk():
        if node.join is not None or node.group is not None:
            kind = "join_on" if node.join is not None else "group_by"
            for child in node.children:
                if child.pfs is not None:
                    found[child.pfs.name] = (child.pfs, kind)
    return found


def with_keys(datum: DatumSpec, keyed: Mapping[str, tuple[PfsInput, str]]) -> DatumSpec:
    """The datum with each part's join or group key, which the command gets as
    ``PACH_DATUM_<input>_JOIN_ON`` / ``_GROUP_BY``."""
    if not keyed:
        return datum
    parts = []
    for part in datum.inputs:
        entry = keyed.get(part.name)
        groups = entry[0].parsed_glob.groups(part.path) if entry is not None else None
        if entry is None or groups is None:
            parts.append(part)
            continue
        pfs, kind = entry
        key = expand_key(getattr(pfs, kind) or "", groups)
        parts.append(part.model_copy(update={kind: key}))
    return datum.model_copy(update={"inputs": tuple(parts)})


def describe_inputs(inputs: Sequence[Mapping[str, Any]]) -> str:
    """A datum's inputs for a message: ``images:/a.png, labels:/a.txt``."""
    return ", ".join(f"{i['name']}:{i['path']}" for i in inputs)
