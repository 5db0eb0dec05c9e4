"""Where a model came from: its commit, the global id of the change that produced it, and every
data commit upstream of it, found by walking provenance up through the repo API."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog

from tusk.client.models import CommitInfo
from tusk.client.repo import RepoClient
from tusk.errors import NotFound

log = structlog.get_logger()

MAX_LINEAGE_COMMITS = 1000  # a guard against runaway graphs; real lineages are far smaller


@dataclass(frozen=True)
class Lineage:
    model_repo: str
    model_branch: str
    model_path: str
    model_commit: str
    global_id: str
    data_commits: tuple[tuple[str, str], ...]  # (repo, commit), nearest first

    def parameters(self) -> dict[str, str]:
        """As OIP parameters, whose values must be scalars: commits as ``repo@id``, joined."""
        return {
            "model_repo": self.model_repo,
            "model_branch": self.model_branch,
            "model_path": self.model_path,
            "model_commit": self.model_commit,
            "global_id": self.global_id,
            "data_commits": ",".join(f"{repo}@{commit}" for repo, commit in self.data_commits),
        }


async def upstream(repos: RepoClient, commit: CommitInfo) -> tuple[tuple[str, str], ...]:
    """Every commit ``commit`` was derived from, directly or not, breadth first."""
    seen: set[tuple[str, str]] = set()
    found: list[tuple[str, str]] = []
    frontier = deque((p.repo, p.commit) for p in commit.provenance)
    while frontier and len(found) < MAX_LINEAGE_COMMITS:
        ref = frontier.popleft()
        if ref in seen:
            continue
        seen.add(ref)
        found.append(ref)
        try:
            info = await repos.inspect_commit(*ref)
        except NotFound:  # its repo was deleted since: the id is all that is left
            log.info("lineage commit is gone", repo=ref[0], commit=ref[1])
            continue
        frontier.extend((p.repo, p.commit) for p in info.provenance)
    return tuple(found)
