"""Operator and the real fetcher together, without a container runtime.

kwok pods never run their containers, so this test runs the pod's fetcher containers itself, exactly as
the operator wrote them in the Deployment (command, args, env from values, the Secret and the downward
API), with the two volumes mapped to local folders and the pod's own service-account token: the init
container `citywok fetch --once`, then the sidecar `citywok fetch --watch`. A thread plays the kubelet
and projects the ConfigMap into the version file. Shards come from a real S3-compatible server (moto).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.store import RetryPolicy, Store
from moto.server import ThreadedMotoServer

from citywok import layout
from citywok.settings import Settings
from tests.fetcher.fetcher_testkit import make_season
from tests.k8s.test_operator import CRD, Cluster, Operator, available, condition, fdb, wait_for
from tests.support import free_port

pytestmark = pytest.mark.k8s

ACCESS_KEY = "AKIACITYWOKOPERATOR01"
SECRET_KEY = "citywok-operator-test-secret-0123456789"
FAST = RetryPolicy(sdk_attempts=1, attempts=3, base=0.01, cap=0.05)
# Test-only flags appended to the sidecar's args: poll fast, give up on a bad archive fast.
QUICK = ["--poll", "0.3", "--retries", "2", "--retry-delay", "0.01", "--no-progress"]


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint, name = f"http://127.0.0.1:{port}", "citywok-operator-e2e"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                 aws_secret_access_key=SECRET_KEY).create_bucket(Bucket=name)
    try:
        yield endpoint, name
    finally:
        server.stop()


def publish(build: Settings, version: str, seed: int) -> None:
    make_season(layout.version_dir(build.data_dir, version), 1, [seed], seconds=10)
    pack_version(build.data_dir, version, progress=False)
    push_version(Store(build, FAST), archives_dir(build.data_dir, version), version, progress=False)


def corrupt(endpoint: str, bucket: str, version: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    key = f"fingerprints/{version}/season_01.lmdb.tar.zst"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))


def service_account_kubeconfig(k8s: Any, ns: str, sa: str, path: Path) -> Path:
    """A kubeconfig holding the pod's service-account token: the sidecar acts with the pod's rights."""
    token = k8s.kubectl("-n", ns, "create", "token", sa).stdout.strip()
    ca = base64.b64encode(Path(k8s.ca_cert).read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "tb", "cluster": {"server": k8s.server, "certificate-authority-data": ca}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "tb", "user": sa, "namespace": ns}}]}))
    return path


def container_process(container: dict[str, Any], pod: dict[str, Any], secret: dict[str, str],
                      mounts: dict[str, Path], kubeconfig: Path,
                      extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and env a kubelet would give this container, with volume paths remapped."""

    def remap(value: str) -> str:
        for mount, local in mounts.items():
            if value == mount or value.startswith(mount + "/"):
                return str(local) + value[len(mount):]
        return value

    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig)}
    field = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"]}
    for e in container["env"]:
        src = e.get("valueFrom", {})
        if "value" in e:
            env[e["name"]] = remap(e["value"])
        elif "secretKeyRef" in src:
            env[e["name"]] = secret[src["secretKeyRef"]["key"]]
        else:
            env[e["name"]] = field[src["fieldRef"]["fieldPath"]]
    assert container["command"] == ["citywok"]
    argv = [sys.executable, "-m", "citywok.cli", *(remap(a) for a in container["args"]), *extra]
    return argv, env


class Kubelet(threading.Thread):
    """Projects the ConfigMap's `version` key into the mounted file, as the kubelet does."""

    def __init__(self, cluster: Cluster, name: str, folder: Path) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name, self.folder = cluster, name, folder
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            cm = self.cluster.get("configmap", self.name)
            if cm and cm.get("data", {}).get("version"):
                tmp = self.folder / ".version.tmp"
                tmp.write_text(cm["data"]["version"])
                tmp.replace(self.folder / "version")


