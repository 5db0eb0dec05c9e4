"""The scheduler's Prometheus metrics, on a registry of its own (one per process context, so
that several services or test contexts in one process never clash)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tusk_scheduler.tables import ACTIVE_STATES, FINAL_STATES


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge(
            "tusk_scheduler_jobs",
            "Jobs the scheduler knows, by state.",
            ["state"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "tusk_scheduler_jobs_finished",
            "Jobs finished by this process, by final state.",
            ["state"],
            registry=self.registry,
        )
        self.datums = Counter(
            "tusk_scheduler_datums",
            "Datums accounted for by this process, by outcome (success, failed, skipped).",
            ["state"],
            registry=self.registry,
        )
        self.shard_starts = Counter(
            "tusk_scheduler_shard_starts",
            "Workers started, by runner and whether it was a re-run of a lost shard.",
            ["runner", "retry"],
            registry=self.registry,
        )
        self.shards_adopted = Counter(
            "tusk_scheduler_shards_adopted",
            "Running workers adopted after a restart.",
            registry=self.registry,
        )
        self.leader = Gauge(
            "tusk_scheduler_leader",
            "1 while this process executes the jobs, 0 while it stands by for another.",
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "tusk_scheduler_job_duration_seconds",
            "From a job's start to its end.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600),
            registry=self.registry,
        )

    def set_jobs(self, by_state: Mapping[str, int]) -> None:
        for state in (*ACTIVE_STATES, *FINAL_STATES):
            self.jobs.labels(state).set(by_state.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
