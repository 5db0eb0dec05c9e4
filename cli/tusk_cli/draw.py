"""``tusk pipeline draw``: the DAG of repos and pipelines as text, inputs before readers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.markup import escape

from tusk_cli.common import JsonOption, connect_trigger, run, stdout


def draw_pipelines(as_json: JsonOption = False) -> None:
    """Draw the pipelines as a DAG: each line a repo or pipeline, after everything it reads,
    with the repos it reads (`◀──`). Input repos that no pipeline writes come first.

    Example: `tusk pipeline draw`
    """

    async def main() -> None:
        async with connect_trigger() as client:
            pipelines = await client.list_pipelines()
        reads = {p.name: _reads(p.spec) for p in pipelines}
        layers = layer(reads)
        if as_json:
            import json

            stdout.print_json(json.dumps({"layers": layers, "reads": reads}))
            return
        for line in render(layers, reads):
            stdout.print(escape(line))

    run(main())


def _reads(spec: Mapping[str, object]) -> list[str]:
    from tusk.pipelines.spec import validate_spec  # the spec models: only when drawing

    parsed = validate_spec(dict(spec))
    return sorted({*parsed.input_repos(), *parsed.cron_repos()})


def layer(reads: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Repos and pipelines by depth: 0 for repos no pipeline writes, else one more than the
    deepest thing read (the DAG has no cycles: the trigger refuses them)."""
    depth: dict[str, int] = {}

    def visit(name: str) -> int:
        if name not in depth:
            depth[name] = 0  # a guard, should a cycle have slipped in
            depth[name] = (
                1 + max((visit(r) for r in reads[name]), default=-1) if name in reads else 0
            )
        return depth[name]

    for name in [*reads, *(r for rs in reads.values() for r in rs)]:
        visit(name)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, d in depth.items():
        layers[d].append(name)
    return [sorted(names) for names in layers]


def render(layers: Sequence[Sequence[str]], reads: Mapping[str, Sequence[str]]) -> list[str]:
    width = max((len(n) for names in layers for n in names), default=0)
    lines = []
    for names in layers:
        for name in names:
            if name in reads:
                lines.append(f"{name.ljust(width)} ◀── {', '.join(reads[name]) or '(nothing)'}")
            else:
                lines.append(name)
    return lines
