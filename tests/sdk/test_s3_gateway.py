"""The S3 gateway through unmodified S3 tools: boto3, the AWS CLI, s3fs with pandas, and
DuckDB's httpfs; on the embedded and the real (PostgreSQL + S3) backends."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import files
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pandas as pd
import pytest
import s3fs
from botocore.client import Config
from botocore.exceptions import ClientError

import tusk
from tests.sdk.conftest import TOKEN, Gateway

AWS = Path(sys.executable).with_name("aws")


def s3_client(endpoint: str, secret: str = "unused") -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="tusk", aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture
def repo(gateway: Gateway) -> Iterator[str]:
    name = f"s3-{uuid.uuid4().hex[:8]}"
    with tusk.Client(gateway.repo) as client:
        client.create_repo(name)
        yield name


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_boto3_objects(gateway: Gateway, repo: str) -> None:
    s3 = s3_client(gateway.s3)
    assert repo in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    put = s3.put_object(Bucket=repo, Key="master/data/a.csv", Body=b"0123456789")
    assert put["ETag"].strip('"')
    with tusk.Client(gateway.repo) as client:  # a write outside an open commit is a commit
        assert client.read_file(f"{repo}@master:/data/a.csv") == b"0123456789"
        first = client.inspect_commit(f"{repo}@master").id

    got = s3.get_object(Bucket=repo, Key="master/data/a.csv")
    assert got["Body"].read() == b"0123456789"
    assert got["ContentLength"] == 10
    ranged = s3.get_object(Bucket=repo, Key="master/data/a.csv", Range="bytes=2-4")
    assert (ranged["Body"].read(), ranged["ContentRange"]) == (b"234", "bytes 2-4/10")
    assert s3.get_object(Bucket=repo, Key="master/data/a.csv", Range="bytes=-3")[
        "Body"].read() == b"789"
    head = s3.head_object(Bucket=repo, Key="master/data/a.csv")
    assert head["ContentLength"] == 10
    assert head["ContentType"] == "text/csv"

    s3.copy_object(Bucket=repo, Key="master/data/copy.csv",
                   CopySource={"Bucket": repo, "Key": "master/data/a.csv"})
    assert s3.get_object(Bucket=repo, Key="master/data/copy.csv")["Body"].read() == b"0123456789"
    s3.put_object(Bucket=repo, Key="master/data/a.csv", Body=b"new")
    # The first commit, named by id, still has the old content: reads of a commit are fixed.
    assert s3.get_object(Bucket=repo, Key=f"{first}/data/a.csv")["Body"].read() == b"0123456789"
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=repo, Key=f"{first}/data/a.csv", Body=b"x")
    assert error_code(denied) == "AccessDenied"

    s3.delete_object(Bucket=repo, Key="master/data/copy.csv")
    s3.delete_object(Bucket=repo, Key="master/data/never-there.csv")  # as S3: no error
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=repo, Key="master/data/copy.csv")
    assert error_code(missing) == "NoSuchKey"
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="no-such-repo", Key="master/a")
    assert error_code(no_bucket) == "NoSuchBucket"
    with pytest.raises(ClientError) as bad_key:
        s3.put_object(Bucket=repo, Key="master", Body=b"x")
    assert error_code(bad_key) == "InvalidArgument"
    with pytest.raises(ClientError) as bad_range:
        s3.get_object(Bucket=repo, Key="master/data/a.csv", Range="bytes=100-200")
    assert error_code(bad_range) == "InvalidRange"


def test_boto3_listing_with_prefix_delimiter_and_pages(gateway: Gateway, repo: str) -> None:
    s3 = s3_client(gateway.s3)
    keys = [f"master/d/{i:02d}.txt" for i in range(7)] + ["master/d-x.txt", "master/e/f/g.txt"]
    with tusk.Client(gateway.repo) as client, client.commit(f"{repo}@master") as c:
        c.put_files({key.removeprefix("master"): b"x" for key in keys})
    top = s3.list_objects_v2(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["master/"]
    level = s3.list_objects_v2(Bucket=repo, Prefix="master/", Delimiter="/")
    assert [p["Prefix"] for p in level["CommonPrefixes"]] == ["master/d/", "master/e/"]
    assert [o["Key"] for o in level.get("Contents", [])] == ["master/d-x.txt"]
    everything = s3.list_objects_v2(Bucket=repo, Prefix="master/")
    assert [o["Key"] for o in everything["Contents"]] == sorted(keys)  # bytewise: d-x < d/

    paginator = s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=repo, Prefix="master/d/", PaginationConfig={
        "PageSize": 3}))
    assert [len(p["Contents"]) for p in pages] == [3, 3, 1]
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys[:7]
    v1 = s3.list_objects(Bucket=repo, Prefix="master/d", Delimiter="/")
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["master/d/"]


def test_multipart_and_batched_writes_make_one_commit(gateway: Gateway, repo: str) -> None:
    s3 = s3_client(gateway.s3)
    part = os.urandom(5 << 20)
    with tusk.Client(gateway.repo) as client:
        opened = client.start_commit(f"{repo}@master")
        upload = s3.create_multipart_upload(Bucket=repo, Key="master/big.bin")
        etags = [
            s3.upload_part(Bucket=repo, Key="master/big.bin", UploadId=upload["UploadId"],
                           PartNumber=n, Body=body)["ETag"]
            for n, body in ((1, part), (2, b"tail"))
        ]
        s3.complete_multipart_upload(
            Bucket=repo, Key="master/big.bin", UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in zip((1, 2), etags, strict=True)]},
        )
        for i in range(5):
            s3.put_object(Bucket=repo, Key=f"master/small/{i}", Body=b"s")
        s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": "master/small/0"},
                                                           {"Key": "master/small/1"}]})
        finished = client.finish_commit(f"{repo}@master")
        assert finished.id == opened.id
        assert finished.file_count == 4
        assert len(client.log(f"{repo}@master")) == 1
        assert client.read_file(f"{repo}@master:/big.bin") == part + b"tail"


def test_sigv4_maps_onto_tokens(gateway: Gateway, repo: str) -> None:
    good = s3_client(gateway.s3_signed, secret=TOKEN)
    good.put_object(Bucket=repo, Key="master/signed.txt", Body=b"ok")
    assert good.get_object(Bucket=repo, Key="master/signed.txt")["Body"].read() == b"ok"
    assert any(o["Key"] == "master/signed.txt"
               for o in good.list_objects_v2(Bucket=repo, Prefix="master/")["Contents"])
    with pytest.raises(ClientError) as wrong:
        s3_client(gateway.s3_signed, secret="not-a-token").list_buckets()
    assert error_code(wrong) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as wrong_put:
        s3_client(gateway.s3_signed, secret="not-a-token").put_object(
            Bucket=repo, Key="master/forged.txt", Body=b"no")
    assert error_code(wrong_put) == "SignatureDoesNotMatch"
    with tusk.Client(gateway.repo) as client:
        assert not [f for f in client.list_files(f"{repo}@master") if "forged" in f.path]


def test_aws_cli(gateway: Gateway, repo: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "tusk", "AWS_SECRET_ACCESS_KEY": TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def aws(*args: str) -> str:
        result = subprocess.run(
            [str(AWS), "--endpoint-url", gateway.s3_signed, "s3", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    (local / "a.csv").write_text("a\n1\n")
    (local / "sub" / "b.csv").write_text("b\n2\n")
    (local / "big.bin").write_bytes(os.urandom(9 << 20))  # over the CLI's multipart threshold
    aws("cp", "--recursive", str(local), f"s3://{repo}/master/in/")
    listing = aws("ls", "--recursive", f"s3://{repo}/master/in/")
    assert {line.split()[-1] for line in listing.splitlines()} == {
        "master/in/a.csv", "master/in/big.bin", "master/in/sub/b.csv"}
    down = tmp_path / "down"
    aws("cp", "--recursive", f"s3://{repo}/master/in/", str(down))
    assert (down / "big.bin").read_bytes() == (local / "big.bin").read_bytes()
    assert (down / "sub" / "b.csv").read_text() == "b\n2\n"
    aws("rm", f"s3://{repo}/master/in/a.csv")
    assert "a.csv" not in aws("ls", f"s3://{repo}/master/in/")


def test_s3fs_and_pandas(gateway: Gateway, repo: str) -> None:
    options = {"key": "tusk", "secret": TOKEN,
               "client_kwargs": {"endpoint_url": gateway.s3_signed, "region_name": "us-east-1"}}
    frame = pd.DataFrame({"id": [1, 2, 3], "limit": [10.5, 20.0, 30.25]})
    frame.to_csv(f"s3://{repo}/master/frame.csv", index=False, storage_options=options)
    frame.to_parquet(f"s3://{repo}/master/frame.parquet", storage_options=options)
    pd.testing.assert_frame_equal(
        pd.read_csv(f"s3://{repo}/master/frame.csv", storage_options=options), frame)
    pd.testing.assert_frame_equal(
        pd.read_parquet(f"s3://{repo}/master/frame.parquet", storage_options=options), frame)
    fs = s3fs.S3FileSystem(**options)
    assert sorted(fs.ls(f"{repo}/master/")) == [f"{repo}/master/frame.csv",
                                                f"{repo}/master/frame.parquet"]
    assert fs.glob(f"{repo}/master/*.csv") == [f"{repo}/master/frame.csv"]


def test_duckdb_httpfs(gateway: Gateway, repo: str) -> None:
    s3 = s3_client(gateway.s3_signed, secret=TOKEN)
    s3.put_object(Bucket=repo, Key="master/in/a.csv", Body=b"k,v\n1,10\n2,20\n")
    s3.put_object(Bucket=repo, Key="master/in/b.csv", Body=b"k,v\n3,30\n")
    connection = duckdb.connect()
    load_httpfs(connection)
    host = gateway.s3_signed.removeprefix("http://")
    connection.sql(
        f"CREATE SECRET tusk (TYPE s3, KEY_ID 'tusk', SECRET '{TOKEN}', REGION 'us-east-1', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
    )
    total = connection.sql(f"SELECT sum(v) FROM read_csv('s3://{repo}/master/in/*.csv')")
    assert total.fetchone() == (60,)
    connection.sql(f"COPY (SELECT 7 AS answer) TO 's3://{repo}/master/out/answer.parquet'")
    assert connection.sql(
        f"SELECT answer FROM 's3://{repo}/master/out/answer.parquet'").fetchone() == (7,)


def load_httpfs(connection: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's httpfs from the duckdb-ext-httpfs package: DuckDB would otherwise download it
    at run time, from a server a CI machine may not reach."""
    shipped = [p for p in files("duckdb-ext-httpfs") or []
               if p.name == "httpfs.duckdb_extension"]
    assert shipped, "duckdb-ext-httpfs ships no httpfs.duckdb_extension"
    connection.execute("SET autoinstall_known_extensions = false")
    connection.load_extension(str(shipped[0].locate()))


def test_a_repo_of_a_project_is_bucket_repo_dot_project(gateway: Gateway) -> None:
    """As Pachyderm's gateway: project p's repo x is bucket ``x.p`` (names hold no '.')."""
    project = f"p{uuid.uuid4().hex[:8]}"
    with tusk.Client(gateway.repo) as client:
        client.create_project(project)
        client.create_repo(f"{project}/data")
        client.create_repo("data", exist_ok=True)
    s3 = s3_client(gateway.s3)
    assert f"data.{project}" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=f"data.{project}", Key="master/a.csv", Body=b"in the project")
    with tusk.Client(gateway.repo) as client:
        assert client.read_file(f"{project}/data@master:/a.csv") == b"in the project"
    got = s3.get_object(Bucket=f"data.{project}", Key="master/a.csv")
    assert got["Body"].read() == b"in the project"
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket="data.nosuchproject")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
