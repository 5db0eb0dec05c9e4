"""bubblewrap (`bwrap`), from Debian's package of that name: the local runner's sandbox, which
gives each datum its own mount namespace with its inputs at /pfs."""

from __future__ import annotations

import os
import shutil

from .common import ServiceError, cache_dir, install_lock, run_logged


def ensure_installed() -> str:
    """The path of `bwrap`, installing Debian's `bubblewrap` first if we are root."""
    found = shutil.which("bwrap")
    if found:
        return found
    if os.geteuid() != 0:
        raise ServiceError(
            "bubblewrap is not installed: `sudo apt-get install -y bubblewrap` "
            "(the local runner's sandbox needs it)"
        )
    log = cache_dir() / "logs" / "bubblewrap-install.log"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with install_lock("apt"):
        if shutil.which("bwrap") is None:
            run_logged(["apt-get", "update"], log, "apt-get update", env=env)
            run_logged(
                ["apt-get", "install", "-y", "--no-install-recommends", "bubblewrap"],
                log,
                "apt-get install bubblewrap",
                env=env,
            )
    found = shutil.which("bwrap")
    if found is None:
        raise ServiceError(f"apt-get installed bubblewrap but bwrap is still not found; see {log}")
    return found
