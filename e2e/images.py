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
the very name they default to. Images already present are kept (Docker's layer cache makes a
rebuild after a code change cost the pip layer only). `--save DIR` writes each image as a tar
for `ctr images import` into a Kubernetes node.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
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


def python_image() -> str:
    """The `PYTHON_IMAGE` default every tusk Dockerfile agrees on."""
    defaults = set()
    for dockerfile in sorted(ROOT.glob("services/*/Dockerfile")):
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


def build(tag: str, context: Path, dockerfile: Path | None = None, **args: str) -> None:
    argv = ["build", "--network", "host", "-t", tag]
    if dockerfile is not None:
        argv += ["-f", str(dockerfile)]
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    started = time.monotonic()
    log(f"building {tag}")
    docker(*argv, str(context))
    log(f"built {tag} in {time.monotonic() - started:.0f}s")


def bases() -> list[str]:
    if not exists(DEBIAN_IMAGE):
        subprocess.run(["bash", str(E2E / "base" / "debootstrap.sh"), DEBIAN_IMAGE], check=True)
    python = python_image()
    if not exists(python):
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp)
            shutil.copy(E2E / "base" / "python" / "Dockerfile", context / "Dockerfile")
            certs = context / "ca-certificates"
            certs.mkdir()
            for cert in sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []:
                shutil.copy(cert, certs / cert.name)
            build(python, context, DEBIAN_IMAGE=DEBIAN_IMAGE)
    if not exists(PAUSE_IMAGE):
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
            build(PAUSE_IMAGE, context)
    return [DEBIAN_IMAGE, python, PAUSE_IMAGE]


def third_party_images() -> list[str]:
    """Images compose and the chart's development values run without building them."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    names = {s["image"] for s in compose["services"].values() if "build" not in s and "image" in s}
    dev = yaml.safe_load((ROOT / "charts" / "tusk" / "values-dev.yaml").read_text())

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


def stand_in(image: str) -> None:
    if exists(image):
        return
    repository = image.rsplit(":", 1)[0]
    directory = STAND_INS.get(repository)
    if directory is None:
        raise ImageError(
            f"{image} is named by docker-compose.yml or values-dev.yaml but no registry can be "
            f"reached and e2e/base/ has no stand-in for {repository}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "ctx"
        shutil.copytree(E2E / "base" / directory, context)
        if directory == "kafka":
            libs = CACHE / "e2e" / "kafka-libs"
            if not (libs / "kafka-tools-4.1.1.jar").exists():
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
            shutil.copytree(libs, context / "libs")
        if directory == "versitygw":
            binary = versitygw()
            shutil.copy(binary, context / "versitygw")
        build(image, context, DEBIAN_IMAGE=DEBIAN_IMAGE, PYTHON_IMAGE=python_image())


def versitygw() -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.backing import s3  # the S3 tests' own install: go install, cached

    return Path(s3.ensure_installed())


def tusk_images() -> list[str]:
    version = app_version()
    tags = []
    # The worker base first: pipeline images build FROM it.
    dockerfiles = sorted(
        ROOT.glob("services/*/Dockerfile"), key=lambda p: p.parent.name != "worker"
    )
    for dockerfile in dockerfiles:
        tag = f"tusk/{dockerfile.parent.name}:{version}"
        extras = {"TUSK_EXTRAS": "credit"} if dockerfile.parent.name == "scheduler" else {}
        build(tag, ROOT, dockerfile, **extras)
        tags.append(tag)
    credit = "tusk/credit:latest"
    build(
        credit,
        ROOT,
        ROOT / "examples" / "credit" / "Dockerfile",
        TUSK_WORKER_IMAGE=f"tusk/worker:{version}",
    )
    tags.append(credit)
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
            for image in third_party_images():
                stand_in(image)
        if "tusk" in groups:
            tusk_images()
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"images: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
