"""The trigger service: pipeline specs and their versions, job records and cron schedules.

It turns ``commit.finished`` events into ``job.created`` (exactly one job per pipeline version
and set of input commits) and keeps job records up to date from the scheduler's events.
"""
