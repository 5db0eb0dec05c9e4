"""Build every image the end-to-end run needs, with no registry: bases, stand-ins, tusk's own.

    python e2e/images.py [--only base|standins|tusk] [--save DIR]

* bases: `debian:bookworm-slim` (debootstrap), the Python image the tusk Dockerfiles name in
  their `PYTHON_IMAGE` default (Debian's python3 plus the host's extra CA certificates) and the
  pods' pause image;
* stand-ins for the third-party images docker-compose.yml and the chart's development values
  name (postgres, apache/kafka, versity/versitygw, amazon/aws-cli), from e2e/base/<name>/;
* tusk's images, discovered: one per services/*/Dockerfile (tagged `tusk/<dir>:<appVersion>`,
  the names compose and the chart use) and the credit example's `tusk/credit:latest`.

tusk's Dockerfiles are built unchanged: only `PYTHON_IMAGE` resolves to the local base, under
the very name they default to. Bases and stand-ins are built once per content of their inputs
(their e2e/base files, the Dockerfiles, the jar list, the versitygw version, the host's CAs,
the image they are built FROM): each is tagged `tusk.local/e2e/<name>:<digest of the inputs>`
and the name compose, the chart and the Dockerfiles use is pointed at that tag, so an image
built from other inputs is never used and a change rebuilds what depends on it. tusk's own
images are built every run (Docker's layer cache makes one after a code change cost the pip
layer only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "e2e"
CACHE = Path(os.environ.get("TUSK_CACHE_DIR", Path.home() / ".cache" / "tusk"))
DEBIAN_IMAGE = "debian:bookworm-slim"
PAUSE_IMAGE = "tusk.local/pause:3.10"
# Which directory of e2e/base/ stands in for a third-party repository.
STAND_INS = {
    "postgres": "postgres",
    "apache/kafka": "kafka",
    "versity/versitygw": "versitygw",
    "amazon/aws-cli": "aws-cli",
}
CA_DIR = Path("/usr/local/share/ca-certificates")


class ImageError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"images: {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def docker(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        ["docker", *args],
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(f"`docker {' '.join(args)}` failed (exit {result.returncode})")
    return result.stdout or ""


def exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        ).returncode
        == 0
    )


def inputs_digest(paths: Iterable[Path], *, root: Path = ROOT, extra: Iterable[str] = ()) -> str:
    """A digest of what an image is built from: every file under ``paths`` (its path relative
    to ``root``, whether it is executable, its bytes; never its timestamps, so a fresh clone of
    the same sources gives the same digest) and the ``extra`` strings (versions, the digest of
    the image it is built FROM)."""
    digest = hashlib.sha256()
    files: list[tuple[str, Path]] = []
    for path in paths:
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            name = file.relative_to(root) if file.is_relative_to(root) else Path(file.name)
            files.append((name.as_posix(), file))
    for name, file in sorted(files):
        mode = "x" if os.access(file, os.X_OK) else "-"
        content = file.read_bytes()
        digest.update(f"{name}\0{mode}\0{len(content)}\0".encode())
        digest.update(content)
    for value in extra:
        digest.update(f"extra\0{value}\0".encode())
    return digest.hexdigest()[:16]


def ca_certificates() -> list[Path]:
    return sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []


def stand_in_dir(image: str) -> str:
    repository = image.rsplit(":", 1)[0]
    directory = STAND_INS.get(repository)
    if directory is None:
        raise ImageError(
            f"{image} is named by docker-compose.yml or values-dev.yaml but no registry can be "
            f"reached and e2e/base/ has no stand-in for {repository}"
        )
    return directory


def versitygw_version(root: Path = ROOT) -> str:
    """The version the S3 tests build (tests/backing/s3.py), which the stand-in copies."""
    module = (root / "tests" / "backing" / "s3.py").read_text()
    match = re.search(r'^VERSION = "([^"]+)"', module, re.MULTILINE)
    if match is None:
        raise ImageError("tests/backing/s3.py names no versitygw VERSION")
    return match.group(1)


def digests(root: Path = ROOT) -> dict[str, str]:
    """Each base and stand-in image's name -> the digest of its inputs (see the module's
    docstring); an image's digest covers the digest of the image it is built FROM."""
    base = root / "e2e" / "base"
    debian = inputs_digest([base / "debootstrap.sh"], root=root)
    python = inputs_digest(
        [base / "python"],
        root=root,
        extra=[debian, *(c.name + c.read_text() for c in ca_certificates())],
    )
    found = {DEBIAN_IMAGE: debian, python_image(root): python}
    found[PAUSE_IMAGE] = inputs_digest([base / "pause"], root=root)
    for image in third_party_images(root):
        directory = stand_in_dir(image)
        # The digest of the base its Dockerfile is built FROM.
        dockerfile = (base / directory / "Dockerfile").read_text()
        extra = [image, python if "FROM ${PYTHON_IMAGE}" in dockerfile else debian]
        if directory == "versitygw":
            extra.append(versitygw_version(root))
        found[image] = inputs_digest([base / directory], root=root, extra=extra)
    return found


