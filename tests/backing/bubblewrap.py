"""bubblewrap (`bwrap`), from Debian's package of that name: the local runner's sandbox, which
gives each datum its own mount namespace with its inputs at /pfs."""

from __future__ import annotations

from .common import debian_command


def ensure_installed() -> str:
    """The path of `bwrap`, installing Debian's `bubblewrap` first if we are root."""
    return debian_command("bwrap", "bubblewrap", "the local runner's sandbox needs it")
