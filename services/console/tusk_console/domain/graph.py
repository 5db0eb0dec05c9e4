"""Graphs the pages draw: the DAG of repos and pipelines, and a commit's lineage.

The server says what the nodes and edges are; the page lays them out with dagre.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from tusk.client.models import CommitInfo, CommitRef, PipelineInfo, RepoInfo
from tusk.client.repo import RepoClient
from tusk.errors import NotFound

MAX_LINEAGE_NODES = 200


def _seg(name: str) -> str:
    """A qualified name (vision/images) as one URL segment."""
    return quote(name, safe="")


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # repo | pipeline | commit
    label: str
    href: str
    state: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]

    def as_json(self) -> dict[str, Any]:
        return {"nodes": [asdict(n) for n in self.nodes], "edges": [asdict(e) for e in self.edges]}


def dag(repos: list[RepoInfo], pipelines: list[PipelineInfo]) -> Graph:
    """Input repos and pipelines; a pipeline stands for its output repo too."""
    outputs = {p.output_repo: p.name for p in pipelines}
    nodes: list[Node] = []
    for repo in sorted(repos, key=lambda r: r.name):
        if repo.name in outputs:
            continue
        nodes.append(Node(
            id=f"repo:{repo.name}", kind="repo", label=repo.name, href=f"/repos/{_seg(repo.name)}",
            detail=f"{repo.commit_count} commits",
        ))
    known = {n.id for n in nodes}
    edges: list[Edge] = []
    for pipeline in sorted(pipelines, key=lambda p: p.name):
        node_id = f"pipeline:{pipeline.name}"
        nodes.append(Node(
            id=node_id, kind="pipeline", label=pipeline.name,
            href=f"/pipelines/{_seg(pipeline.name)}",
            state=pipeline.last_job_state or ("paused" if pipeline.state != "running" else None),
            detail=f"v{pipeline.version}",
        ))
        for name in pipeline.input_repos:
            source = f"pipeline:{outputs[name]}" if name in outputs else f"repo:{name}"
            if source not in known and name not in outputs:
                nodes.append(Node(
                    id=source, kind="repo", label=name, href=f"/repos/{_seg(name)}", detail="",
                ))
                known.add(source)
            edges.append(Edge(source, node_id))
    return Graph(nodes, edges)


async def lineage(repos: RepoClient, start: CommitInfo) -> tuple[Graph, bool]:
    """Every commit ``start`` came from and everything derived from it; True when cut short."""
    infos: dict[tuple[str, str], CommitInfo] = {(start.repo, start.id): start}
    edges: set[tuple[tuple[str, str], tuple[str, str]]] = set()
    truncated = False
    for direction in ("up", "down"):
        frontier: deque[CommitInfo] = deque([start])
        while frontier:
            info = frontier.popleft()
            here = (info.repo, info.id)
            nexts: list[CommitRef] = (
                info.provenance if direction == "up" else await repos.subvenance(*here)
            )
            for ref in nexts:
                there = (ref.repo, ref.commit)
                edges.add((there, here) if direction == "up" else (here, there))
                if there in infos:
                    continue
                if len(infos) >= MAX_LINEAGE_NODES:
                    truncated = True
                    continue
                try:
                    found = await repos.inspect_commit(*there)
                except NotFound:  # its repo was deleted since: the id is all that is left
                    continue
                infos[there] = found
                frontier.append(found)
    nodes = [
        Node(
            id=f"{info.repo}@{info.id}",
            kind="commit",
            label=f"{info.repo}@{info.id[:8]}",
            href=f"/lineage/{_seg(info.repo)}/{info.id}",
            state="failure" if info.error else ("open" if info.state == "open" else "success"),
            detail=info.branch or "",
        )
        for info in infos.values()
    ]
    ids = {n.id for n in nodes}
    graph_edges = [
        Edge(f"{a[0]}@{a[1]}", f"{b[0]}@{b[1]}")
        for a, b in sorted(edges)
        if f"{a[0]}@{a[1]}" in ids and f"{b[0]}@{b[1]}" in ids
    ]
    return Graph(nodes, graph_edges), truncated
