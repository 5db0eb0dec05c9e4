"""`python -m loadtest.peers.install [NAME ...]`: the peers' virtualenvs, from PyPI.

Each peer gets its own virtualenv under ``~/.cache/tusk/peers/<name>`` (``$TUSK_CACHE_DIR``
moves it), so that its pins never meet tusk's or another peer's. A virtualenv whose stamp
matches its requirements is reused at once; a changed pin rebuilds it. The benchmarks call
:func:`ensure` themselves, so ``make peers`` is only needed to install ahead of time.

    dvc           DVC with its S3 remote (the data-versioning peer, driven through its CLI)
    kserve        KServe's Python model server, with onnxruntime for the custom model
    mlserver      MLServer, with onnxruntime for the custom runtime (there is no ONNX runtime
                  package for MLServer 1.x on PyPI)
    tritonclient  Triton's HTTP client, the stock OIP v2 client pointed at every server
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.backing.common import cache_dir, install_lock

# The same onnxruntime and numpy as tusk's own environment, so the model servers differ only
# in what they wrap around the session.
ONNXRUNTIME = "onnxruntime==1.32.0"

PEERS: dict[str, list[str]] = {
    "dvc": ["dvc[s3]==3.67.1"],
    "kserve": ["kserve==0.21.0", ONNXRUNTIME],
    "mlserver": ["mlserver==1.7.1", ONNXRUNTIME],
    "tritonclient": ["tritonclient[http]==2.73.0", "numpy"],
}


def venv_dir(name: str) -> Path:
    return cache_dir() / "peers" / name


def python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def executable(name: str, program: str) -> Path:
    return venv_dir(name) / "bin" / program


def _stamp(name: str) -> str:
    wanted = "\n".join([sys.version.split()[0], *PEERS[name]])
    return hashlib.sha1(wanted.encode()).hexdigest()[:12]


def installed(name: str) -> bool:
    return (venv_dir(name) / f".installed-{_stamp(name)}").exists()


def ensure(name: str) -> Path:
    """The peer's virtualenv, built if missing or stale; returns its python."""
    if name not in PEERS:
        raise SystemExit(f"unknown peer {name!r}: choose from {', '.join(PEERS)}")
    if installed(name):
        return python(name)
    with install_lock(f"peer-{name}"):
        if installed(name):  # another process built it while this one waited
            return python(name)
        target = venv_dir(name)
        for old in target.glob(".installed-*"):
            old.unlink()
        if not python(name).exists():
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        pip = [str(python(name)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *PEERS[name]], check=True)
        (target / f".installed-{_stamp(name)}").touch()
    return python(name)


def version(name: str, distribution: str) -> str:
    done = subprocess.run(
        [
            str(python(name)),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Install the peers tusk's benchmarks compare against, each in its own "
        "virtualenv under the tusk cache.",
        epilog="\n".join(f"{name}: {' '.join(reqs)}" for name, reqs in PEERS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="default: all of them")
    args = parser.parse_args(argv)
    for name in args.names or list(PEERS):
        started = time.monotonic()
        fresh = installed(name)
        ensure(name)
        state = "up to date" if fresh else "installed"
        print(f"{name}: {state} in {time.monotonic() - started:.1f}s at {venv_dir(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
