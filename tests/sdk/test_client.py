"""tusk.Client and tusk.AsyncClient against every service on real ports."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tusk
from tests.inference import models
from tests.sdk.conftest import Services
from tusk.client.models import JobInfo
from tusk.errors import AlreadyExists, Conflict, InvalidArgument, NotFound


@pytest.fixture
def tc(services: Services) -> Iterator[tusk.Client]:
    client = tusk.Client(**services.urls)
    yield client
    client.close()


def test_commit_context_finishes_and_files_read_back(tc: tusk.Client) -> None:
    tc.create_repo("sdk-raw", "from the SDK")
    assert tc.create_repo("sdk-raw", exist_ok=True).description == "from the SDK"
    with pytest.raises(AlreadyExists):
        tc.create_repo("sdk-raw")
    with tc.commit("sdk-raw@master", description="day 1") as c:
        c.put_file("/data/a.csv", "x,y\n1,2\n")
        c.put_files({"/data/b.csv": b"x,y\n3,4\n", "/readme.txt": b"hello"})
        assert c.read_file("/readme.txt") == b"hello"  # staged, readable before the finish
    assert c.info.state == "finished"
    assert c.info.file_count == 3
    assert tc.read_file("sdk-raw@master:/data/a.csv") == b"x,y\n1,2\n"
    assert tc.read_file("sdk-raw@master:/readme.txt", offset=1, length=3) == b"ell"
    assert b"".join(tc.stream_file("sdk-raw@master:/data/b.csv")) == b"x,y\n3,4\n"
    assert [f.path for f in tc.list_files("sdk-raw@master:/data")] == ["/data/a.csv",
                                                                       "/data/b.csv"]
    assert [f.path for f in tc.glob("sdk-raw@master", "/**/*.csv")] == ["/data/a.csv",
                                                                        "/data/b.csv"]
    assert [f.path for f in tc.walk("sdk-raw@master")] == ["/data/a.csv", "/data/b.csv",
                                                           "/readme.txt"]
    assert tc.stat("sdk-raw@master:/data").type == "dir"

    # A write outside a commit makes a commit of its own; diff shows what it changed.
    tc.write_file("sdk-raw@master:/data/a.csv", b"x,y\n9,9\n")
    changes = tc.diff("sdk-raw@master").changes
    assert [(d.path, d.change) for d in changes] == [("/data/a.csv", "modified")]
    assert len(tc.log("sdk-raw@master")) == 2
    assert tc.read_file("sdk-raw@master^1:/data/a.csv") == b"x,y\n1,2\n"


def test_a_failing_block_abandons_its_commit(tc: tusk.Client) -> None:
    tc.create_repo("sdk-abandon")
    def write_then_fail() -> str:
        with tc.commit("sdk-abandon@master") as c:
            c.put_file("/half.csv", b"1,2\n")
            raise RuntimeError(c.id)

    with pytest.raises(RuntimeError) as failed:
        write_then_fail()
    opened = str(failed.value)
    with pytest.raises(NotFound, match="no finished commit"):
        tc.inspect_commit("sdk-abandon@master")
    with pytest.raises(NotFound):
        tc.inspect_commit(f"sdk-abandon@{opened}")  # dropped, not left open


def test_writes_join_the_open_commit(tc: tusk.Client) -> None:
    tc.create_repo("sdk-join")
    opened = tc.start_commit("sdk-join@master")
    tc.write_file("sdk-join@master:/a", b"a")
    tc.write_file("sdk-join@master:/b", b"b")
    finished = tc.finish_commit("sdk-join@master")
    assert (finished.id, finished.file_count) == (opened.id, 2)
    with pytest.raises(Conflict, match="finished"):
        tc.write_file(f"sdk-join@{opened.id}:/c", b"c")  # a finished commit is immutable


def test_bad_addresses_are_named(tc: tusk.Client) -> None:
    with pytest.raises(InvalidArgument, match="names no file"):
        tc.read_file("sdk-raw@master")
    with pytest.raises(InvalidArgument, match="invalid repo name"):
        tc.read_file("not a repo@master:/a")
    with pytest.raises(InvalidArgument, match="needs a branch"):
        tc.start_commit("sdk-raw@master^1")


async def test_sync_client_works_inside_a_running_event_loop(services: Services) -> None:
    """As in Jupyter: a loop runs in this thread, and the sync client is called from it."""
    asyncio.get_running_loop()
    with tusk.Client(**services.urls) as client:
        client.create_repo("sdk-notebook", exist_ok=True)
        client.write_file("sdk-notebook@master:/cell.txt", "from a notebook")
        assert client.read_file("sdk-notebook@master:/cell.txt") == b"from a notebook"


async def test_async_client(services: Services) -> None:
    async with tusk.AsyncClient(**services.urls) as tc:
        await tc.create_repo("sdk-async")
        async with tc.commit("sdk-async@master") as c:
            await c.put_file("/a.txt", b"async")
        assert await tc.read_file("sdk-async@master:/a.txt") == b"async"
        assert [r.name for r in await tc.list_repos() if r.name == "sdk-async"] == ["sdk-async"]


def test_the_client_finds_services_through_a_context(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REPO", "TRIGGER", "SCHEDULER", "INFERENCE"):
        monkeypatch.delenv(f"TUSK_{name}_URL", raising=False)
    monkeypatch.setenv("TUSK_CONFIG_DIR", str(tmp_path))
    (tmp_path / "contexts.json").write_text(json.dumps({
        "current": "here", "contexts": {"here": {"repo_url": services.repo}},
    }))
    with tusk.Client() as client:
        assert client.aio.settings.context == "here"
        assert client.aio.repo.base_url == services.repo
        client.list_repos()


COPY = textwrap.dedent("""
    import os, shutil
    root = os.environ["TUSK_PFS_ROOT"]
    shutil.copytree(os.path.join(root, "src"), os.path.join(root, "out"), dirs_exist_ok=True)
