"""Pachyderm's container contract on a plain machine: each datum's command runs in its own mount
namespace (bubblewrap), where its inputs are at ``/pfs/<input>`` (read-only), its output at
``/pfs/out``, its scratch space a private ``/tmp``, and the rest of the machine is the system's
directories and the code directory, read-only. Other datums' staged data, other repos' files,
the services' data directories and home directories are not there at all.

An image puts its code where its Dockerfile says (``COPY edges.py /``), and specs name it there
(``python3 /edges.py``). The local runner's stand-in is an image root directory: each of its
entries is shown read-only at ``/<entry>``.

Where namespaces cannot be made (no bwrap, a container that forbids them), the command runs as
before, against the staged directory, and the worker says so once.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

PFS = Path("/pfs")
SandboxMode = Literal["auto", "bwrap", "off"]

logger = structlog.get_logger("tusk.worker")

# What a command may read: the system, read-only. /usr-merged systems make /bin etc. links.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
# Mounted empty and private in the sandbox: the host's are where other datums are staged.
_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run")  # noqa: S108
# Top-level names an image root cannot take: the sandbox's own mounts are there.
_RESERVED_AT_ROOT = frozenset(
    Path(d).name for d in (*_SYSTEM_DIRS, *_PRIVATE_DIRS, "/var", "/dev", "/proc", str(PFS))
)


class SandboxUnavailable(RuntimeError):
    """The sandbox was required (``TUSK_WORKER_SANDBOX=bwrap``) but cannot be made here."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: Path
    writable: bool = False


@dataclass(frozen=True)
class Sandbox:
    """How to wrap a datum's command; ``bwrap`` is None when commands run unwrapped."""

    bwrap: str | None
    readable: tuple[Path, ...] = ()
    """Host directories the command may read besides the system's (the code directory, the
    Python installation, PATH entries)."""
    image_files: tuple[Mount, ...] = ()
    """Entries of the image root, each read-only at ``/<name>``."""

    @property
    def active(self) -> bool:
        return self.bwrap is not None

    def wrap(
        self,
        cmd: Sequence[str],
        *,
        root: Path,
        inputs: Iterable[str],
        cwd: Path,
        extra: Sequence[Mount] = (),
    ) -> list[str]:
        """The argv that runs ``cmd`` with ``root/<input>`` at ``/pfs/<input>`` and
        ``root/out`` at ``/pfs/out``."""
        if self.bwrap is None:
            return list(cmd)
        argv = [
            self.bwrap,
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--dev", "/dev",
            "--proc", "/proc",
        ]  # fmt: skip
        # Private scratch first: the binds below may lie beneath /tmp (a code directory there).
        for private in _PRIVATE_DIRS:
            argv += ["--tmpfs", private]
        targets = [m.target for m in extra]
        for system in _SYSTEM_DIRS:
            if any(_under(t, Path(system)) for t in targets):
                argv += _layered(Path(system), targets)
            elif os.path.lexists(system):
                argv += ["--ro-bind-try", system, system]
        for directory in self.readable:
            argv += ["--ro-bind-try", str(directory), str(directory)]
        for entry in self.image_files:
            argv += ["--ro-bind", str(entry.source), str(entry.target)]
        if cwd not in self.readable:
            argv += ["--ro-bind-try", str(cwd), str(cwd)]
        argv += ["--dir", str(PFS)]
        for name in sorted(set(inputs)):
            argv += ["--ro-bind", str(root / name), str(PFS / name)]
        argv += ["--bind", str(root / "out"), str(PFS / "out")]
        for mount in extra:
            option = "--bind" if mount.writable else "--ro-bind"
            argv += [option, str(mount.source), str(mount.target)]
        argv += ["--chdir", str(cwd), "--", *cmd]
        return argv


def _layered(directory: Path, targets: Sequence[Path]) -> list[str]:
    """``directory`` rebuilt in the sandbox from its entries (read-only), so that a mount point
    can be made inside it for each target beneath: a read-only bind of it cannot take one."""
    argv = ["--dir", str(directory)] if directory != Path("/") else []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return argv
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif any(t != path and _under(t, path) for t in targets) and entry.is_dir():
            argv += _layered(path, targets)
        elif path not in targets:
            argv += ["--ro-bind-try", str(path), str(path)]
    return argv


