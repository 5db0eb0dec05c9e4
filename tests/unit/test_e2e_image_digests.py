"""The end-to-end run's base and stand-in images are tagged by a digest of their inputs
(e2e/images.py): a change to any input gives another tag, so a stale cached image is never
used; a fresh clone of the same sources gives the same tag, so a warm cache is."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e import images

ROOT = images.ROOT


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the digests read, copied as a fresh clone would have them."""
    copy = tmp_path / "p"
    shutil.copytree(ROOT / "e2e" / "base", copy / "e2e" / "base")
    for name in ["docker-compose.yml", "charts/tusk/values-dev.yaml", "tests/backing/s3.py"]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, copy / name)
    for dockerfile in ROOT.glob("services/*/Dockerfile"):
        target = copy / dockerfile.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dockerfile, target)
    return copy


def digests(root: Path) -> dict[str, str]:
    return images.digests(root)


def test_every_base_and_stand_in_has_a_digest_that_a_fresh_clone_shares(checkout: Path) -> None:
    here = images.digests(ROOT)
    assert set(here) == {
        images.DEBIAN_IMAGE,
        images.python_image(),
        images.PAUSE_IMAGE,
        *images.third_party_images(),
    }
    for file in checkout.rglob("*"):  # other timestamps, as after a clone
        os.utime(file, (0, 0))
    assert digests(checkout) == here


@pytest.mark.parametrize(
    ("changed", "rebuilt"),
    [
        # The rootfs changes every image built on it.
        ("e2e/base/debootstrap.sh", "all but pause"),
        ("e2e/base/python/Dockerfile", "python and what is built FROM it"),
        ("e2e/base/kafka/pom.xml", "kafka"),
        ("e2e/base/postgres/docker-entrypoint.sh", "postgres"),
        ("e2e/base/pause/pause.c", "pause"),
    ],
)
def test_a_changed_input_changes_the_digest_of_its_image_and_of_those_built_from_it(
    checkout: Path, changed: str, rebuilt: str
) -> None:
    before = digests(checkout)
    with (checkout / changed).open("a") as f:
        f.write("\n# changed\n")
    after = digests(checkout)
    moved = {image for image in before if before[image] != after[image]}
    python = images.python_image(checkout)
    kafka, postgres, aws = (
        {i for i in before if i.startswith(name)} for name in ("apache/kafka", "postgres", "amazon")
    )
    expected = {
        "all but pause": set(before) - {images.PAUSE_IMAGE},
        # aws-cli's stand-in is pip on the Python base; the others are built on Debian.
        "python and what is built FROM it": {python} | aws,
        "kafka": kafka,
        "postgres": postgres,
        "pause": {images.PAUSE_IMAGE},
    }[rebuilt]
    assert aws, before
    assert kafka, before
    assert postgres, before
    assert moved == expected, (changed, moved)


def test_an_executable_bit_and_a_new_file_count(checkout: Path) -> None:
    before = digests(checkout)
    entrypoint = checkout / "e2e" / "base" / "postgres" / "docker-entrypoint.sh"
    entrypoint.chmod(entrypoint.stat().st_mode ^ 0o111)
    flipped = digests(checkout)
    (checkout / "e2e" / "base" / "kafka" / "extra.conf").write_text("x=1\n")
    added = digests(checkout)
    postgres = next(i for i in before if i.startswith("postgres"))
    kafka = next(i for i in before if i.startswith("apache/kafka"))
    assert flipped[postgres] != before[postgres]
    assert added[kafka] != flipped[kafka]
    assert added[postgres] == flipped[postgres]


def test_the_versitygw_version_is_an_input(checkout: Path) -> None:
    before = digests(checkout)
    module = checkout / "tests" / "backing" / "s3.py"
    version = images.versitygw_version()
    module.write_text(module.read_text().replace(f'"{version}"', '"v0.0.1"'))
    after = digests(checkout)
    moved = {image for image in before if before[image] != after[image]}
    assert moved == {i for i in before if i.startswith("versity/versitygw")}


def test_a_content_tag_names_the_image_and_its_digest() -> None:
    assert (
        images.content_tag("apache/kafka:4.1.1", "0123456789abcdef")
        == "tusk.local/e2e/apache-kafka:0123456789abcdef"
    )
    assert images.content_tag("tusk.local/pause:3.10", "ab") == "tusk.local/e2e/tusk-local-pause:ab"
