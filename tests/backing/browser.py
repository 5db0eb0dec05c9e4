"""Debian's Chromium, for the console's browser tests (`python -m tests.backing.browser install`).

Playwright's own browser download cannot be used (it fetches builds from outside the package
registries), so the tests drive the distribution's Chromium through Playwright's
``executable_path``. Missing, it is installed with apt-get when we are root; otherwise the
error says how to get it. A test that needs a browser fails with this error, never skips.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .common import ServiceError, cache_dir, install_lock, run_logged

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# Flags for a headless run on a shared machine with no network beyond the test's own servers.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> Path | None:
    override = os.environ.get("TUSK_TEST_CHROMIUM")
    if override:
        return Path(override) if Path(override).exists() else None
    for candidate in CANDIDATES:
        if Path(candidate).exists():
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def ensure_installed() -> Path:
    """The Chromium executable, installing Debian's `chromium` package if needed (as root)."""
    found = find_chromium()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise ServiceError(
            "Chromium is not installed (no /usr/bin/chromium). Install it with "
            "`sudo apt-get install -y chromium`, or set TUSK_TEST_CHROMIUM to its path."
        )
    log = cache_dir() / "logs" / "chromium-install.log"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with install_lock("chromium"):
        if find_chromium() is None:
            # Another apt-get (another install on this machine) may hold dpkg's lock: wait.
            wait = ["-o", "DPkg::Lock::Timeout=600"]
            run_logged(["apt-get", *wait, "update"], log, "apt-get update", env=env)
            run_logged(
                ["apt-get", *wait, "install", "-y", "--no-install-recommends", "chromium"],
                log,
                "apt-get install chromium",
                env=env,
                timeout=1200,
            )
    found = find_chromium()
    if found is None:
        raise ServiceError(f"apt-get installed chromium but it is not found; see {log}")
    return found


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(f"chromium: {ensure_installed()}")
    except ServiceError as e:
        print(f"tests.backing.browser install FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
