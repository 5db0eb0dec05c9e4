"""Reading spec files as ``pachctl create pipeline`` does (several specs per file, jsonnet
templates with ``--arg``), and what ``--dry-run`` reports: each pipeline created or updated,
the edges of the DAG that change, whether processed datums are kept, and the warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from tusk.client import RepoClient
from tusk.client.models import PipelineInfo
from tusk.client.pipelines import TriggerClient
from tusk.errors import InvalidArgument
from tusk.pipelines.compat import spec_warnings
from tusk.pipelines.spec import PipelineSpec, check_no_cycle, load_specs, validate_spec

SpecFileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="The spec file: YAML or JSON (Pachyderm's field names, snake_case or camelCase); "
        "several specs may be separated by `---`.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
JsonnetOption = Annotated[
    Path | None,
    typer.Option(
        "--jsonnet",
        help="A jsonnet template that renders one spec or a list of them (as pachctl's).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]
ArgOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        metavar="NAME=VALUE",
        help="A top-level argument of the --jsonnet template (a string); repeat for more.",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Validate the specs and report what would change (pipelines, DAG edges, datums "
        "reprocessed), without changing anything.",
    ),
]


def read_specs(
    file: Path | None, jsonnet: Path | None, args: list[str] | None
) -> list[PipelineSpec]:
    """The specs of ``-f FILE`` or of ``--jsonnet FILE`` rendered with ``--arg``s."""
    if (file is None) == (jsonnet is None):
        raise InvalidArgument("give the spec with -f FILE or a template with --jsonnet FILE")
    if args and jsonnet is None:
        raise InvalidArgument("--arg is for a --jsonnet template")
    if jsonnet is not None:
        return load_specs(jsonnet.read_bytes(), filename=jsonnet.name, jsonnet_args=_args(args))
    assert file is not None
    return load_specs(file.read_bytes(), filename=file.name)


def _args(args: list[str] | None) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for arg in args or []:
        name, sep, value = arg.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"--arg {arg!r}: write it as NAME=VALUE")
        parsed[name] = value
    return parsed


@dataclass
class Change:
    """What creating or updating one pipeline would do."""

    spec: PipelineSpec
    current: PipelineInfo | None  # None: it would be created
    added: list[str] = field(default_factory=list)  # DAG edges "repo -> pipeline"
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    datums: str = ""

    def describe(self) -> list[str]:
        spec = self.spec
        reads = ", ".join(spec.input_repos() + spec.cron_repos()) or "nothing"
        if self.current is None:
            lines = [
                f"would create pipeline {spec.name} (version 1): reads {reads}, "
                f"writes {spec.name}@{spec.output_branch}"
            ]
        else:
            lines = [
                f"would update pipeline {spec.name} from version {self.current.version} to "
                f"{self.current.version + 1}: reads {reads}"
            ]
        lines += [f"  DAG: + {edge}" for edge in self.added]
        lines += [f"  DAG: - {edge}" for edge in self.removed]
        if self.datums:
            lines.append(f"  datums: {self.datums}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines


async def plan_changes(
    specs: list[PipelineSpec],
    trigger: TriggerClient,
    repos: RepoClient,
    *,
    update: bool,
    reprocess: bool = False,
) -> list[Change]:
    """Check the specs against what exists as the services would (input repos, names, cycles)
    and say what each would change; :class:`InvalidArgument` naming every problem."""
    pipelines = {p.name: p for p in await trigger.list_pipelines()}
    graph = {name: _reads(validate_spec(p.spec)) for name, p in pipelines.items()}
    existing_repos = {r.name for r in await repos.list_repos()}
    problems: list[str] = []
    changes: list[Change] = []
    for spec in specs:
        current = pipelines.get(spec.name)
        if current is None and update:
            problems.append(f"{spec.name}: no such pipeline (create it first)")
        if current is not None and not update:
            problems.append(f"{spec.name}: pipeline already exists (use `tusk pipeline update`)")
        missing = [r for r in spec.input_repos() if r not in existing_repos]
        problems += [
            f"{spec.name}: input repo {r!r} does not exist (create it first, or fix the name)"
            for r in missing
        ]
        try:
            check_no_cycle(spec, graph)
        except InvalidArgument as e:
            problems.append(f"{spec.name}: {e.message}")
        before = set(graph.get(spec.name, ()))
        after = set(_reads(spec))
        change = Change(
            spec,
            current,
            added=[f"{r} -> {spec.name}" for r in sorted(after - before)],
            removed=[f"{r} -> {spec.name}" for r in sorted(before - after)],
            warnings=spec_warnings(spec),
        )
        if current is not None:
            change.datums = _datums(validate_spec(current.spec), spec, reprocess=reprocess)
        changes.append(change)
        graph[spec.name] = sorted(after)
        existing_repos |= {spec.name, *spec.cron_repos()}  # a later spec in the file may read it
    if problems:
        raise InvalidArgument("; ".join(problems))
    return changes


def _reads(spec: PipelineSpec) -> list[str]:
    return sorted({*spec.input_repos(), *spec.cron_repos()})


def _datums(old: PipelineSpec, new: PipelineSpec, *, reprocess: bool) -> str:
    if reprocess:
        return "every datum runs again (--reprocess)"
    if new.salt is None:
        new = new.model_copy(update={"salt": old.salt})
    if old.datum_identity() == new.datum_identity():
        return "processed datums are kept (transform, image and inputs unchanged)"
    return "every datum runs again at the next job (the transform, image or inputs changed)"
