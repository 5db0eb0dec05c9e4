"""ImageMagick's `montage`, from Debian's `imagemagick` package: the command Pachyderm's opencv
montage pipeline runs in its stdin (the image its spec names is ImageMagick's)."""

from __future__ import annotations

import os
import shutil

from .common import ServiceError, cache_dir, install_lock, run_logged


def ensure_installed() -> str:
    """The path of `montage`, installing Debian's `imagemagick` first if we are root."""
    found = shutil.which("montage")
    if found:
        return found
    if os.geteuid() != 0:
        raise ServiceError(
            "ImageMagick is not installed: `sudo apt-get install -y imagemagick` "
            "(Pachyderm's montage pipeline runs its `montage` command)"
        )
    log = cache_dir() / "logs" / "imagemagick-install.log"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with install_lock("apt"):
        if shutil.which("montage") is None:
            run_logged(["apt-get", "update"], log, "apt-get update", env=env)
            run_logged(
                ["apt-get", "install", "-y", "--no-install-recommends", "imagemagick"],
                log,
                "apt-get install imagemagick",
                env=env,
            )
    found = shutil.which("montage")
    if found is None:
        raise ServiceError(
            f"apt-get installed imagemagick but montage is still not found; see {log}"
        )
    return found
