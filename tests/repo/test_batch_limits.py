"""Batch puts (tar, tar.gz) are read member by member: bounded memory, bounded expansion,
bounded file count, and every malformed archive answered 400 with nothing staged."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import embedded_settings
from tests.repo.helpers import error, ok, tar_of
from tusk_repo.app import create_app
from tusk_repo.context import build_context


async def open_commit(client: httpx.AsyncClient, repo: str = "batch") -> str:
    ok(await client.post("/v1/repos", json={"name": repo}), 201)
    commit = ok(await client.post(f"/v1/repos/{repo}/commits", json={"branch": "master"}), 201)
    return str(commit["id"])


async def staged(client: httpx.AsyncClient, commit: str) -> list[str]:
    listing = ok(await client.get(f"/v1/repos/batch/commits/{commit}/list"))
    return [item["path"] for item in listing["items"]]


async def put_batch(client: httpx.AsyncClient, commit: str, body: bytes) -> httpx.Response:
    return await client.post(f"/v1/repos/batch/commits/{commit}/files", content=body)


@pytest.fixture
async def small_limits(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = embedded_settings(
        tmp_path,
        TUSK_REPO_MAX_BATCH_EXPANDED_BYTES=1 << 20,
        TUSK_REPO_MAX_BATCH_FILES=10,
    )
    async with build_context(settings) as context:
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://repo") as c:
            yield c


async def test_expansion_over_the_limit_is_refused_naming_it(
    small_limits: httpx.AsyncClient,
) -> None:
    commit = await open_commit(small_limits)
    bomb = gzip.compress(tar_of({f"z{i}": bytes(400_000) for i in range(3)}))
    assert len(bomb) < 10_000  # small on the wire, 1.2 MB once expanded
    error(await put_batch(small_limits, commit, bomb), 413, "TUSK_REPO_MAX_BATCH_EXPANDED_BYTES")
    assert await staged(small_limits, commit) == []


async def test_too_many_files_are_refused_naming_the_limit(
    small_limits: httpx.AsyncClient,
) -> None:
    commit = await open_commit(small_limits)
    body = tar_of({f"f{i}": b"x" for i in range(11)})
    error(await put_batch(small_limits, commit, body), 413, "TUSK_REPO_MAX_BATCH_FILES")
    ok(await put_batch(small_limits, commit, tar_of({f"f{i}": b"x" for i in range(10)})), 201)


async def test_an_archive_cut_at_a_member_boundary_is_refused(client: httpx.AsyncClient) -> None:
    commit = await open_commit(client)
    whole = tar_of({"a": b"A" * 1000, "b": b"B" * 1000})
    # Header (512) + data padded to 1024: the cut leaves the first member whole, no marker.
    cut = whole[: 512 + 1024]
    error(await put_batch(client, commit, cut), 400, "truncated")
    error(await put_batch(client, commit, gzip.compress(cut)), 400, "truncated")
    assert await staged(client, commit) == []
    ok(await put_batch(client, commit, whole), 201)


async def test_non_utf8_member_names_are_refused(client: httpx.AsyncClient) -> None:
    commit = await open_commit(client)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("ok")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"1"))
    body = bytearray(buf.getvalue())
    body[0:2] = b"\xff\xfe"  # the name's bytes, then the header checksum made right again
    body[148:156] = b" " * 8
    body[148:156] = b"%06o\x00 " % sum(body[:512])
    error(await put_batch(client, commit, bytes(body)), 400, "not valid UTF-8")
    assert await staged(client, commit) == []


async def test_a_mangled_header_is_answered_400(client: httpx.AsyncClient) -> None:
    commit = await open_commit(client)
    body = bytearray(tar_of({"a": b"A" * 10, "b": b"B" * 10}))
    body[1024:1030] = b"\x00\xff\x00\xff\x00\xff"  # the second header's name, checksum now wrong
    error(await put_batch(client, commit, bytes(body)), 400, "not a valid tar archive")
    error(await put_batch(client, commit, b"\x1f\x8b" + b"garbage" * 10), 400, "tar archive")
    assert await staged(client, commit) == []


_MEASURE = textwrap.dedent(
    """
    import asyncio, gzip, io, resource, sys, tarfile
    from pathlib import Path
    import httpx
    from tusk_repo.app import create_app
    from tusk_repo.config import RepoSettings
    from tusk_repo.context import build_context

    MEMBER, COUNT = 60 << 20, 10

    def archive() -> bytes:
        out = io.BytesIO()
        zeros = bytes(MEMBER)
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as gz:
            with tarfile.open(fileobj=gz, mode="w") as tar:
                for i in range(COUNT):
                    info = tarfile.TarInfo(f"zeros-{i}")
                    info.size = MEMBER
                    tar.addfile(info, io.BytesIO(zeros))
        return out.getvalue()

    async def main() -> None:
        body = archive()
        settings = RepoSettings(data_dir=Path(sys.argv[1]))
        async with build_context(settings) as ctx:
            transport = httpx.ASGITransport(app=create_app(context=ctx))
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
                await c.post("/v1/repos", json={"name": "z"})
                commit = (await c.post("/v1/repos/z/commits", json={"branch": "m"})).json()["id"]
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                r = await c.post(f"/v1/repos/z/commits/{commit}/files", content=body, timeout=None)
                assert r.status_code == 201, r.text
                after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(body), (after - before) * 1024)

    asyncio.run(main())
    """
)


def test_a_compressed_batch_is_stored_in_bounded_memory(tmp_path: Path) -> None:
    """600 MiB of zeros in a .tar.gz of a few MB: the peak grows by far less than the content
    (held whole, it grew by more than all of it)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    body_size, growth = map(int, done.stdout.split())
    assert body_size < 8 << 20  # a few MB on the wire
    assert growth < 200 << 20, f"peak memory grew by {growth >> 20} MiB for 600 MiB of content"