def readable_dirs(environ: Mapping[str, str], cwd: Path) -> tuple[Path, ...]:
    """Directories a command needs to read to start at all: the code directory, the Python
    installation the worker runs from (a venv's interpreter for ``python3 …``) and PATH's
    directories; never a temporary directory, where other datums are staged."""
    found: list[Path] = []
    # The Python installation is read wherever it lies, even in a temporary directory (a
    # checkout under /tmp with its venv): it holds no staged data.
    installation = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    candidates = [cwd, Path(sys.prefix), Path(sys.base_prefix)]
    candidates += [Path(p) for p in environ.get("PATH", "").split(os.pathsep) if p]
    for path in candidates:
        if not path.is_absolute() or not path.is_dir():
            continue
        resolved = path.resolve()
        if any(_under(resolved, Path(d)) for d in _SYSTEM_DIRS):
            continue
        private = any(_under(resolved, Path(d)) for d in _PRIVATE_DIRS)
        if private and resolved not in installation:
            continue
        if resolved == Path("/") or resolved in found:
            continue
        found.append(resolved)
    return tuple(found)


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def image_root_mounts(image_root: Path, taken: Iterable[Path] = ()) -> tuple[Mount, ...]:
    """The entries of ``image_root`` as mounts at ``/<name>``; :class:`SandboxUnavailable`
    if the directory is missing or an entry would hide one of the sandbox's own directories or
    the directories ``taken`` (the code directory, the Python installation)."""
    try:
        entries = sorted(os.scandir(image_root), key=lambda e: e.name)
    except OSError as e:
        raise SandboxUnavailable(f"TUSK_WORKER_IMAGE_ROOT: cannot list {image_root}: {e}") from e
    reserved = _RESERVED_AT_ROOT | {p.parts[1] for p in taken if len(p.parts) > 1}
    clashes = [e.name for e in entries if e.name in reserved]
    if clashes:
        raise SandboxUnavailable(
            f"TUSK_WORKER_IMAGE_ROOT: {image_root} holds {', '.join(clashes)}, which would hide "
            "the sandbox's own directories; keep only the files the specs name at / there"
        )
    return tuple(Mount(Path(e.path).resolve(), Path("/", e.name)) for e in entries)


def make_sandbox(
    mode: SandboxMode, environ: Mapping[str, str], cwd: Path, image_root: Path | None = None
) -> Sandbox:
    """The sandbox ``mode`` asks for: ``off`` none; ``bwrap`` bubblewrap or
    :class:`SandboxUnavailable`; ``auto`` bubblewrap where it works, else none, with a
    warning. ``image_root``: a directory whose entries the command sees at ``/``."""
    if mode == "off":
        _warn_image_root_unused(image_root, "TUSK_WORKER_SANDBOX=off")
        return Sandbox(None)
    problem = _probe(shutil.which("bwrap", path=environ.get("PATH")))
    if problem is None:
        bwrap = shutil.which("bwrap", path=environ.get("PATH"))
        assert bwrap is not None
        readable = readable_dirs(environ, cwd)
        shown = () if image_root is None else image_root_mounts(image_root, (*readable, cwd))
        return Sandbox(bwrap, readable, shown)
    if mode == "bwrap":
        raise SandboxUnavailable(f"TUSK_WORKER_SANDBOX=bwrap, but {problem}")
    logger.warning(
        "datum commands run without a sandbox: they can read and write what the worker can, "
        "and see their inputs under the staging directory instead of /pfs",
        reason=problem,
        fix="install bubblewrap (apt-get install bubblewrap) where user namespaces are allowed",
    )
    _warn_image_root_unused(image_root, problem)
    return Sandbox(None)


def _warn_image_root_unused(image_root: Path | None, reason: str) -> None:
    if image_root is not None:
        logger.warning(
            "TUSK_WORKER_IMAGE_ROOT is set, but without the sandbox nothing can be shown at /: "
            "commands that name its files by absolute paths will not find them",
            image_root=str(image_root),
            reason=reason,
        )


def probe_ahead(mode: SandboxMode, environ: Mapping[str, str]) -> None:
    """Find out now whether bubblewrap works (remembered), so a warm worker's first datum does
    not wait for it."""
    if mode != "off":
        _probe(shutil.which("bwrap", path=environ.get("PATH")))


@functools.lru_cache(maxsize=4)
def _probe(bwrap: str | None) -> str | None:
    """Why bubblewrap cannot make a sandbox here; None when it can."""
    if bwrap is None:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    try:
        done = subprocess.run(  # noqa: S603 - bwrap found on PATH, fixed arguments
            [bwrap, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if done.returncode != 0:
        return f"bwrap cannot make namespaces here: {done.stderr.strip() or done.returncode}"
    return None
