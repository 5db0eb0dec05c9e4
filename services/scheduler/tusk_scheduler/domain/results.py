"""Reading what workers recorded in a job's meta commit: datum results and log tails."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from contextlib import aclosing
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from tusk.client import RepoClient
from tusk.errors import NotFound
from tusk.worker.protocol import DatumResult, datums_dir, log_path, result_path

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
        self, repo: str, meta_commit: str, job: str, wanted: Collection[str]
    ) -> list[Collected]:
        """The results (with their log tails) that the meta commit holds for ``wanted`` datums."""
        if not wanted:
            return []
        try:
            entries = {
                e.path: e.size_bytes
                async for e in self.repos.list_dir(repo, meta_commit, datums_dir(job))
                if e.type == "file"
            }
        except NotFound:  # no datum has finished yet: the directory does not exist
            return []
        ready = [d for d in wanted if result_path(job, d) in entries]
        found = await asyncio.gather(
            *(self._read(repo, meta_commit, job, d, entries.get(log_path(job, d))) for d in ready)
        )
        return [c for c in found if c is not None]

    async def _read(
        self, repo: str, commit: str, job: str, datum: str, log_size: int | None
    ) -> Collected | None:
        async with self._slots:
            data = await self._get(repo, commit, result_path(job, datum))
            try:
                result = DatumResult.model_validate_json(data)
            except ValidationError as e:
                log.warning(
                    "unreadable datum result; the datum counts as unfinished",
                    job=job,
                    datum=datum,
                    error=str(e),
                )
                return None
            if result.datum != datum or result.job != job:
                log.warning("a datum result names another datum; ignored", job=job, datum=datum)
                return None
            tail = ""
            if log_size and self.log_tail_bytes:
                offset = max(0, log_size - self.log_tail_bytes)
                raw = await self._get(repo, commit, log_path(job, datum), offset=offset)
                tail = raw.decode(errors="replace")
            return Collected(result, tail)

    async def _get(self, repo: str, commit: str, path: str, *, offset: int = 0) -> bytes:
        async with aclosing(self.repos.get_file(repo, commit, path, offset=offset)) as pieces:
            return b"".join([piece async for piece in pieces])

    async def read_log(self, repo: str, commit: str, job: str, datum: str) -> bytes:
        """A datum's whole log (NotFound when it has none)."""
        return await self._get(repo, commit, log_path(job, datum))
