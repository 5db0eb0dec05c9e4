"""ImageMagick's `montage`, from Debian's `imagemagick` package: the command Pachyderm's opencv
montage pipeline runs in its stdin (the image its spec names is ImageMagick's)."""

from __future__ import annotations

from .common import debian_command


def ensure_installed() -> str:
    """The path of `montage`, installing Debian's `imagemagick` first if we are root."""
    return debian_command(
        "montage", "imagemagick", "Pachyderm's montage pipeline runs its `montage` command"
    )
