"""`tusk put -f URL` (http and s3, from real servers) and `--untar` / `--split` as `pachctl put
file` has them, with the real `tusk` against `tusk up`."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.backing.s3 import S3Server

from .conftest import Stack


def as_json(result: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on a free loopback port serving a directory: (base URL, directory)."""
    root = tmp_path_factory.mktemp("web")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def listing(stack: Stack, address: str) -> list[str]:
    return sorted(f["path"] for f in as_json(stack.tusk("ls", address, "--json")))


def test_put_from_http_streams_the_file(stack: Stack, web: tuple[str, Path]) -> None:
    base, root = web
    data = bytes(range(256)) * 40_000  # 10 MB, not all the same
    (root / "big.bin").write_bytes(data)
    stack.tusk("repo", "create", "web-in")

    put = stack.tusk("put", "web-in@master:/", "-f", f"{base}/big.bin")

    assert "big.bin" in put.stderr.decode()
    got = stack.tusk("get", "web-in@master:/big.bin").stdout
    assert got == data
    stack.tusk("put", "web-in@master:/renamed.bin", "-f", f"{base}/big.bin")
    assert listing(stack, "web-in@master:/") == ["/big.bin", "/renamed.bin"]


def test_a_url_that_cannot_be_read_opens_no_commit(stack: Stack, web: tuple[str, Path]) -> None:
    base, _ = web
    stack.tusk("repo", "create", "web-missing")
    missing = stack.tusk("put", "web-missing@master:/", "-f", f"{base}/nope.csv", check=False)
    assert missing.returncode == 1
    assert "nope.csv" in missing.stderr.decode()
    assert "404" in missing.stderr.decode()
    assert as_json(stack.tusk("repo", "inspect", "web-missing", "--json"))["commit_count"] == 0


def test_put_from_s3(stack: Stack, s3: S3Server) -> None:
    bucket = "tusk-put-source"
    s3.create_bucket(bucket)
    s3.client().put_object(Bucket=bucket, Key="data/day-001.csv", Body=b"a,b\n1,2\n")
    env = {
        **stack.env,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
        "AWS_ENDPOINT_URL": s3.endpoint_url,
    }
    stack.tusk("repo", "create", "s3-in")

    stack.tusk("put", "s3-in@master:/raw/", "-f", f"s3://{bucket}/data/day-001.csv", env=env)

    assert stack.tusk("get", "s3-in@master:/raw/day-001.csv").stdout == b"a,b\n1,2\n"
    missing = stack.tusk(
        "put", "s3-in@master:/", "-f", f"s3://{bucket}/data/none.csv", env=env, check=False
    )
    assert missing.returncode == 1
    assert "NoSuchKey" in missing.stderr.decode()


def test_untar_from_a_url(stack: Stack, web: tuple[str, Path]) -> None:
    base, root = web
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("images/a.png", b"A"), ("images/sub/b.png", b"BB"), ("c.txt", b"C")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    (root / "images.tar.gz").write_bytes(buffer.getvalue())
    stack.tusk("repo", "create", "tar-in")

    stack.tusk("put", "tar-in@master:/unpacked", "--untar", "-f", f"{base}/images.tar.gz")

    files = [f["path"] for f in as_json(stack.tusk("glob", "tar-in@master", "/**", "--json"))]
    assert sorted(p for p in files if p.endswith((".png", ".txt"))) == [
        "/unpacked/c.txt",
        "/unpacked/images/a.png",
        "/unpacked/images/sub/b.png",
    ]
    assert stack.tusk("get", "tar-in@master:/unpacked/images/sub/b.png").stdout == b"BB"


def test_untar_refuses_members_outside_the_path(stack: Stack, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        member = tarfile.TarInfo("../../etc/evil")
        member.size = 1
        tar.addfile(member, io.BytesIO(b"x"))
    stack.tusk("repo", "create", "tar-evil")
    refused = stack.tusk("put", "tar-evil@master:/", "--untar", "-f", archive, check=False)
    assert refused.returncode == 1
    assert "refused archive member" in refused.stderr.decode()


def test_split_lines_and_json(stack: Stack, tmp_path: Path) -> None:
    lines = tmp_path / "rows.txt"
    lines.write_text("".join(f"row {i}\n" for i in range(10)))
    users = tmp_path / "users.json"
    users.write_text('{"id": 1}\n{"id": 2,\n "name": "two"}\n[3]\n"four"\n')
    stack.tusk("repo", "create", "split-in")

    stack.tusk(
        "put", "split-in@master:/", "-f", lines, "--split", "line", "--target-file-datums", "4"
    )
    stack.tusk("put", "split-in@master:/users", "-f", users, "--split", "json")

    assert listing(stack, "split-in@master:/rows.txt") == [
        "/rows.txt/0000000000000000",
        "/rows.txt/0000000000000001",
        "/rows.txt/0000000000000002",
    ]
    last = stack.tusk("get", "split-in@master:/rows.txt/0000000000000002").stdout
    assert last == b"row 8\nrow 9\n"
    pieces = listing(stack, "split-in@master:/users")
    assert len(pieces) == 4
    second = stack.tusk("get", f"split-in@master:{pieces[1]}").stdout
    assert json.loads(second) == {"id": 2, "name": "two"}

    bad = tmp_path / "bad.json"
    bad.write_text('{"id": 1}\n{"id": \n')
    refused = stack.tusk("put", "split-in@master:/bad", "-f", bad, "--split", "json", check=False)
    assert refused.returncode == 1
    assert "--split json: line 3" in refused.stderr.decode()
    wrong = stack.tusk("put", "split-in@master:/", "-f", lines, "--split", "xml", check=False)
    assert "use line, json or csv" in wrong.stderr.decode()


def test_split_csv_rows_with_the_header_in_every_piece(stack: Stack, tmp_path: Path) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text('id,note\n1,plain\n2,"two\nlines"\n3,"a ""quoted"" word"\n4,last\n')
    stack.tusk("repo", "create", "csv-in")

    stack.tusk(
        "put", "csv-in@master:/", "-f", sales, "--split", "csv", "--header-records", "1",
        "--target-file-datums", "2",
    )

    pieces = listing(stack, "csv-in@master:/sales.csv")
    assert len(pieces) == 2
    texts = [stack.tusk("get", f"csv-in@master:{p}").stdout.decode() for p in pieces]
    assert texts == [
        'id,note\n1,plain\n2,"two\nlines"\n',
        'id,note\n3,"a ""quoted"" word"\n4,last\n',
    ]
    refused = stack.tusk(
        "put", "csv-in@master:/x", "-f", sales, "--header-records", "1", check=False
    )
    assert refused.returncode == 1
    assert "need --split" in refused.stderr.decode()


def test_help_names_urls_untar_and_split(stack: Stack) -> None:
    text = stack.tusk("put", "--help").stdout.decode()
    for word in ("s3://", "--untar", "--split", "--target-file-datums", "--target-file-bytes"):
        assert word in text
