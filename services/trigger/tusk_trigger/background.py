"""The trigger's background loop: cron ticks. (The event consumer and the outbox relay are
started with it, in context.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from tusk.client.repo import RepoClient
from tusk.db import Database
from tusk.errors import TuskError
from tusk_trigger.cron import commit_tick
from tusk_trigger.service import TriggerService

log = structlog.get_logger()


async def run_cron(
    service: TriggerService, db: Database, repos: RepoClient, interval: float
) -> None:
    """Commit each due tick; a failed tick is logged and tried again on the next look. The
    tick's commit is made after the schedule's transaction has ended, never inside it."""
    while True:
        now = datetime.now(UTC)
        try:
            async with db.session(write=False) as session:
                due = await service.due_ticks(session, now)
            for row in due:
                async with db.session() as session:
                    claimed = await service.claim_tick(session, row, now)
                if claimed:
                    commit = await commit_tick(
                        repos, row.repo, row.next_tick_at, overwrite=row.overwrite
                    )
                    log.info(
                        "cron tick",
                        pipeline=row.pipeline,
                        input=row.input_name,
                        repo=row.repo,
                        commit=commit,
                    )
        except TuskError as e:
            log.warning("cron tick failed", error=e.message)
        await asyncio.sleep(interval)
