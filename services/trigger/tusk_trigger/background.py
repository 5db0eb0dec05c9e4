"""The trigger's background loop: cron ticks and cron branch triggers. (The event consumer and
the outbox relay are started with it, in context.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from tusk.client.repo import RepoClient
from tusk.db import Database
from tusk.errors import TuskError
from tusk.pipelines.models import BranchTrigger
from tusk_trigger.cron import commit_tick
from tusk_trigger.service import TriggerService
from tusk_trigger.tables import BranchScheduleRow

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
        try:
            await run_branch_ticks(service, db, now)
        except TuskError as e:
            log.warning("cron branch triggers not read", error=e.message)
        await asyncio.sleep(interval)


async def run_branch_ticks(service: TriggerService, db: Database, now: datetime) -> None:
    """Each due cron branch trigger: claim the tick with the commit it moves the input branch
    to (in one transaction), move the branch, then make the jobs (in another). A tick claimed
    before a crash is finished after it, from its recorded commit, and never claimed again."""
    async with db.session(write=False) as session:
        due = await service.due_branch_ticks(session, now)
    for row, trigger in due:
        try:
            await _branch_tick(service, db, now, row, trigger)
        except TuskError as e:  # one input's failure (a deleted repo …) never stops the others
            log.warning(
                "cron branch trigger failed", pipeline=row.pipeline, input=row.input_name,
                error=e.message,
            )  # fmt: skip


async def _branch_tick(
    service: TriggerService,
    db: Database,
    now: datetime,
    row: BranchScheduleRow,
    trigger: BranchTrigger,
) -> None:
    target = row.firing
    if target is None:
        target = await service.branch_tick_target(row, trigger)
        async with db.session() as session:
            if not await service.claim_branch_tick(session, row, now, target):
                return
        if target is None:
            return  # nothing new on the watched branch: wait for the next tick
    event = await service.move_for_tick(row, target)
    async with db.session(write=False) as session:
        branches = await service.branches_to_read(session, event)
    heads = await service.read_heads(branches)
    async with db.session() as session:
        await service.finish_branch_tick(session, row, event, heads)
