"""The wire models' cost against the service-side copies they replaced, in one run.

    .venv/bin/python -m loadtest.bench_wire [--rounds N]

Before the wire models were shared, a service answered with its own copy of each model
(``extra="forbid"``, not frozen); now it answers with :mod:`tusk.wire`'s (``extra="ignore"``,
frozen, built at first use). This times what FastAPI does with an answer, on the biggest
answers tusk gives (a page of 10,000 directory entries, 1,000 commits with provenance, 1,000
jobs), for the wire model and for a copy with the old configuration built from the same
fields (the baseline), interleaved round by round, and prints the ratio of the medians. It
also times a client parsing the same answers. CPU-bound and in-process: a busy machine slows
both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from tusk.wire.jobs import DatumCounts, InputCommit, JobInfo, JobPage
from tusk.wire.repo import CommitInfo, CommitRef, FileInfo, Page


def old_copy(model: type[BaseModel], replace: dict[str, type[BaseModel]]) -> type[BaseModel]:
    """The model with the services' former configuration, nested models copied too."""
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        for wire, copy in replace.items():
            if annotation is wire:
                annotation = copy
            elif annotation == list[wire]:  # type: ignore[valid-type]
                annotation = list[copy]  # type: ignore[valid-type]
        fields[name] = (annotation, field)
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"Old{model.__name__}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def answers() -> dict[str, tuple[Any, Any, Any]]:
    """name: (wire type, old type, an answer as the service builds it from wire models)."""
    now = datetime.now(UTC)
    old_ref = old_copy(CommitRef, {})
    old_file = old_copy(FileInfo, {})
    old_commit = old_copy(CommitInfo, {CommitRef: old_ref})
    old_input = old_copy(InputCommit, {})
    old_counts = old_copy(DatumCounts, {})
    old_job = old_copy(JobInfo, {InputCommit: old_input, DatumCounts: old_counts})
    files = [
        FileInfo(path=f"/d/{i:05}.csv", type="file", size_bytes=i, hash=f"{i:064x}", file_count=1)
        for i in range(10_000)
    ]
    commits = [
        CommitInfo(
            id=f"{i:032x}",
            repo="raw",
            branch="master",
            parent=f"{i + 1:032x}",
            state="finished",
            error=None,
            global_id=f"{i:032x}",
            provenance=[CommitRef(repo=f"in{j}", commit=f"{j:032x}") for j in range(3)],
            description="",
            size_bytes=i,
            file_count=i,
            started_at=now,
            finished_at=now,
        )
        for i in range(1_000)
    ]
    jobs = [
        JobInfo(
            id=f"{i:032x}",
            pipeline="train",
            version=1,
            state="success",
            reason=None,
            inputs=[InputCommit(name="in", repo="raw", branch="master", commit=f"{i:032x}")],
            global_id=f"{i:032x}",
            output_repo="train",
            output_branch="master",
            output_commit=f"{i:032x}",
            counts=DatumCounts(total=3, processed=3),
            created_at=now,
            started_at=now,
            finished_at=now,
        )
        for i in range(1_000)
    ]
    return {
        "page of 10,000 files": (
            Page[FileInfo],
            Page[old_file],
            Page[FileInfo](items=files, next_cursor=None),  # type: ignore[valid-type]
        ),
        "page of 1,000 commits": (
            Page[CommitInfo],
            Page[old_commit],
            Page[CommitInfo](items=commits, next_cursor="x"),  # type: ignore[valid-type]
        ),
        "page of 1,000 jobs": (
            JobPage,
            Page[old_job],
            JobPage(items=jobs, next_cursor=None),  # type: ignore[valid-type]
        ),
    }


def fastapi_answer(adapter: TypeAdapter[Any], value: BaseModel) -> Callable[[], bytes]:
    """FastAPI's path for a returned model: dump it, validate against the response model,
    serialize to JSON."""

    def run() -> bytes:
        return adapter.dump_json(adapter.validate_python(value.model_dump()))

    return run


def client_parse(adapter: TypeAdapter[Any], body: bytes) -> Callable[[], object]:
    return lambda: adapter.validate_json(body)


def cpu_time(function: Callable[[], object]) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rows = []
    for name, (wire, old, value) in answers().items():
        wire_adapter, old_adapter = TypeAdapter(wire), TypeAdapter(old)
        body = wire_adapter.dump_json(value)
        pairs = {
            "service answers": (
                fastapi_answer(wire_adapter, value),
                fastapi_answer(old_adapter, value),
            ),
            "client parses": (client_parse(wire_adapter, body), client_parse(old_adapter, body)),
        }
        for step, (new_run, old_run) in pairs.items():
            new_run(), old_run()  # build the validators and serializers first
            new_times, old_times = [], []
            for _ in range(args.rounds):
                new_times.append(cpu_time(new_run))
                old_times.append(cpu_time(old_run))
            new, before = statistics.median(new_times), statistics.median(old_times)
            rows.append((f"{step}: {name}", new, before, new / before))
    print(
        f"{'figure':<44} {'wire':>10} {'old copy':>10} {'ratio':>6}   (CPU, median of "
        f"{args.rounds} rounds)"
    )
    for figure, new, before, ratio in rows:
        print(f"{figure:<44} {new * 1000:8.1f}ms {before * 1000:8.1f}ms {ratio:6.2f}")


if __name__ == "__main__":
    main()
