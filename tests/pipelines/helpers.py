"""An in-memory repo service for datum tests, built on the repo service's own Merkle trees so
that globs mean exactly what they mean in production."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

import blake3

from tusk.errors import NotFound
from tusk.pipelines.datums import Match, MatchType
from tusk_repo import trees


class TreeLister:
    """Commits are snapshots (path → content); ``glob`` answers as the repo service does."""

    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {trees.EMPTY_TREE: trees.EMPTY_NODE}
        self.roots: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str, str]] = []

    async def load(self, digest: str) -> trees.Node:
        return trees.decode_node(self.nodes[digest])

    async def commit(self, repo: str, files: Mapping[str, bytes | str]) -> str:
        puts = []
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            puts.append((path, blake3.blake3(data).hexdigest(), len(data)))
        result = await trees.merge(self.load, trees.EMPTY_TREE, [], puts)
        self.nodes.update(result.new_nodes)
        commit_id = uuid.uuid4().hex
        self.roots[(repo, commit_id)] = result.root
        return commit_id

    async def all_paths(self, repo: str, commit: str) -> dict[str, str]:
        """Every path in the commit (root, directories, files) → its kind."""
        root = self.roots[(repo, commit)]
        found = {"/": trees.DIR}

        async def visit(path: str, digest: str) -> None:
            for entry in (await self.load(digest)).entries:
                child = f"{path.rstrip('/')}/{entry.name}"
                found[child] = entry.kind
                if entry.kind == trees.DIR:
                    await visit(child, entry.hash)

        await visit("/", root)
        return found

    async def glob(self, repo: str, commit: str, pattern: str) -> list[Match]:
        self.calls.append((repo, commit, pattern))
        root = self.roots.get((repo, commit))
        if root is None:
            raise NotFound(f"commit {repo}@{commit} not found")
        return [
            Match(path, cast(MatchType, entry.kind), entry.hash, entry.size)
            for path, entry in await trees.glob(self.load, root, pattern)
        ]


class ReversedLister:
    """Answers with the matches in reverse order: datums must not depend on listing order."""

    def __init__(self, inner: TreeLister) -> None:
        self.inner = inner

    async def glob(self, repo: str, commit: str, pattern: str) -> list[Match]:
        return list(reversed(await self.inner.glob(repo, commit, pattern)))


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A valid spec as data; tests change one thing and expect one error about it."""
    spec: dict[str, Any] = {
        "pipeline": {"name": "train"},
        "input": {"pfs": {"repo": "features", "glob": "/*"}},
        "transform": {"cmd": ["python", "/code/train.py"]},
    }
    spec.update(overrides)
    return spec