def content_tag(image: str, digest: str) -> str:
    """Where the image built from inputs of ``digest`` is kept: tusk.local/e2e/<name>:<digest>."""
    name = re.sub(r"[^a-z0-9]+", "-", image.rsplit(":", 1)[0].lower()).strip("-")
    return f"tusk.local/e2e/{name}:{digest}"


def current(image: str, digest: str) -> bool:
    """Point ``image`` at the build of these inputs if there is one (True), and drop the
    builds of other inputs of the same image (they would only hold disk)."""
    tag = content_tag(image, digest)
    repository = tag.rsplit(":", 1)[0]
    for old in docker(
        "images", "--format", "{{.Repository}}:{{.Tag}}", repository, capture=True
    ).split():
        if old != tag:
            log(f"{image}: dropping {old}, built from other inputs")
            docker("rmi", old, capture=True)
    if not exists(tag):
        return False
    docker("tag", tag, image)
    return True


def python_image(root: Path = ROOT) -> str:
    """The `PYTHON_IMAGE` default every tusk Dockerfile agrees on."""
    defaults = set()
    for dockerfile in sorted(root.glob("services/*/Dockerfile")):
        match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile.read_text(), re.MULTILINE)
        if match is None:
            raise ImageError(f"{dockerfile} has no `ARG PYTHON_IMAGE=` default")
        defaults.add(match.group(1))
    if len(defaults) != 1:
        raise ImageError(f"the service Dockerfiles disagree on PYTHON_IMAGE: {sorted(defaults)}")
    return defaults.pop()


