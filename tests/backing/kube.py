"""A throw-away Kubernetes control plane: a real kube-apiserver on a real etcd (stdlib only).

Both binaries are built from the Go module proxy by `tests/backing/kube/build.sh` (a wrapper Go
module that pins k8s.io/kubernetes and replaces its staging modules with their published twins)
and cached under `${TUSK_CACHE_DIR:-~/.cache/tusk}/kube/<version>/bin/`. Set
`TUSK_KUBE_BIN_DIR` to a directory holding `kube-apiserver` and `etcd` to skip the build.

Started the way controller-runtime's envtest does it: etcd on loopback with `--unsafe-no-fsync`,
then kube-apiserver with a self-signed serving cert, RBAC, and a static token file. There is no
controller-manager, scheduler or kubelet, which means:

* pods must set `spec.nodeName` and stay `Pending` until something patches their status
  (`patch_pod_status()` / the `pods/status` subresource);
* deleting a *bound, non-terminal* pod only sets `deletionTimestamp` (the apiserver waits for a
  kubelet): delete with `gracePeriodSeconds: 0`, or move it to Succeeded/Failed first;
* deleted namespaces stay `Terminating` forever and ownerReference cascades never run:
  give each test its own namespace instead of cleaning up;
* the `ServiceAccount` admission plugin is disabled (nothing creates the `default` account),
  so pods are admitted without a service account token volume.

    with KubeApiServer() as kube:
        kube.write_kubeconfig(tmp / "kubeconfig", token=kube.scheduler_token, namespace="tusk")

`python -m tests.backing.kube install|smoke|serve` builds, proves, or runs one until Ctrl-C.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:  # share the error type with the other backing services when they are importable
    from .common import ServiceError as _BaseError
except ImportError:  # pragma: no cover - kube.py also works on its own
    _BaseError = RuntimeError  # type: ignore[misc,assignment]

LOOPBACK = "127.0.0.1"
_HERE = Path(__file__).resolve().parent
BUILD_DIR = _HERE / "kube"
BUILD_SCRIPT = BUILD_DIR / "build.sh"

# The tusk scheduler's identity. Tests bind a namespaced Role to this user (or to the
# ServiceAccount subject `tusk/tusk-scheduler`, which RBAC matches by the same user name).
SCHEDULER_NAMESPACE = "tusk"
SCHEDULER_SERVICE_ACCOUNT = "tusk-scheduler"
SCHEDULER_USER = f"system:serviceaccount:{SCHEDULER_NAMESPACE}:{SCHEDULER_SERVICE_ACCOUNT}"
ADMIN_USER = "tusk-admin"


class KubeError(_BaseError):
    """kube-apiserver or etcd could not be built, started or reached."""


class KubeApiError(KubeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


def _go_mod_version(module: str) -> str:
    for line in (BUILD_DIR / "go.mod").read_text().splitlines():
        fields = line.split()
        if module in fields[:-1]:
            return fields[fields.index(module) + 1]
    raise KubeError(f"{module} is not in {BUILD_DIR / 'go.mod'}")


K8S_VERSION = _go_mod_version("k8s.io/kubernetes")
ETCD_VERSION = _go_mod_version("go.etcd.io/etcd/server/v3")


def _cache_root() -> Path:
    override = os.environ.get("TUSK_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "tusk"


def bin_dir() -> Path:
    """Where the binaries are (or will be after `ensure_installed()`)."""
    override = os.environ.get("TUSK_KUBE_BIN_DIR")
    return Path(override) if override else _cache_root() / "kube" / K8S_VERSION / "bin"


def _installed(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in ("kube-apiserver", "etcd"))


def ensure_installed() -> Path:
    """Build (once, then cached) kube-apiserver and etcd; return the directory holding them.

    A cold build takes a few minutes and ~2 GB of RAM; its output streams to stderr.
    """
    directory = bin_dir()
    if _installed(directory):
        return directory
    if os.environ.get("TUSK_KUBE_BIN_DIR"):
        raise KubeError(f"TUSK_KUBE_BIN_DIR={directory} lacks executable kube-apiserver and etcd")
    if shutil.which("go") is None:
        raise KubeError("building kube-apiserver needs Go (`go` is not on PATH)")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not _installed(directory):
        log = directory.parent / "build.log"
        raise KubeError(
            f"{BUILD_SCRIPT} failed (exit {result.returncode}) after "
            f"{time.monotonic() - started:.0f}s\n--- {log} ---\n{_tail(log)}"
        )
    return directory


# --------------------------------------------------------------------------- small helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_live: set[KubeApiServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        server.stop()


# --------------------------------------------------------------------------- the server


class KubeApiServer:
    """etcd + kube-apiserver on free loopback ports, with their state in one temp dir."""

    def __init__(
        self,
        *,
        authorization_mode: str = "RBAC",
        disable_admission_plugins: Sequence[str] = ("ServiceAccount",),
        extra_args: Sequence[str] = (),
        startup_timeout: float = 120.0,
        keep_run_dir: bool = False,
    ) -> None:
        self.authorization_mode = authorization_mode
        self.disable_admission_plugins = tuple(disable_admission_plugins)
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.keep_run_dir = keep_run_dir
        self.admin_token = uuid.uuid4().hex
        self.scheduler_token = uuid.uuid4().hex
        self.run_dir: Path | None = None
        self.port: int | None = None
        self.etcd_port: int | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- what a client needs

    @property
    def url(self) -> str:
        self._require_started()
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """PEM that verifies `url` (the apiserver's self-signed cert and its CA)."""
        self._require_started()
        assert self.run_dir is not None
        return self.run_dir / "certs" / "apiserver.crt"

    @property
    def etcd_url(self) -> str:
        self._require_started()
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def admin_user(self) -> str:
        return ADMIN_USER  # member of system:masters: bypasses RBAC

    @property
    def scheduler_user(self) -> str:
        return SCHEDULER_USER  # no permissions until a test binds a Role to it

    @property
    def log_paths(self) -> dict[str, Path]:
        self._require_started()
        assert self.run_dir is not None
        return {
            "etcd": self.run_dir / "etcd.log",
            "kube-apiserver": self.run_dir / "kube-apiserver.log",
        }

    @property
    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._etcd, self._apiserver))

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self._ssl

    def kubeconfig(self, token: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """A kubeconfig (as a dict) with the CA embedded; `token` defaults to the admin's."""
        context: dict[str, Any] = {"cluster": "tusk-test", "user": "tusk-test"}
        if namespace:
            context["namespace"] = namespace
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tusk-test",
                    "cluster": {"server": self.url, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "tusk-test", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "tusk-test", "context": context}],
            "current-context": "tusk-test",
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str | None = None, namespace: str | None = None
    ) -> Path:
        """Write a kubeconfig (JSON, which is valid YAML) and return its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.kubeconfig(token, namespace), indent=2) + "\n")
        target.chmod(0o600)
        return target

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> bytes:
        """One raw REST call; returns the body. Raises `KubeApiError` on HTTP errors."""
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            raise KubeApiError(
                method, path, exc.code, exc.read().decode(errors="replace")
            ) from None

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """One JSON REST call; returns the decoded JSON. Raises `KubeApiError` on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        raw = self.request(
            method, path, data, token=token, content_type=content_type, timeout=timeout
        )
        return json.loads(raw) if raw else None

    def create_namespace(self, name: str) -> Any:
        return self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> Any:
        """Merge-patch `status` into a pod (what a kubelet would do), e.g. {"phase": "Running"}."""
        return self.api(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )

    # -- lifecycle

    def start(self) -> KubeApiServer:
        if self.run_dir is not None:
            raise KubeError("KubeApiServer is already started")
        binaries = ensure_installed()
        last: KubeError | None = None
        for _ in range(3):  # a free port can be taken between picking and binding it
            try:
                self._start_once(binaries)
            except KubeError as exc:
                last = exc
                in_use = "address already in use" in str(exc)
                self.stop()
                if not in_use:
                    raise
                continue
            with _live_lock:
                _live.add(self)
            return self
        assert last is not None
        raise last

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and remove the temp dir. Safe to call twice."""
        _terminate(self._apiserver)
        _terminate(self._etcd)
        self._apiserver = self._etcd = None
        self._ssl = None
        if self.run_dir is not None and not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir = None
        self.port = self.etcd_port = None
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals

    def _require_started(self) -> None:
        if self.run_dir is None or self.port is None:
            raise KubeError("KubeApiServer is not started")

    def _start_once(self, binaries: Path) -> None:
        run = Path(tempfile.mkdtemp(prefix="tusk-kube-"))
        self.run_dir = run
        (run / "certs").mkdir()
        self.etcd_port, peer_port, self.port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://{LOOPBACK}:{self.etcd_port}"
        peer_url = f"http://{LOOPBACK}:{peer_port}"

        # One RSA key both signs and verifies service account tokens.
        sa_key, sa_pub = run / "sa.key", run / "sa.pub"
        for argv in (
            ["openssl", "genrsa", "-out", str(sa_key), "2048"],
            ["openssl", "rsa", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KubeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")

        # token,user,uid,"group1,group2"
        tokens = run / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},{ADMIN_USER},tusk-admin-uid,"system:masters"\n'
            f"{self.scheduler_token},{SCHEDULER_USER},tusk-scheduler-uid,"
            f'"system:serviceaccounts,system:serviceaccounts:{SCHEDULER_NAMESPACE}"\n'
        )
        tokens.chmod(0o600)

        self._etcd = self._spawn(
            "etcd",
            [
                str(binaries / "etcd"),
                "--name=default",
                f"--data-dir={run / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        deadline = time.monotonic() + self.startup_timeout
        self._wait(deadline, "etcd /health", lambda: self._etcd_healthy(etcd_url))

        args = [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={LOOPBACK}",
            # Without it the apiserver looks for a default-route interface and fails offline.
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.port}",
            f"--cert-dir={run / 'certs'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            f"--authorization-mode={self.authorization_mode}",
            f"--token-auth-file={tokens}",
            "--allow-privileged=true",
            # The `kubernetes` Service's endpoints cannot be a loopback address: without this
            # the apiserver logs a sync error every 10s. Nothing here needs that Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        if self.disable_admission_plugins:
            args.append(f"--disable-admission-plugins={','.join(self.disable_admission_plugins)}")
        self._apiserver = self._spawn("kube-apiserver", [*args, *self.extra_args])
        self._wait(deadline, "kube-apiserver /readyz", self._apiserver_ready)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        assert self.run_dir is not None
        log = (self.run_dir / f"{name}.log").open("ab")
        try:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
            )
        except OSError as exc:
            raise KubeError(f"could not run {argv[0]}: {exc}") from exc
        finally:
            log.close()

    @staticmethod
    def _etcd_healthy(etcd_url: str) -> bool:
        try:
            with urllib.request.urlopen(etcd_url + "/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        if not self.ca_file.exists():
            return False
        try:
            self._ssl = None  # the cert file may have been half-written on the last try
            return self.request("GET", "/readyz", accept="text/plain", timeout=5) == b"ok"
        except (KubeApiError, OSError, ssl.SSLError):
            return False

    def _wait(self, deadline: float, what: str, ready: Any) -> None:
        while True:
            for name, proc in (("etcd", self._etcd), ("kube-apiserver", self._apiserver)):
                if proc is not None and proc.poll() is not None:
                    raise KubeError(
                        f"{name} exited with {proc.returncode} while waiting for "
                        f"{what}\n{self._describe()}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise KubeError(
                    f"timed out after {self.startup_timeout:.0f}s waiting for {what}"
                    f"\n{self._describe()}"
                )
            time.sleep(0.25)

    def _describe(self) -> str:
        if self.run_dir is None:
            return ""
        return "\n".join(
            f"--- {self.run_dir / name}.log (tail) ---\n{_tail(self.run_dir / f'{name}.log')}"
            for name in ("etcd", "kube-apiserver")
        )


# --------------------------------------------------------------------------- command line


def _expect_status(status: int, kube: KubeApiServer, method: str, path: str, **kw: Any) -> None:
    try:
        kube.api(method, path, **kw)
    except KubeApiError as exc:
        if exc.status != status:
            raise
        return
    raise AssertionError(f"{method} {path} succeeded, expected HTTP {status}")


def _smoke() -> None:
    started = time.monotonic()
    ensure_installed()
    with KubeApiServer() as kube:
        print(
            f"kube-apiserver {K8S_VERSION} + etcd {ETCD_VERSION} ready at {kube.url} "
            f"in {time.monotonic() - started:.1f}s"
        )
        version = kube.api("GET", "/version")
        assert version["gitVersion"] == K8S_VERSION, version
        ns = f"smoke-{uuid.uuid4().hex[:8]}"
        kube.create_namespace(ns)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hello", "namespace": ns},
            "spec": {
                "nodeName": "fake-node",
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
            },
        }
        created = kube.api("POST", f"/api/v1/namespaces/{ns}/pods", pod)
        print(f"created pod {ns}/hello: phase={created['status'].get('phase')}")
        kube.patch_pod_status(ns, "hello", {"phase": "Running"})
        kube.patch_pod_status(
            ns,
            "hello",
            {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            },
        )
        got = kube.api("GET", f"/api/v1/namespaces/{ns}/pods/hello")
        phase = got["status"]["phase"]
        code = got["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
        assert (phase, code) == ("Succeeded", 0), got["status"]
        print(f"pod status read back: phase={phase} exitCode={code}")

        # The scheduler identity has no rights until a Role is bound to it.
        _expect_status(
            403, kube, "GET", f"/api/v1/namespaces/{ns}/pods", token=kube.scheduler_token
        )
        kube.api(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            {
                "metadata": {"name": "pods"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "pods/status"],
                        "verbs": ["get", "list", "watch", "create", "delete", "patch"],
                    }
                ],
            },
        )
        kube.api(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "metadata": {"name": "pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pods",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": SCHEDULER_SERVICE_ACCOUNT,
                        "namespace": SCHEDULER_NAMESPACE,
                    }
                ],
            },
        )
        # RBAC matches the ServiceAccount subject tusk/tusk-scheduler by user name.
        listed = kube.api("GET", f"/api/v1/namespaces/{ns}/pods", token=kube.scheduler_token)
        assert [p["metadata"]["name"] for p in listed["items"]] == ["hello"], listed
        print("scheduler token: 403 before the RoleBinding, can list pods after it")

        # A terminal pod is deleted at once, even with no kubelet to confirm it.
        kube.api("DELETE", f"/api/v1/namespaces/{ns}/pods/hello", token=kube.scheduler_token)
        _expect_status(404, kube, "GET", f"/api/v1/namespaces/{ns}/pods/hello")

        assert kube.run_dir is not None
        kubeconfig = kube.write_kubeconfig(
            kube.run_dir / "kubeconfig", token=kube.scheduler_token, namespace=ns
        )
        print(f"kubeconfig written to {kubeconfig} ({kubeconfig.stat().st_size} bytes)")
    print(f"kube smoke OK in {time.monotonic() - started:.1f}s")


def _serve() -> None:
    with KubeApiServer(keep_run_dir=True) as kube:
        assert kube.run_dir is not None
        path = kube.write_kubeconfig(kube.run_dir / "kubeconfig")
        print(
            f"{kube.url}\nKUBECONFIG={path}\nscheduler token: {kube.scheduler_token}\n"
            "Ctrl-C to stop",
            flush=True,
        )
        try:
            while kube.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else "smoke"
    if command == "install":
        print(ensure_installed())
    elif command == "smoke":
        _smoke()
    elif command == "serve":
        _serve()
    else:
        print(
            f"usage: python -m tests.backing.kube install|smoke|serve (got {command!r})",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
