"""Pachyderm's runtime contract in the local runner: each datum's command in its own mount
namespace (bubblewrap) with its inputs at /pfs/<input> and its output at /pfs/out, Pachyderm's
environment variables, and nowhere else to write or read staged data; secrets from the
secrets directory; accept_return_code and err_cmd."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.backing.bubblewrap import ensure_installed
from tests.worker.helpers import PY, Job, file_input, input_repo
from tusk.client import RepoClient
from tusk.worker.protocol import DatumSpec, SecretSpec, log_path


@pytest.fixture(scope="module", autouse=True)
def _bwrap() -> None:
    ensure_installed()


SANDBOXED = {"TUSK_WORKER_SANDBOX": "bwrap"}

CONTRACT = """
import json, os
report = {
    "a": open("/pfs/img/a.txt").read(),
    "env": {k: v for k, v in os.environ.items()
            if k.startswith(("PACH_", "PPS_", "img", "TUSK_PFS_ROOT"))},
    "pfs": sorted(os.listdir("/pfs")),
}
with open("/pfs/out/" + os.environ["PACH_DATUM_ID"] + ".json", "w") as out:
    json.dump(report, out)
"""


async def test_the_command_sees_its_datum_at_pfs_with_pachyderms_variables(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A", "/b.txt": b"B"})
    job = await Job.open(repo, repo_url)
    part = file_input("img", images, commit, "/a.txt").model_copy(update={"join_on": "a"})
    await job.write_shard([DatumSpec(id="d1", inputs=(part,))], [PY, "-c", CONTRACT])

    code, stderr = await job.run_worker(tmp_path, **SANDBOXED)

    assert code == 0, (stderr, await job.read(log_path(job.job, "d1")))
    report = json.loads(await job.output("/d1.json"))
    assert report["a"] == "A"
    assert report["pfs"] == ["img", "out"]
    assert report["env"] == {
        "img": "/pfs/img/a.txt",
        "img_COMMIT": commit,
        "PACH_DATUM_img_JOIN_ON": "a",
        "PACH_JOB_ID": job.job,
        "PACH_DATUM_ID": "d1",
        "PACH_OUTPUT_COMMIT_ID": job.output_commit,
        "PPS_PIPELINE_NAME": job.output_repo,
        "PPS_PROJECT_NAME": "default",
        "TUSK_PFS_ROOT": "/pfs",
    }


ESCAPE = """
import json, os, sys
tried = {}
def attempt(name, action):
    try:
        action()
        tried[name] = "done"
    except OSError as e:
        tried[name] = type(e).__name__
host, scratch, data = sys.argv[1:4]
attempt("write input", lambda: open("/pfs/img/new.txt", "w").write("x"))
attempt("write code dir", lambda: open(os.path.join(os.getcwd(), "escaped.txt"), "w").write("x"))
attempt("write host tmp", lambda: open(host, "w").write("x"))
attempt("list scratch", lambda: os.listdir(scratch))
attempt("list repo data", lambda: os.listdir(data))
attempt("write private tmp", lambda: open("/tmp/mine.txt", "w").write("x"))
with open("/pfs/out/tried.json", "w") as out:
    json.dump(tried, out)
"""


async def test_the_command_cannot_write_outside_its_output_nor_read_staged_data(
    repo: RepoClient, repo_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    job = await Job.open(repo, repo_url)
    host_file = tmp_path / "escaped-to-host.txt"
    repo_data = tmp_path_factory.getbasetemp()  # the repo service's data lives beneath
    argv = [PY, "-c", ESCAPE, str(host_file), str(tmp_path / "scratch"), str(repo_data)]
    await job.write_shard(
        [DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))], argv
    )

    code, stderr = await job.run_worker(tmp_path, **SANDBOXED)

    assert code == 0, (stderr, await job.read(log_path(job.job, "d1")))
    tried = json.loads(await job.output("/tried.json"))
    assert tried == {
        "write input": "OSError",
        "write code dir": "OSError",
        "write host tmp": "FileNotFoundError",  # the host's /tmp is not there at all
        "list scratch": "FileNotFoundError",
        "list repo data": "FileNotFoundError",
        "write private tmp": "done",
    }
    assert not host_file.exists()
    assert not (Path.cwd() / "escaped.txt").exists()


SECRET = """
import os
with open("/pfs/out/seen.txt", "w") as out:
    out.write(os.environ["TOKEN"] + "|" + open("/etc/creds/user").read())
