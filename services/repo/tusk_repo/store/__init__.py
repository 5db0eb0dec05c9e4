"""All of the repo service's SQL, one module per aggregate: repos (with their branches and
tags), commits (with their provenance), and contents (files, tree nodes, staged changes).

The contents module's names are re-exported here, where callers have always found them.
"""

from tusk_repo.store.contents import (
    TreeStore,
    clear_staged,
    exclude_writes,
    finished_with_staged,
    has_staged_put_under,
    hold_off_collection,
    load_file,
    load_files,
    save_files,
    stage_delete,
    stage_puts,
    staged_changes,
)

__all__ = [
    "TreeStore",
    "clear_staged",
    "exclude_writes",
    "finished_with_staged",
    "has_staged_put_under",
    "hold_off_collection",
    "load_file",
    "load_files",
    "save_files",
    "stage_delete",
    "stage_puts",
    "staged_changes",
]
