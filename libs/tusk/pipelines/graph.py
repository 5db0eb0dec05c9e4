"""Checks of a spec against the rest of the DAG: its input repos exist, and it closes no
cycle among the pipelines (a pipeline's output repo has its name)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping

from tusk.errors import InvalidArgument
from tusk.pipelines.models import PipelineSpec, format_loc


def _elsewhere(repo: str, existing_repos: Container[str]) -> str:
    """A hint when the repo exists in the default project: an input without ``project``
    reads its pipeline's project, as in Pachyderm."""
    project, slash, name = repo.partition("/")
    if slash and name in existing_repos:
        return f" in project {project!r} (repo {name!r} of the default project: set pfs.project)"
    return ""


def check_input_repos(spec: PipelineSpec, existing_repos: Container[str]) -> None:
    """Raise :class:`InvalidArgument` naming each pfs input whose repo does not exist."""
    if spec.input is None:
        return
    problems = [
        f"{format_loc((*loc, 'pfs', 'repo'))}: repo {node.pfs.repo!r} does not exist"
        + _elsewhere(node.pfs.repo, existing_repos)
        for loc, node in spec.input.walk()
        if node.pfs is not None and node.pfs.repo not in existing_repos
    ]
    if problems:
        raise InvalidArgument(
            "; ".join(problems) + " (create the repo first, or fix the name)",
            missing=sorted({p.repo for p in spec.pfs_inputs() if p.repo not in existing_repos}),
        )


# --- the DAG -------------------------------------------------------------------------------


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in ``pipeline → repos it reads`` (a pipeline's output repo has its name), as
    ``[a, b, …, a]`` meaning a reads b … reads a; None when the graph is a DAG."""
    edges = {node: sorted(set(reads) & graph.keys()) for node, reads in graph.items()}
    state: dict[str, bool] = {}  # False: on the current path; True: fully explored
    for start in sorted(edges):
        if start in state:
            continue
        path = [start]
        stack = [iter(edges[start])]
        state[start] = False
        while stack:
            for nxt in stack[-1]:
                if nxt not in state:
                    state[nxt] = False
                    path.append(nxt)
                    stack.append(iter(edges[nxt]))
                    break
                if state[nxt] is False:
                    return [*path[path.index(nxt) :], nxt]
            else:
                state[path.pop()] = True
                stack.pop()
    return None


def check_no_cycle(spec: PipelineSpec, pipelines: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`InvalidArgument` if adding (or updating) ``spec`` among ``pipelines``
    (every other pipeline → the repos it reads) would close a cycle."""
    graph = {**pipelines, spec.name: spec.input_repos()}
    cycle = find_cycle(graph)
    if cycle is not None and spec.name in cycle:
        raise InvalidArgument(
            f"input: pipeline {spec.name!r} would make a cycle: {' reads '.join(cycle)}",
            cycle=cycle,
        )
