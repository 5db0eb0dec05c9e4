"""Pipelines as pure logic: the spec, its validation, and datum computation.

Used by the trigger service (validation), the scheduler (datums, sharding) and the worker.
No I/O except through :class:`~tusk.pipelines.datums.InputLister`.
"""

from tusk.pipelines.datums import (
    Datum,
    DatumInput,
    DatumPlan,
    InputLister,
    Match,
    compute_datums,
    datum_id,
    find_output_collisions,
    plan_datums,
    removed_datums,
    split_into_shards,
)
from tusk.pipelines.spec import (
    CronInput,
    Input,
    ParallelismSpec,
    PfsInput,
    PipelineRef,
    PipelineSpec,
    Resources,
    Secret,
    Transform,
    check_input_repos,
    check_no_cycle,
    cron_pfs_input,
    cron_repo_name,
    cron_tick_path,
    find_cycle,
    load_spec,
)

__all__ = [
    "CronInput",
    "Datum",
    "DatumInput",
    "DatumPlan",
    "Input",
    "InputLister",
    "Match",
    "ParallelismSpec",
    "PfsInput",
    "PipelineRef",
    "PipelineSpec",
    "Resources",
    "Secret",
    "Transform",
    "check_input_repos",
    "check_no_cycle",
    "compute_datums",
    "cron_pfs_input",
    "cron_repo_name",
    "cron_tick_path",
    "datum_id",
    "find_cycle",
    "find_output_collisions",
    "load_spec",
    "plan_datums",
    "removed_datums",
    "split_into_shards",
]
