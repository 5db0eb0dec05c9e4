"""A full disk under the ``file://`` store answers 507 and leaves no partial behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import embedded_settings
from tests.repo.helpers import error, ok
from tusk_repo.app import create_app
from tusk_repo.context import build_context


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real file system that fills up (mounting needs root)."""
    root = tmp_path / "small"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (this test needs root): {mounted.stderr}"
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.fixture
async def client(small_disk: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = embedded_settings(
        tmp_path / "data", object_store_url=(small_disk / "objects").as_uri()
    )
    async with build_context(settings) as context:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://repo") as c:
            yield c


async def test_disk_full_answers_507_and_leaves_no_partial(
    client: httpx.AsyncClient, small_disk: Path
) -> None:
    ok(await client.post("/v1/repos", json={"name": "full"}), 201)
    commit = ok(await client.post("/v1/repos/full/commits", json={"branch": "master"}), 201)
    url = f"/v1/repos/full/commits/{commit['id']}/file"
    for _ in range(3):  # the disk stays usable: each failure cleans up after itself
        big = os.urandom(3 << 20)  # more than the disk holds, in many distinct chunks
        error(await client.put(url, params={"path": "/big"}, content=big), 507, "no space left")
        assert not list(small_disk.rglob("*.tmp")), "a failed write left a partial behind"
    # Nothing of the failed puts is part of the commit.
    listing = ok(await client.get(f"/v1/repos/full/commits/{commit['id']}/list"))
    assert listing["items"] == []