"""


async def test_secrets_come_from_the_secrets_directory(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "creds").mkdir(parents=True)
    (secrets / "creds" / "token").write_text("s3cr3t\n")
    (secrets / "creds" / "user").write_text("ada")
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    job = await Job.open(repo, repo_url)
    datum = DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))
    uses = (
        SecretSpec(name="creds", key="token", env_var="TOKEN"),
        SecretSpec(name="creds", mount_path="/etc/creds"),
    )
    await job.write_shard([datum], [PY, "-c", SECRET], secrets=uses)

    code, stderr = await job.run_worker(tmp_path, TUSK_WORKER_SECRETS_DIR=str(secrets), **SANDBOXED)

    assert code == 0, (stderr, await job.read(log_path(job.job, "d1")))
    assert await job.output("/seen.txt") == b"s3cr3t|ada"


async def test_a_missing_secret_fails_the_datum_naming_it(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    job = await Job.open(repo, repo_url)
    datum = DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))
    await job.write_shard(
        [datum], [PY, "-c", "pass"], secrets=(SecretSpec(name="nope", key="k", env_var="K"),)
    )

    code, _ = await job.run_worker(
        tmp_path, TUSK_WORKER_SECRETS_DIR=str(tmp_path / "none"), **SANDBOXED
    )

    assert code == 1
    log = (await job.read(log_path(job.job, "d1"))).decode()
    assert "transform.secrets[0]: secret 'nope' not found" in log
    unprovided = await Job.open(repo, repo_url)
    await unprovided.write_shard(
        [datum], [PY, "-c", "pass"], secrets=(SecretSpec(name="nope", key="k", env_var="K"),)
    )
    code, _ = await unprovided.run_worker(tmp_path, **SANDBOXED)
    assert code == 1
    log = (await unprovided.read(log_path(unprovided.job, "d1"))).decode()
    assert "secret 'nope' was not provided; set TUSK_WORKER_SECRETS_DIR" in log


async def test_accepted_return_codes_and_err_cmd_recovery(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    job = await Job.open(repo, repo_url)
    accepted = DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))
    await job.write_shard(
        [accepted],
        [PY, "-c", "open('/pfs/out/x', 'w').write('x'); raise SystemExit(3)"],
        accept_return_code=(3,),
    )
    code, stderr = await job.run_worker(tmp_path, **SANDBOXED)
    assert code == 0, stderr
    assert await job.output("/x") == b"x"

    recovering = await Job.open(repo, repo_url)
    await recovering.write_shard(
        [accepted],
        [PY, "-c", "raise SystemExit(1)"],
        err_cmd=(PY, "-c", "import os; print('recovering', os.environ['PACH_DATUM_ID'])"),
    )
    code, stderr = await recovering.run_worker(tmp_path, **SANDBOXED)
    assert code == 0, stderr
    (result,) = [
        json.loads(line) for b in (await recovering.batches()).values() for line in b.splitlines()
    ]
    assert result["state"] == "recovered"
    log = (await recovering.read(log_path(recovering.job, "d1"))).decode()
    assert "recovering d1" in log


async def test_without_bubblewrap(repo: RepoClient, repo_url: str, tmp_path: Path) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    datum = DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))
    script = (
        "import os; open(os.environ['img']).read(); "
        "open(os.environ['TUSK_PFS_ROOT'] + '/out/ok', 'w')"
    )
    no_bwrap = {"PATH": str(Path(PY).parent) + os.pathsep + str(tmp_path / "empty")}

    required = await Job.open(repo, repo_url)
    await required.write_shard([datum], [PY, "-c", script])
    code, stderr = await required.run_worker(tmp_path, TUSK_WORKER_SANDBOX="bwrap", **no_bwrap)
    assert code == 2
    assert "TUSK_WORKER_SANDBOX=bwrap, but bwrap is not installed" in stderr

    fallback = await Job.open(repo, repo_url)
    await fallback.write_shard([datum], [PY, "-c", script])
    code, stderr = await fallback.run_worker(tmp_path, TUSK_WORKER_SANDBOX="auto", **no_bwrap)
    assert code == 0, stderr
    assert "datum commands run without a sandbox" in stderr
    assert await fallback.output("/ok") == b""


async def test_empty_files_are_staged_without_their_contents(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    images, commit = await input_repo(repo, {"/a.txt": b"A large file"})
    job = await Job.open(repo, repo_url)
    part = file_input("img", images, commit, "/a.txt").model_copy(update={"empty_files": True})
    script = "import os; open('/pfs/out/size', 'w').write(str(os.path.getsize('/pfs/img/a.txt')))"
    await job.write_shard([DatumSpec(id="d1", inputs=(part,))], [PY, "-c", script])

    code, stderr = await job.run_worker(tmp_path, **SANDBOXED)

    assert code == 0, stderr
    assert await job.output("/size") == b"0"


async def test_an_image_root_shows_its_files_at_slash(
    repo: RepoClient, repo_url: str, tmp_path: Path
) -> None:
    """A spec that runs ``python3 /edges.py`` finds the script where its image's Dockerfile
    would have copied it."""
    image = tmp_path / "image"
    image.mkdir()
    (image / "hello.py").write_text(
        "import os\nopen('/pfs/out/hello.txt', 'w').write(open('/pfs/img/a.txt').read())\n"
    )
    images, commit = await input_repo(repo, {"/a.txt": b"A"})
    datum = DatumSpec(id="d1", inputs=(file_input("img", images, commit, "/a.txt"),))
    job = await Job.open(repo, repo_url)
    await job.write_shard([datum], [PY, "/hello.py"])

    code, stderr = await job.run_worker(tmp_path, TUSK_WORKER_IMAGE_ROOT=str(image), **SANDBOXED)

    assert code == 0, (stderr, await job.read(log_path(job.job, "d1")))
    assert await job.output("/hello.txt") == b"A"

    # An entry that would hide the sandbox's own /etc is refused, naming it.
    (image / "etc").mkdir()
    clashing = await Job.open(repo, repo_url)
    await clashing.write_shard([datum], [PY, "/hello.py"])
    code, stderr = await clashing.run_worker(
        tmp_path, TUSK_WORKER_IMAGE_ROOT=str(image), **SANDBOXED
    )
    assert code == 2
    assert "holds etc, which would hide the sandbox's own directories" in stderr

    # Without the sandbox nothing can be shown at /: the worker says so.
    (image / "etc").rmdir()
    unwrapped = await Job.open(repo, repo_url)
    await unwrapped.write_shard([datum], [PY, "-c", "pass"])
    code, stderr = await unwrapped.run_worker(
        tmp_path, TUSK_WORKER_IMAGE_ROOT=str(image), TUSK_WORKER_SANDBOX="off"
    )
    assert code == 0, stderr
    assert "TUSK_WORKER_IMAGE_ROOT is set, but without the sandbox" in stderr
