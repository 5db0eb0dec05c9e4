"""Reading what workers recorded in a job's meta commit: datum results and log tails."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from contextlib import aclosing
from dataclasses import dataclass

import structlog

from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.worker.protocol import DatumResult, log_path, parse_results_batch, results_dir

log = structlog.get_logger()


@dataclass(frozen=True)
class Collected:
    result: DatumResult
    log_tail: str


class ResultReader:
    def __init__(self, repos: RepoClient, *, log_tail_bytes: int, concurrency: int = 16) -> None:
        self.repos = repos
        self.log_tail_bytes = log_tail_bytes
        self._slots = asyncio.Semaphore(concurrency)

    async def collect(
        self, repo: str, meta_commit: str, job: str, wanted: Collection[str], seen: set[str]
    ) -> list[Collected]:
        """The results (with their log tails) for ``wanted`` datums in the batch files of the
        meta commit that are not in ``seen``; each file read is added to ``seen``.

        Batch files are written once and never change, so each needs reading only once.
        """
        if not wanted:
            return []
        try:
            new = [
                e.path
                async for e in self.repos.list_dir(repo, meta_commit, results_dir(job))
                if e.type == "file" and e.path not in seen
            ]
        except NotFound:  # no datum has finished yet: the directory does not exist
            return []
        batches = await asyncio.gather(*(self._read_batch(repo, meta_commit, p) for p in new))
        found: dict[str, DatumResult] = {}
        for path, data in zip(new, batches, strict=True):
            results, problems = parse_results_batch(data)
            for problem in problems:
                log.warning(
                    "unreadable line in a results batch; its datum counts as unfinished",
                    job=job,
                    path=path,
                    problem=problem,
                )
            for result in results:
                if result.job != job:
                    log.warning("a datum result names another job; ignored", job=job, path=path)
                elif result.datum in wanted and _better(result, found.get(result.datum)):
                    found[result.datum] = result
            seen.add(path)
        return [Collected(r, self._cut(r.log_tail)) for r in found.values()]

    def _cut(self, tail: str) -> str:
        """The end of a tail a worker recorded, at most ``log_tail_bytes`` long."""
        if not self.log_tail_bytes:
            return ""
        return tail.encode()[-self.log_tail_bytes :].decode(errors="replace")

    async def _read_batch(self, repo: str, commit: str, path: str) -> bytes:
        async with self._slots:
            return await self._get(repo, commit, path)

    async def _get(self, repo: str, commit: str, path: str) -> bytes:
        async with aclosing(self.repos.get_file(repo, commit, path)) as pieces:
            return b"".join([piece async for piece in pieces])

    async def read_log(self, repo: str, commit: str, job: str, datum: str) -> bytes:
        """A datum's whole log (NotFound when it has none)."""
        return await self._get(repo, commit, log_path(job, datum))


def _better(result: DatumResult, than: DatumResult | None) -> bool:
    """Whether a datum's result replaces another line for it: a success is final."""
    return than is None or than.state != "success"
