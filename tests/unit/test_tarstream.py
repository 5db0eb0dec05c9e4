"""Extracting a tar stream as ``tusk get -r`` does: small files written by worker threads,
large ones streamed, every file checked against its hash before it takes its final name."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import blake3
import pytest

from tusk.client.tarstream import HASH_RECORD, extract
from tusk.errors import InvalidArgument


def archive(files: dict[str, bytes], *, damaged: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            digest = blake3.blake3(data).hexdigest()
            info.pax_headers = {HASH_RECORD: "0" * 64 if name == damaged else digest}
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def pieces(data: bytes, size: int = 7_777) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):  # pieces that cut headers and files anywhere
        yield data[start : start + size]


def on_disk(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_many_small_files_and_a_large_one_arrive_whole(tmp_path: Path) -> None:
    files = {f"d{i % 13}/sub{i % 3}/f{i:05}": os.urandom(i % 5000) for i in range(1_500)}
    files["big/blob"] = os.urandom((1 << 20) + 12_345)
    files["long/" + "é" * 60 + "/" + "n" * 120] = b"a name in a PAX record"
    extracted = await extract(pieces(archive(files)), tmp_path / "out")
    assert (extracted.files, extracted.bytes) == (len(files), sum(map(len, files.values())))
    assert on_disk(tmp_path / "out") == files


async def test_a_damaged_file_stops_the_download_and_never_takes_its_name(
    tmp_path: Path,
) -> None:
    files = {f"f{i:03}": os.urandom(100) for i in range(200)}
    with pytest.raises(InvalidArgument, match="f150 arrived damaged"):
        await extract(pieces(archive(files, damaged="f150")), tmp_path / "out")
    written = on_disk(tmp_path / "out")
    assert "f150" not in written
    assert all(files[name] == data for name, data in written.items())  # whatever came, whole


async def test_a_file_that_cannot_be_written_fails_the_download(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken").write_bytes(b"a file where a directory is needed")
    files = {f"ok/{i}": b"x" * 10 for i in range(300)} | {"taken/f": b"y"}
    with pytest.raises(FileExistsError):
        await extract(pieces(archive(files)), tmp_path / "out")
    assert (tmp_path / "out" / "taken").read_bytes() == b"a file where a directory is needed"


async def test_ustar_prefixes_are_joined_to_names(tmp_path: Path) -> None:
    out = io.BytesIO()
    name = "p" * 120 + "/file"  # too long for the name field: split into prefix and name
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    await extract(pieces(out.getvalue()), tmp_path / "out")
    assert on_disk(tmp_path / "out") == {name: b"abc"}


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"<html>not a tar</html>".ljust(1024, b"\0"), "not a tar stream"),
        (archive({"a": b"x"})[:700], "ended in the middle"),
        (archive({"../escape": b"x"}), "points outside"),
    ],
)
async def test_what_is_not_the_services_tar_is_refused(
    tmp_path: Path, stream: bytes, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await extract(pieces(stream), tmp_path / "out")
    assert not (tmp_path / "escape").exists()