def app_version() -> str:
    chart = yaml.safe_load((ROOT / "charts" / "tusk" / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def image_id(tag: str) -> str | None:
    return (
        docker("image", "inspect", "-f", "{{.Id}}", tag, capture=True).strip()
        if exists(tag)
        else None
    )


def build(tag: str, context: Path, dockerfile: Path | None = None, **args: str) -> str | None:
    """Build ``tag``; the id of the image it named before, if this build replaced it."""
    before = image_id(tag)
    argv = ["build", "--network", "host", "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    started = time.monotonic()
    log(f"building {tag}")
    docker(*argv, str(context))
    log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return before if before not in (None, image_id(tag)) else None


def remove_superseded(ids: list[str]) -> None:
    """Remove the images earlier runs built under the same names (half a GiB or more each):
    children before the images they were built FROM. Only the images themselves: the builder
    stages that cache the dependency layers stay. One still in use stays too."""
    for old in reversed(ids):
        subprocess.run(["docker", "rmi", old], capture_output=True, check=False)


def bases() -> list[str]:
    wanted = digests()
    python = python_image()
    if not current(DEBIAN_IMAGE, wanted[DEBIAN_IMAGE]):
        tag = content_tag(DEBIAN_IMAGE, wanted[DEBIAN_IMAGE])
        subprocess.run(["bash", str(E2E / "base" / "debootstrap.sh"), tag], check=True)
        docker("tag", tag, DEBIAN_IMAGE)
    if not current(python, wanted[python]):
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            shutil.copy(E2E / "base" / "python" / "Dockerfile", context / "Dockerfile")
            certs = context / "ca-certificates"
            certs.mkdir()
            for cert in ca_certificates():
                shutil.copy(cert, certs / cert.name)
            build(
                content_tag(python, wanted[python]),
                context,
                DEBIAN_IMAGE=content_tag(DEBIAN_IMAGE, wanted[DEBIAN_IMAGE]),
            )
        docker("tag", content_tag(python, wanted[python]), python)
    if not current(PAUSE_IMAGE, wanted[PAUSE_IMAGE]):
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            shutil.copy(E2E / "base" / "pause" / "Dockerfile", context / "Dockerfile")
            subprocess.run(
                [
                    "gcc",
                    "-Os",
                    "-static",
                    "-o",
                    str(context / "pause"),
                    str(E2E / "base" / "pause" / "pause.c"),
                ],
                check=True,
            )
            build(content_tag(PAUSE_IMAGE, wanted[PAUSE_IMAGE]), context)
        docker("tag", content_tag(PAUSE_IMAGE, wanted[PAUSE_IMAGE]), PAUSE_IMAGE)
    return [DEBIAN_IMAGE, python, PAUSE_IMAGE]


def third_party_images(root: Path = ROOT) -> list[str]:
    """Images compose and the chart's development values run without building them."""
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    names = {s["image"] for s in compose["services"].values() if "build" not in s and "image" in s}
    dev = yaml.safe_load((root / "charts" / "tusk" / "values-dev.yaml").read_text())

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    names.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dev)
    return sorted(names)


def stand_in(image: str, wanted: dict[str, str]) -> None:
    if current(image, wanted[image]):
        return
    directory = stand_in_dir(image)
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "ctx"
        shutil.copytree(E2E / "base" / directory, context)
        if directory == "kafka":
            # One download per jar list: a changed pom.xml must not reuse another's jars.
            pom = inputs_digest([context / "pom.xml"], root=context)
            libs = CACHE / "e2e" / f"kafka-libs-{pom}"
            if not (libs / ".complete").exists():
                log("fetching Kafka's jars from Maven Central")
                subprocess.run(
                    [
                        "mvn",
                        "-q",
                        "-B",
                        "-f",
                        str(context / "pom.xml"),
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={libs}",
                        "-DincludeScope=runtime",
                    ],
                    check=True,
                )
                (libs / ".complete").touch()
            shutil.copytree(libs, context / "libs", ignore=shutil.ignore_patterns(".complete"))
        if directory == "versitygw":
            binary = versitygw()
            shutil.copy(binary, context / "versitygw")
        python = python_image()
        tag = content_tag(image, wanted[image])
        build(
            tag,
            context,
            DEBIAN_IMAGE=content_tag(DEBIAN_IMAGE, wanted[DEBIAN_IMAGE]),
            PYTHON_IMAGE=content_tag(python, wanted[python]),
        )
        docker("tag", tag, image)


def versitygw() -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.backing import s3  # the S3 tests' own install: go install, cached

    return Path(s3.ensure_installed())


def tusk_images() -> list[str]:
    version = app_version()
    tags = []
    superseded: list[str | None] = []
    # The worker base first: pipeline images build FROM it.
    dockerfiles = sorted(
        ROOT.glob("services/*/Dockerfile"), key=lambda p: p.parent.name != "worker"
    )
    for dockerfile in dockerfiles:
        tag = f"tusk/{dockerfile.parent.name}:{version}"
        extras = {"TUSK_EXTRAS": "credit"} if dockerfile.parent.name == "scheduler" else {}
        superseded.append(build(tag, ROOT, dockerfile, **extras))
        tags.append(tag)
    credit = "tusk/credit:latest"
    superseded.append(
        build(
            credit,
            ROOT,
            ROOT / "examples" / "credit" / "Dockerfile",
            TUSK_WORKER_IMAGE=f"tusk/worker:{version}",
        )
    )
    tags.append(credit)
    remove_superseded([i for i in superseded if i])
    return tags


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        choices=["base", "standins", "tusk"],
        action="append",
        help="build only these groups (repeatable); compose builds tusk's own images itself",
    )
    args = parser.parse_args()
    groups = set(args.only or ["base", "standins", "tusk"])
    try:
        if "base" in groups:
            bases()
        if "standins" in groups:
            wanted = digests()
            for image in third_party_images():
                stand_in(image, wanted)
        if "tusk" in groups:
            tusk_images()
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"images: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
