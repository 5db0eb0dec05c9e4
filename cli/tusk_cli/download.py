"""Downloading a directory tree in one tar stream (``tusk get -r``)."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from tusk.client import RepoClient
from tusk_cli.common import note, size


async def get_tree(
    client: RepoClient,
    repo: str,
    commit: str,
    path: str,
    output: Path,
    *,
    skip_existing: bool = False,
) -> None:
    """Write the files at or under ``path`` of ``commit`` under ``output``. One request: the
    service streams the directory as a tar archive, read chunk by chunk on its side."""
    extracted, skipped = await client.get_tree(
        repo, commit, path, output, skip_existing=skip_existing
    )
    kept = f"; {skipped} already there were skipped" if skipped else ""
    note(
        f"wrote {extracted.files} file(s) ({size(extracted.bytes)}) under {escape(str(output))} "
        f"from commit {commit}{kept}"
    )
