"""The pipeline spec in one import: its models (:mod:`tusk.pipelines.models`), the checks
against the rest of the DAG (:mod:`tusk.pipelines.graph`) and reading it from text
(:mod:`tusk.pipelines.loading`). Code that needs one of them may import that module."""

from tusk.pipelines.graph import check_input_repos, check_no_cycle, find_cycle
from tusk.pipelines.loading import load_spec, load_specs, validate_spec
from tusk.pipelines.models import (
    INPUT_KINDS,
    MAX_DATUM_TRIES,
    MAX_INPUT_DEPTH,
    MAX_PARALLELISM,
    OUTPUT_NAME,
    CronInput,
    Input,
    Loc,
    ParallelismSpec,
    PfsInput,
    PipelineRef,
    PipelineSpec,
    Resources,
    SchedulingSpec,
    Secret,
    SpecErrors,
    Transform,
    cron_pfs_input,
    cron_repo_name,
    cron_tick_path,
    format_loc,
)

__all__ = [
    "INPUT_KINDS",
    "MAX_DATUM_TRIES",
    "MAX_INPUT_DEPTH",
    "MAX_PARALLELISM",
    "OUTPUT_NAME",
    "CronInput",
    "Input",
    "Loc",
    "ParallelismSpec",
    "PfsInput",
    "PipelineRef",
    "PipelineSpec",
    "Resources",
    "SchedulingSpec",
    "Secret",
    "SpecErrors",
    "Transform",
    "check_input_repos",
    "check_no_cycle",
    "cron_pfs_input",
    "cron_repo_name",
    "cron_tick_path",
    "find_cycle",
    "format_loc",
    "load_spec",
    "load_specs",
    "validate_spec",
]