def test_real_fetcher_sidecar_serves_rolls_and_rolls_back(k8s: Any, tmp_path: Path, bucket: tuple[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, name = bucket
    build = Settings(data_dir=tmp_path / "build", s3_bucket=name, aws_endpoint_url=endpoint,
                     aws_region="us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    publish(build, "v1", 1)
    publish(build, "v2", 2)
    publish(build, "v3", 3)
    corrupt(endpoint, name, "v3")

    k8s.kubectl("apply", "--server-side", "-f", str(CRD))
    k8s.kubectl("wait", "--for=condition=Established", "crd/fingerprintdbs.citywok.io", "--timeout=60s")
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k8s.kubectl("create", "namespace", ns)
    op = Operator(k8s, tmp_path / "operator.log")
    cluster = Cluster(k8s, op, ns)
    secret = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    k8s.kubectl("-n", ns, "create", "secret", "generic", "bucket-keys",
                *(f"--from-literal={k}={v}" for k, v in secret.items()))
    spec = fdb("db", replicas=1)
    spec["spec"]["source"] = {"bucket": name, "endpoint": endpoint, "region": "us-east-1",
                              "credentialsSecret": {"name": "bucket-keys"}}
    procs: list[subprocess.Popen] = []
    kubelet: Kubelet | None = None
    try:
        op.start()
        cluster.apply(spec)
        (pod,) = cluster.ready_pods("db", 1)
        template = cluster.get("deployment", "db")["spec"]["template"]["spec"]
        data, desired = tmp_path / "data", tmp_path / "desired"
        data.mkdir()
        desired.mkdir()
        kubelet = Kubelet(cluster, "db-desired", desired)
        kubelet.start()
        wait_for(lambda: (desired / "version").is_file(), 10, "ConfigMap projected")
        mounts = {"/data": data, "/etc/citywok/desired": desired, "/tmp": tmp_path / "tmp"}
        kubeconfig = service_account_kubeconfig(k8s, ns, template["serviceAccountName"], tmp_path / "sa.kc")

        (init,) = template["initContainers"]
        argv, env = container_process(init, pod, secret, mounts, kubeconfig, ["--no-progress"])
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert layout.current_version(data) == "v1"

        sidecar = next(c for c in template["containers"] if c["name"] == "fetcher")
        # the metrics port the operator chose may be taken on this machine: a free one instead
        argv, env = container_process(sidecar, pod, secret, mounts, kubeconfig,
                                      [*QUICK, "--metrics-port", str(free_port())])
        with open(tmp_path / "sidecar.log", "w") as log:
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))

        st = cluster.wait_status("db", "Available v1, reported by the sidecar", available("v1"))
        assert st["servedVersions"] == {"v1": 1}

        cluster.patch_spec("db", version="v2")
        cluster.wait_status("db", "Available v2", available("v2"))
        assert layout.current_version(data) == "v2"

        cluster.patch_spec("db", version="v3")  # its archive fails its sha256
        st = cluster.wait_status("db", "v3 rolled back", lambda st: st.get("failedVersion") == "v3")
        assert condition(st, "Degraded")["reason"] == "RolledBack"
        assert st["currentVersion"] == "v2" and st["targetVersion"] == "v2"
        assert layout.current_version(data) == "v2", "the old version kept serving"
        wait_for(lambda: not cluster.pods("db")[0]["metadata"]["annotations"].get("citywok.io/fetch-error"),
                 30, "the sidecar clears its error once back on v2", op)
        assert SECRET_KEY not in json.dumps(cluster.fdb("db"))
    except AssertionError as e:
        logs = (tmp_path / "sidecar.log").read_text() if (tmp_path / "sidecar.log").exists() else ""
        raise AssertionError(f"{e}\n--- sidecar log ---\n{logs[-3000:]}") from None
    finally:
        for p in procs:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
            if p.poll() is None:
                p.kill()
        if kubelet:
            kubelet.stop.set()
        op.stop()
        k8s.kubectl("delete", "namespace", ns, "--wait=false", check=False)
