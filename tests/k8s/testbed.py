"""A real Kubernetes control plane for tests: etcd, kube-apiserver, controller-manager, scheduler, kwok.

The binaries come from hack/k8s-testenv.sh (built from the Go module proxy, no Docker). Nodes are
kwok fakes, so Deployments really roll and their pods go Running and Ready without a kubelet or a
container runtime. Everything listens on loopback on free ports and lives in one temp dir; `stop()`
kills each component's whole process group, so nothing outlives the test bed.

Usable from pytest (tests/k8s/conftest.py) and from benchmarks:
`python -m tests.k8s.testbed` builds (or finds) the binaries, starts a test bed, prints how long
start-up took, and stops it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.k8s.pki import CertificateAuthority, KeyPair, service_account_keys
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
TESTENV_SCRIPT = REPO / "hack" / "k8s-testenv.sh"
VERSIONS_FILE = REPO / "hack" / "k8s" / "versions.env"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
KWOK_STAGES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
LOG_TAIL_LINES = 30


class TestBedError(RuntimeError):
    """The test bed could not be built, started or used; the message says which part and why."""

    __test__ = False


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries kubectl's own stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The KEY=value pins of hack/k8s/versions.env (K8S_VERSION, ETCD_VERSION, ...)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


def build_binaries(script: Path = TESTENV_SCRIPT) -> Path:
    """Run hack/k8s-testenv.sh (builds on a cold cache, seconds on a warm one); return its bin dir.

    The script's progress is echoed to our stderr as it comes; a failure raises with its last lines.
    """
    try:
        proc = subprocess.Popen(
            ["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except OSError as exc:
        raise TestBedError(f"cannot run {script}: {exc}") from exc
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        tail.append(line)
    stdout = proc.stdout.read()
    if proc.wait() != 0:
        raise TestBedError(
            f"{script.relative_to(REPO)} failed (exit {proc.returncode}); the Kubernetes test bed "
            f"cannot be built:\n{''.join(tail)}"
        )
    bin_dir = Path(stdout.strip().splitlines()[-1])
    missing = [name for name in (*BINARIES, "helm", "kubeconform") if not (bin_dir / name).is_file()]
    if missing:
        raise TestBedError(f"{script.name} reported {bin_dir} but it lacks {', '.join(missing)}")
    return bin_dir


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL if the Python process dies without running stop().

    Linux sends it when the *thread* that started the child ends, so start a TestBed from a thread
    that outlives it (pytest fixtures run in the main thread).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return "(no log)\n"


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen
    log: Path


class TestBed:
    """One running control plane; `start()` returns once it schedules pods onto Ready fake nodes."""

    __test__ = False  # a pytest-collectable name, but not a test class

    def __init__(
        self,
        bin_dir: Path,
        *,
        nodes: int = 3,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        start_timeout: float = 90.0,
        keep_dir: bool = False,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        missing = [name for name in BINARIES if not os.access(self.bin_dir / name, os.X_OK)]
        if missing:
            raise TestBedError(
                f"{self.bin_dir} lacks {', '.join(missing)}: run hack/k8s-testenv.sh to build the test bed"
            )
        self.stages_dir = self.bin_dir.parent / "kwok-stages"
        if not all((self.stages_dir / stage).is_file() for stage in KWOK_STAGES):
            raise TestBedError(f"{self.stages_dir} lacks kwok's stages: run hack/k8s-testenv.sh")
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.dir: Path | None = None
        self.kubeconfig = Path()
        self.ca_cert = Path()
        self.server = ""
        self.env: dict[str, str] = {}
        self.startup_seconds: float | None = None
        self._components: list[_Component] = []
        self._deadline = 0.0

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> TestBed:
        """Start every component and wait until fake nodes are Ready and controllers run.

        Ports are picked free just before use; if another process grabs one in between, the start
        is retried once on new ports. Any other failure raises with the tail of every log.
        """
        if self._components:
            raise TestBedError("test bed already started")
        began = time.monotonic()
        for attempt in (1, 2):
            self._deadline = time.monotonic() + self.start_timeout
            self.dir = Path(tempfile.mkdtemp(prefix="citywok-k8s-"))
            try:
                self._start_all()
                break
            except BaseException as exc:
                logs = self._log_tails()
                self.stop(keep_dir=True)
                expected = isinstance(exc, TestBedError | subprocess.CalledProcessError | OSError)
                if not expected or (attempt == 1 and "address already in use" in logs):
                    shutil.rmtree(self.dir, ignore_errors=True)
                    if not expected:
                        raise  # e.g. KeyboardInterrupt: nothing to debug, nothing left behind
                    continue
                raise TestBedError(
                    f"test bed failed to start: {exc}\nfiles kept in {self.dir}\n{logs}"
                ) from exc
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, *, keep_dir: bool | None = None) -> None:
        """Stop components in reverse start order (the API server needs etcd to shut down cleanly).

        Each gets SIGTERM to its whole process group, then SIGKILL after 10 s. Idempotent.
        """
        while self._components:
            component = self._components.pop()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(component.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.proc.wait(timeout=10)
            # The leader may be gone while children it started linger in its group: kill the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(component.proc.pid, signal.SIGKILL)
            component.proc.wait()
        keep = self.keep_dir if keep_dir is None else keep_dir
        if self.dir is not None and not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """Process ids of the running components (process-group leaders), for leak checks."""
        return [component.proc.pid for component in self._components]

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the test bed's own kubectl against it (never a kubectl found elsewhere on PATH)."""
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def __enter__(self) -> TestBed:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- start-up -----------------------------------------------------------------------------

    def _start_all(self) -> None:
        assert self.dir is not None
        pki = self._write_pki()
        etcd_port, etcd_peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig = self._write_kubeconfig("admin", pki["ca"], pki["admin"])
        self.ca_cert = self.dir / "pki" / "ca.crt"
        self.env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self._spawn(
            "etcd",
            "--name=testbed",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-cluster=testbed=http://127.0.0.1:{etcd_peer_port}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        self._wait("etcd healthy", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"))
        p = self.dir / "pki"
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={self.dir / 'apiserver'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
        )
        readyz = self._tls_context(pki["ca"])
        self._wait("kube-apiserver /readyz", lambda: _http_ok(f"{self.server}/readyz", readyz))
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self._write_kubeconfig('kube-controller-manager', pki['ca'], pki['kcm'])}",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self._write_kubeconfig('kube-scheduler', pki['ca'], pki['scheduler'])}",
            "--secure-port=0",
            "--leader-elect=false",
        )
        self._spawn(
            "kwok",
            f"--kubeconfig={self._write_kubeconfig('kwok', pki['ca'], pki['kwok'])}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",  # renew node leases: without it nodes go NotReady at ~60 s
            *(f"--config={self.stages_dir / stage}" for stage in KWOK_STAGES),
        )
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(self._fake_nodes()))
        self._wait("fake nodes Ready", self._nodes_ready)
        self._wait(
            "controller-manager to create the default ServiceAccount",
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0
            ),
        )

    def _spawn(self, name: str, *args: str) -> None:
        assert self.dir is not None
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        argv = [str(self.bin_dir / name), *args, *self.extra_args.get(name, [])]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # its own process group, so stop() can kill all it starts
                preexec_fn=_die_with_parent,
            )
        self._components.append(_Component(name, proc, log))

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until true; fail fast when a component exits, or at the start deadline."""
        while True:
            for component in self._components:
                code = component.proc.poll()
                if code is not None:
                    raise TestBedError(f"{component.name} exited with code {code} while waiting for {what}")
            if ready():
                return
            if time.monotonic() > self._deadline:
                raise TestBedError(f"timed out after {self.start_timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def _nodes_ready(self) -> bool:
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        if out.returncode != 0:
            return False
        ready = {
            node["metadata"]["name"]
            for node in json.loads(out.stdout)["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
            )
        }
        return ready >= set(self.node_names)

    def _fake_nodes(self) -> list[dict]:
        return [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
            }
            for name in self.node_names
        ]

    def _write_pki(self) -> dict[str, KeyPair]:
        assert self.dir is not None
        ca = CertificateAuthority()
        pairs = {
            "ca": ca.pair,
            "apiserver": ca.issue(
                "kube-apiserver",
                ips=["127.0.0.1", str(ipaddress.ip_network(SERVICE_CIDR)[1])],
                dns_names=[
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ],
            ),
            "admin": ca.issue("citywok-admin", ["system:masters"]),
            "kcm": ca.issue("system:kube-controller-manager"),
            "scheduler": ca.issue("system:kube-scheduler"),
            "kwok": ca.issue("kwok-controller", ["system:masters"]),
        }
        pki_dir = self.dir / "pki"
        pki_dir.mkdir(mode=0o700)
        for name, pair in pairs.items():
            (pki_dir / f"{name}.crt").write_bytes(pair.cert_pem)
            (pki_dir / f"{name}.key").write_bytes(pair.key_pem)
        sa_private, sa_public = service_account_keys()
        (pki_dir / "sa.key").write_bytes(sa_private)
        (pki_dir / "sa.pub").write_bytes(sa_public)
        return pairs

    def _write_kubeconfig(self, user: str, ca: KeyPair, client: KeyPair) -> Path:
        """A self-contained kubeconfig (certificates inline) for `user` against this API server."""
        assert self.dir is not None

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(ca.cert_pem)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(client.cert_pem),
                        "client-key-data": b64(client.key_pem),
                    },
                }
            ],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
            "current-context": "testbed",
        }
        path = self.dir / f"{user}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _tls_context(self, ca: KeyPair) -> ssl.SSLContext:
        assert self.dir is not None
        context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        context.load_cert_chain(self.dir / "pki" / "admin.crt", self.dir / "pki" / "admin.key")
        return context

    def _log_tails(self) -> str:
        return "".join(
            f"--- last lines of {component.log} ---\n{_tail(component.log)}" for component in self._components
        )


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> None:
    """Build or find the binaries, then start and stop a test bed `--runs` times; print the seconds."""
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.testbed", description=main.__doc__)
    parser.add_argument("--runs", type=int, default=1, help="start/stop cycles; prints the median")
    runs = parser.parse_args(argv).runs
    began = time.monotonic()
    bin_dir = build_binaries()
    print(f"hack/k8s-testenv.sh: {time.monotonic() - began:.1f} s", flush=True)
    starts = []
    for run in range(1, runs + 1):
        with TestBed(bin_dir) as bed:
            version = json.loads(bed.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
            assert bed.startup_seconds is not None
            starts.append(bed.startup_seconds)
            print(f"run {run}: control plane {version} ready at {bed.server} in {bed.startup_seconds:.1f} s")
    print(f"start-up to ready: median {statistics.median(starts):.1f} s over {runs} run(s)")
    print(f"total {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