""")


def test_pipeline_job_wait_with_progress_and_lineage(tc: tusk.Client) -> None:
    tc.create_repo("src")
    tc.create_pipeline({
        "pipeline": {"name": "copy"},
        "input": {"pfs": {"repo": "src", "branch": "master", "glob": "/*"}},
        "transform": {"cmd": [sys.executable, "-c", COPY]},
    })
    assert [p.name for p in tc.list_pipelines()] == ["copy"]
    with tc.commit("src@master") as c:
        c.put_files({"/a.txt": b"a", "/b.txt": b"b", "/c.txt": b"c"})
    job = tc.find_job("copy", c.info.global_id)
    seen: list[JobInfo] = []
    ended = tc.wait_job(job.id, timeout=300, progress=seen.append)
    assert ended.state == "success", ended.reason
    assert ended.counts.total == 3
    assert seen
    assert seen[-1].ended
    assert tc.read_file("copy@master:/b.txt") == b"b"
    up = tc.lineage("copy@master")
    assert ("src", c.id) in [(i.repo, i.id) for i in up]
    down = tc.lineage(f"src@{c.id}", down=True)
    assert {i.repo for i in down} == {"src", "copy"}
    assert {i.global_id for i in up} == {c.info.global_id}


def test_models_at_runtime_and_predict_as_arrays(tc: tusk.Client) -> None:
    tc.create_repo("sdk-models")
    commit = tc.write_file("sdk-models@master:/affine.onnx", models.affine(2.0, 1.0)).commit
    added = tc.add_model("affine", "sdk-models@master:/affine.onnx")
    assert (added.name, added.origin) == ("affine", "runtime")
    # Adding the same again is a no-op; another source under the name needs replace.
    tc.add_model("affine", "sdk-models@master:/affine.onnx")
    with pytest.raises(AlreadyExists, match="replace"):
        tc.add_model("affine", "sdk-models@master:/other.onnx")
    wait_until(lambda: tc.model("affine").parameters.get("state") == "READY")

    answer = tc.predict("affine", np.array([[1, 2, 3, 4]], dtype=np.float32))
    np.testing.assert_allclose(answer.output, [[3, 5, 7, 9]])
    assert answer.output.dtype == np.float32
    assert answer.version == commit
    assert answer.lineage["model_commit"] == commit
    # A dict of inputs by name, and float64 input sent as the model's float32.
    assert tc.predict("affine", {"x": [[0.0, 0.0, 0.0, 0.5]]}).outputs["y"].tolist() == [
        [1.0, 1.0, 1.0, 2.0]
    ]

    tc.remove_model("affine")
    with pytest.raises(NotFound, match="unknown model 'affine'"):
        tc.model("affine")
    with pytest.raises(NotFound):
        tc.remove_model("affine")


def wait_until(condition: object, timeout: float = 120.0) -> None:
    """Polls ``condition`` (a callable) until it holds; the server offers no change feed."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
