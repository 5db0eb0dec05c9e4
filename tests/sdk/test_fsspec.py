"""tusk:// through fsspec, and pandas, polars and DuckDB reading and writing through it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import duckdb
import fsspec
import hypothesis.strategies as st
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import tusk
from tests.sdk.conftest import Gateway
from tusk.sdk.fs import TuskFileSystem


@pytest.fixture
def repo(gateway: Gateway) -> Iterator[str]:
    name = f"fs-{uuid.uuid4().hex[:8]}"
    with tusk.Client(gateway.repo) as client:
        client.create_repo(name)
        yield name


@pytest.fixture
def fs(gateway: Gateway) -> TuskFileSystem:
    filesystem = fsspec.filesystem("tusk", repo_url=gateway.repo)
    assert isinstance(filesystem, TuskFileSystem)  # found through the entry point
    return filesystem


def test_write_read_ls_glob_info_and_ranges(fs: TuskFileSystem, repo: str) -> None:
    with fs.open(f"tusk://{repo}@master/data/a.txt", "wb") as f:
        f.write(b"0123456789")
    fs.pipe_file(f"tusk://{repo}@master/data/b.txt", b"bee")
    assert fs.cat_file(f"tusk://{repo}@master/data/a.txt") == b"0123456789"
    assert fs.cat_file(f"tusk://{repo}/data/a.txt", start=2, end=5) == b"234"  # master
    assert fs.cat_file(f"tusk://{repo}/data/a.txt", start=-3) == b"789"
    with fs.open(f"tusk://{repo}@master/data/a.txt", "rb") as f:
        f.seek(7)
        assert f.read(2) == b"78"
    assert fs.ls(f"tusk://{repo}@master/data", detail=False) == [
        f"{repo}@master/data/a.txt", f"{repo}@master/data/b.txt"
    ]
    info = fs.info(f"tusk://{repo}@master/data/a.txt")
    assert (info["type"], info["size"]) == ("file", 10)
    assert fs.info(f"tusk://{repo}@master/data")["type"] == "directory"
    assert fs.glob(f"tusk://{repo}@master/**/*.txt") == [
        f"{repo}@master/data/a.txt", f"{repo}@master/data/b.txt"
    ]
    assert fs.exists(f"tusk://{repo}@master/data/b.txt")
    assert not fs.exists(f"tusk://{repo}@master/data/c.txt")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"tusk://{repo}@master/nope.txt")
    fs.rm(f"tusk://{repo}@master/data/b.txt")
    assert not fs.exists(f"tusk://{repo}@master/data/b.txt")


def test_each_write_is_a_commit_and_a_commit_id_never_changes(
    gateway: Gateway, fs: TuskFileSystem, repo: str
) -> None:
    fs.pipe_file(f"tusk://{repo}@master/v.txt", b"one")
    with tusk.Client(gateway.repo) as client:
        first = client.inspect_commit(f"{repo}@master").id
        fs.pipe_file(f"tusk://{repo}@master/v.txt", b"two")
        assert len(client.log(f"{repo}@master")) == 2
        # Writes into an open commit join it: one commit for many files.
        client.start_commit(f"{repo}@master")
        fs.pipe_file(f"tusk://{repo}@master/x.txt", b"x")
        fs.pipe_file(f"tusk://{repo}@master/y.txt", b"y")
        finished = client.finish_commit(f"{repo}@master")
        assert finished.file_count == 3
        assert len(client.log(f"{repo}@master")) == 3
    assert fs.cat_file(f"tusk://{repo}@{first}/v.txt") == b"one"
    assert fs.cat_file(f"tusk://{repo}@master/v.txt") == b"two"


def test_pandas_reads_and_writes(gateway: Gateway, repo: str) -> None:
    options = {"repo_url": gateway.repo}
    frame = pd.DataFrame({"id": [1, 2, 3], "limit": [1000.0, 2500.5, 0.0]})
    frame.to_csv(f"tusk://{repo}@master/credit.csv", index=False, storage_options=options)
    frame.to_parquet(f"tusk://{repo}@master/credit.parquet", storage_options=options)
    back = pd.read_csv(f"tusk://{repo}@master/credit.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, frame)
    pd.testing.assert_frame_equal(
        pd.read_parquet(f"tusk://{repo}@master/credit.parquet", storage_options=options), frame
    )


def test_polars_reads_and_writes(gateway: Gateway, repo: str) -> None:
    options = {"repo_url": gateway.repo}
    frame = pl.DataFrame({"id": [1, 2], "name": ["a", "b"]})
    with fsspec.open(f"tusk://{repo}@master/p.parquet", "wb", **options) as f:
        frame.write_parquet(f)
    with fsspec.open(f"tusk://{repo}@master/p.parquet", "rb", **options) as f:
        assert pl.read_parquet(f).equals(frame)
    with fsspec.open(f"tusk://{repo}@master/p.csv", "wb", **options) as f:
        frame.write_csv(f)
    # polars hands only the clouds it knows to its own readers: others go through a file.
    with fsspec.open(f"tusk://{repo}@master/p.csv", "rb", **options) as f:
        assert pl.read_csv(f).equals(frame)


def test_duckdb_reads_and_writes(fs: TuskFileSystem, repo: str) -> None:
    fs.pipe_file(f"tusk://{repo}@master/in/a.csv", b"k,v\n1,10\n2,20\n")
    fs.pipe_file(f"tusk://{repo}@master/in/b.csv", b"k,v\n3,30\n")
    connection = duckdb.connect()
    connection.register_filesystem(fs)
    total = connection.sql(f"SELECT sum(v) FROM read_csv('tusk://{repo}@master/in/*.csv')")
    assert total.fetchone() == (60,)
    connection.sql(
        f"COPY (SELECT k, v * 2 AS v FROM read_csv('tusk://{repo}@master/in/a.csv')) "
        f"TO 'tusk://{repo}@master/out/doubled.parquet' (FORMAT parquet)"
    )
    doubled = connection.sql(f"SELECT v FROM 'tusk://{repo}@master/out/doubled.parquet'")
    assert doubled.fetchall() == [(20,), (40,)]


# Seeks and reads of any size, forwards, backwards and past the end, on a file of several
# 8 MiB chunks: what the streamed read-ahead serves and what a jump fetches must both be the
# file's bytes, wherever the stream stands.
_SIZE = 17 * (1 << 20) + 12_345
_OPS = st.lists(st.tuples(
    st.one_of(st.none(), st.integers(0, _SIZE + 10), st.integers(-100, -1)),
    st.one_of(st.integers(0, 300_000), st.just(-1), st.integers(1, 9 << 20)),
), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def random_file(gateway: Gateway) -> tuple[str, bytes]:
    data = random.Random(17).randbytes(_SIZE)  # no period: a misplaced byte shows
    name = f"fs-{uuid.uuid4().hex[:8]}"
    with tusk.Client(gateway.repo) as client:
        client.create_repo(name)
        client.write_file(f"{name}@master:/r.bin", data)
    return f"tusk://{name}@master/r.bin", data


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_random_seeks_and_reads_give_the_files_bytes(
    fs: TuskFileSystem, random_file: tuple[str, bytes], ops: list[tuple[int | None, int]]
) -> None:
    url, data = random_file
    with fs.open(url, "rb") as f:
        position = 0
        for seek, length in ops:
            if seek is not None:
                position = f.seek(seek, 2 if seek < 0 else 0)
                assert position == (max(0, _SIZE + seek) if seek < 0 else seek)
            got = f.read(length)
            expected = data[position:] if length < 0 else data[position : position + length]
            assert got == expected
            position += len(got)
            assert f.tell() == position


def test_a_block_cache_asked_for_reads_the_same_bytes(
    fs: TuskFileSystem, random_file: tuple[str, bytes]
) -> None:
    url, data = random_file
    with fs.open(url, "rb", cache_type="readahead", block_size=1 << 20) as f:
        assert f.read(1000) == data[:1000]
        f.seek(5 << 20)
        assert f.read(3 << 20) == data[5 << 20 : 8 << 20]
        f.seek(-10, 2)
        assert f.read() == data[-10:]
