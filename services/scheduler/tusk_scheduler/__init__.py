"""The scheduler service: runs the jobs the trigger creates.

It consumes ``job.created`` and ``job.cancel``, computes each job's datums, skips those an
earlier job of the same pipeline version already processed, starts workers for the rest
through a :class:`~tusk_scheduler.runners.base.Runner`, and finishes the job's output commit.
It owns the execution state (jobs, datums, shards) and emits ``job.started``,
``job.progress``, ``job.succeeded`` and ``job.failed``.
"""
