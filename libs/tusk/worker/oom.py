"""Whether the kernel's OOM killer struck in the worker's own memory cgroup.

A command the kernel kills for want of memory dies of SIGKILL like one killed on purpose; only
the cgroup's counter tells the two apart. In a pod the worker's cgroup is its container's,
whose limit is the spec's ``resource_limits.memory``: a datum killed while the counter grew
ran out of that memory, and its reason can say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_OOM_KILL = re.compile(rb"^oom_kill (\d+)$", re.MULTILINE)


def _memory_cgroups(root: Path, self_cgroup: Path) -> Iterator[tuple[Path, str]]:
    """Where the worker's memory cgroup may be, with its version: the path /proc/self/cgroup
    names under the mount, then the mount's root (a container runtime mounts the container's
    own cgroup there, while /proc/self/cgroup still names the host's path)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            yield root / path.lstrip("/"), "v2"
        elif "memory" in controllers.split(","):
            yield root / "memory" / path.lstrip("/"), "v1"
    yield root, "v2"
    yield root / "memory", "v1"


def oom_kills(
    root: Path = CGROUP_ROOT, self_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The OOM kills counted in the worker's memory cgroup so far (``oom_kill`` of v2's
    memory.events or v1's memory.oom_control, Linux 4.13+); None when none can be read."""
    for directory, version in _memory_cgroups(root, self_cgroup):
        name = "memory.events" if version == "v2" else "memory.oom_control"
        try:
            found = _OOM_KILL.search((directory / name).read_bytes())
        except OSError:
            continue
        if found is not None:
            return int(found.group(1))
    return None


def memory_limit(
    root: Path = CGROUP_ROOT, self_cgroup: Path = Path("/proc/self/cgroup")
) -> str | None:
    """The memory cgroup's limit, readable (``128 MiB``); None when there is none."""
    for directory, version in _memory_cgroups(root, self_cgroup):
        name = "memory.max" if version == "v2" else "memory.limit_in_bytes"
        try:
            text = (directory / name).read_text().strip()
        except OSError:
            continue
        if not text.isdigit() or int(text) >= 1 << 62:  # "max", or v1's "unlimited"
            return None
        return f"{int(text) / (1 << 20):g} MiB"
    return None
