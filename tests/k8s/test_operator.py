"""The FingerprintDB operator against a real API server (tests/k8s/testbed.py: etcd, kube-apiserver,
controller-manager, scheduler and kwok fake nodes).

The operator runs as a subprocess: `citywok operator`.
Containers never run on kwok nodes, so each test plays the fetcher sidecar: it patches the pod
annotations `citywok.io/served-version` / `citywok.io/fetch-error` the sidecar would write.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import support
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "fingerprintdb.yaml"
SERVED = "citywok.io/served-version"
ERROR = "citywok.io/fetch-error"

pytestmark = pytest.mark.k8s


def citywok_operator_command() -> list[str]:
    """`citywok operator` from this interpreter's environment (its module form where none is installed)."""
    script = shutil.which("citywok", path=str(Path(sys.executable).parent))
    return [script, "operator"] if script else [sys.executable, "-m", "citywok.operator"]


class Operator:
    """`python -m citywok.operator` as a subprocess, restartable, with its log kept for failures."""

    def __init__(self, k8s: Any, log: Path, args: tuple[str, ...] = ("--standalone",)) -> None:
        self.k8s = k8s
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness = free_port()
        self.metrics = free_port()

    def start(self) -> None:
        self.liveness, self.metrics = free_port(), free_port()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*citywok_operator_command(), "--kubeconfig", str(self.k8s.kubeconfig),
                 "--resync", "3", "--log-format", "plain", "--image", "citywok:test",
                 "--liveness", f"http://127.0.0.1:{self.liveness}/healthz",
                 "--metrics-port", str(self.metrics), *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=self.k8s.env, start_new_session=True)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.liveness}/healthz"), 60, "operator liveness", self)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(check: Callable[[], Any], timeout: float, what: str, op: Operator | None = None) -> Any:
    """:func:`tests.support.wait_for`, with the operator's log tail in the failure when ``op`` is given."""
    detail = (lambda: f"--- operator log ---\n{op.tail()}") if op else None
    return support.wait_for(check, timeout, what, interval=0.3, detail=detail)


@pytest.fixture(scope="module")
def operator(k8s: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    k8s.kubectl("apply", "--server-side", "-f", str(CRD))
    k8s.kubectl("wait", "--for=condition=Established", "crd/fingerprintdbs.citywok.io", "--timeout=60s")
    op = Operator(k8s, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


class Cluster:
    """kubectl helpers bound to one namespace per test."""

    def __init__(self, k8s: Any, op: Operator, ns: str) -> None:
        self.k8s, self.op, self.ns = k8s, op, ns

    def kubectl(self, *args: str, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        return self.k8s.kubectl("-n", self.ns, *args, input=input, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        r = self.kubectl("get", kind, name, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def apply(self, obj: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=check)

    def fdb(self, name: str) -> dict[str, Any]:
        obj = self.get("fingerprintdb", name)
        assert obj is not None, f"fingerprintdb {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.fdb(name).get("status") or {}

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.kubectl("patch", "fingerprintdb", name, "--type=merge", "-p", json.dumps({"spec": spec}))

    def pods(self, name: str) -> list[dict[str, Any]]:
        out = json.loads(self.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={name}",
                                      "-o", "json").stdout)
        return [p for p in out["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, name: str, n: int, template_version: str | None = None) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(name) if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))]
            if template_version:
                pods = [p for p in pods
                        if p["metadata"].get("annotations", {}).get("citywok.io/version") == template_version]
            return pods if len(pods) == n else None
        return wait_for(ready, 90, f"{n} ready pods of {name}", self.op)

    def report(self, pod: str, served: str | None = None, error: str | None = None) -> None:
        """What the fetcher sidecar of `pod` would write on its own Pod."""
        args = [f"{SERVED}={served}" if served else f"{SERVED}-",
                f"{ERROR}={error}" if error else f"{ERROR}-"]
        self.kubectl("annotate", "pod", pod, "--overwrite", *args)

    def serve(self, name: str, version: str, n: int, template_version: str | None = None) -> list[str]:
        pods = self.ready_pods(name, n, template_version)
        for p in pods:
            self.report(p["metadata"]["name"], served=version)
        return [p["metadata"]["name"] for p in pods]

    def wait_status(self, name: str, what: str, check: Callable[[dict[str, Any]], bool],
                    timeout: float = 60) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            st = self.status(name)
            return st if check(st) else None
        return wait_for(ok, timeout, f"{name} status: {what} (status now {self.status(name)})", self.op)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = json.loads(self.kubectl("get", "events", "--field-selector",
                                      f"involvedObject.name={name},involvedObject.kind=FingerprintDB",
                                      "-o", "json").stdout)
        return out["items"]

    def wait_event(self, name: str, reason: str) -> dict[str, Any]:
        return wait_for(lambda: next((e for e in self.events(name) if e["reason"] == reason), None),
                        30, f"event {reason} on {name}", self.op)


@pytest.fixture
def cluster(k8s: Any, operator: Operator) -> Iterator[Cluster]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k8s.kubectl("create", "namespace", ns)
    c = Cluster(k8s, operator, ns)
    yield c
    k8s.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def fdb(name: str, version: str = "v1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "citywok.io/v1alpha1", "kind": "FingerprintDB", "metadata": {"name": name},
            "spec": {"version": version, "replicas": replicas,
                     "source": {"bucket": "citywok-test", "endpoint": "http://s3.example:9000",
                                "credentialsSecret": {"name": "bucket-keys"}},
                     **spec}}


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), {})


def available(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda st: (st.get("phase") == "Available" and st.get("currentVersion") == version
                       and condition(st, "Available").get("status") == "True")


def serving_v1(c: Cluster, name: str = "db", replicas: int = 2, **spec: Any) -> list[str]:
    """A FingerprintDB whose pods all serve v1 (the sidecars reported it)."""
    c.apply(fdb(name, "v1", replicas, **spec))
    restart = spec.get("rollout", {}).get("strategy") == "Restart"
    pods = c.serve(name, "v1", replicas, "v1" if restart else None)
    c.wait_status(name, "Available v1", available("v1"))
    return pods


# ------------------------------------------------------------------------------------------------


def test_crd_installed_with_short_name_and_columns(cluster: Cluster) -> None:
    crd = json.loads(cluster.k8s.kubectl("get", "crd", "fingerprintdbs.citywok.io", "-o", "json").stdout)
    assert crd["spec"]["names"]["shortNames"] == ["fpdb"]
    cluster.apply(fdb("cols"))
    cluster.serve("cols", "v1", 2)
    cluster.wait_status("cols", "Available v1", available("v1"))
    table = cluster.kubectl("get", "fpdb").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "VERSION", "SERVING", "READY", "PHASE"]
    assert table[1].split()[:5] == ["cols", "v1", "v1", "2", "Available"]


@pytest.mark.parametrize(("spec", "field"), [
    ({"version": "../../etc"}, "spec.version"),
    ({"version": "current"}, "spec.version"),
    ({"replicas": -1}, "spec.replicas"),
    ({"rollout": {"strategy": "BlueGreen"}}, "spec.rollout.strategy"),
    ({"rollout": {"progressDeadlineSeconds": 1}}, "spec.rollout.progressDeadlineSeconds"),
    ({"seasons": [1, 2], "maxSeasons": 3}, "either seasons or maxSeasons"),
    ({"source": {"bucket": "UPPER_case"}}, "spec.source.bucket"),
    ({"storage": {"type": "HostPath"}}, "spec.storage.type"),
])
def test_schema_refuses_bad_specs(cluster: Cluster, spec: dict[str, Any], field: str) -> None:
    obj = fdb("bad")
    obj["spec"].update(spec)
    r = cluster.apply(obj, check=False)
    assert r.returncode != 0
    assert field in r.stderr, r.stderr
    assert cluster.get("fingerprintdb", "bad") is None


def test_children_are_created_owned_and_carry_no_credentials(cluster: Cluster) -> None:
    cluster.apply(fdb("db", storage={"type": "EmptyDir", "size": "1Gi"}))
    owner = cluster.fdb("db")
    uid = owner["metadata"]["uid"]
    names = {"deployment": "db", "service": "db", "poddisruptionbudget": "db", "configmap": "db-desired",
             "serviceaccount": "db-fetcher", "role": "db-fetcher", "rolebinding": "db-fetcher"}
    for kind, name in names.items():
        obj = wait_for(lambda kind=kind, name=name: cluster.get(kind, name), 30, f"{kind}/{name}", cluster.op)
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("FingerprintDB", "db", uid, True)
    assert cluster.get("configmap", "db-desired")["data"] == {"version": "v1"}
    dep = cluster.get("deployment", "db")
    pod_spec = dep["spec"]["template"]["spec"]
    fetcher = next(c for c in pod_spec["containers"] if c["name"] == "fetcher")
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                  for e in fetcher["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secret_env == {"AWS_ACCESS_KEY_ID": "bucket-keys", "AWS_SECRET_ACCESS_KEY": "bucket-keys"}
    assert pod_spec["serviceAccountName"] == "db-fetcher"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The sidecar's service account may read and annotate pods, and nothing else.
    can = cluster.kubectl("auth", "can-i", "patch", "pods",
                          f"--as=system:serviceaccount:{cluster.ns}:db-fetcher", check=False)
    assert can.stdout.strip() == "yes"
    cannot = cluster.kubectl("auth", "can-i", "get", "secrets",
                             f"--as=system:serviceaccount:{cluster.ns}:db-fetcher", check=False)
    assert cannot.stdout.strip() == "no"

    st = cluster.wait_status("db", "progressing before any pod serves",
                             lambda st: st.get("phase") == "Progressing" and st.get("targetVersion") == "v1")
    assert "currentVersion" not in st
    cluster.serve("db", "v1", 2)
    st = cluster.wait_status("db", "Available v1", available("v1"))
    assert st["lastGoodVersion"] == "v1" and st["servedVersions"] == {"v1": 2}
    assert st["readyReplicas"] == 2 and st["updatedReplicas"] == 2
    assert st["observedGeneration"] == cluster.fdb("db")["metadata"]["generation"]
    assert {c["type"] for c in st["conditions"]} == {"Available", "Progressing", "Degraded"}
    assert all(c.get("lastTransitionTime") and c.get("reason") for c in st["conditions"])
    assert "bucket-keys" not in json.dumps(st)
    cluster.wait_event("db", "RolloutComplete")


def test_inplace_version_change_updates_configmap_not_pods(cluster: Cluster) -> None:
    pods = serving_v1(cluster, replicas=3)
    dep_before = cluster.get("deployment", "db")
    cluster.patch_spec("db", version="v2")
    wait_for(lambda: cluster.get("configmap", "db-desired")["data"]["version"] == "v2", 30,
             "ConfigMap at v2", cluster.op)
    st = cluster.wait_status("db", "progressing to v2", lambda st: st.get("phase") == "Progressing")
    assert st["targetVersion"] == "v2" and st["currentVersion"] == "v1"
    assert condition(st, "Progressing")["status"] == "True"

    cluster.report(pods[0], served="v2")
    st = cluster.wait_status("db", "one pod on v2", lambda st: st.get("servedVersions") == {"v1": 2, "v2": 1})
    assert st["currentVersion"] == "v1", "not current until every ready pod serves it"
    assert st["updatedReplicas"] == 1
    for p in pods[1:]:
        cluster.report(p, served="v2")
    st = cluster.wait_status("db", "Available v2", available("v2"))
    assert st["lastGoodVersion"] == "v2" and st["servedVersions"] == {"v2": 3}

    dep_after = cluster.get("deployment", "db")
    assert dep_after["spec"]["template"] == dep_before["spec"]["template"]
    assert dep_after["metadata"]["generation"] == dep_before["metadata"]["generation"], "no pod restarts"
    assert sorted(p["metadata"]["name"] for p in cluster.pods("db")) == sorted(pods)
    cluster.wait_event("db", "RolloutStarted")


def test_restart_strategy_rolls_pods_with_the_version(cluster: Cluster) -> None:
    old = serving_v1(cluster, replicas=2, rollout={"strategy": "Restart"})
    cluster.patch_spec("db", version="v2")
    dep = wait_for(lambda: (d := cluster.get("deployment", "db"))["spec"]["template"]["metadata"]
                   ["annotations"].get("citywok.io/version") == "v2" and d, 30, "template at v2", cluster.op)
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"] == ["fetch", "--once", "--version", "v2"]
    new = cluster.serve("db", "v2", 2, template_version="v2")
    assert not set(new) & set(old)
    st = cluster.wait_status("db", "Available v2", available("v2"))
    assert st["servedVersions"] == {"v2": 2}
    wait_for(lambda: {p["metadata"]["name"] for p in cluster.pods("db")} == set(new), 60,
             "old pods gone", cluster.op)


def test_bad_version_is_degraded_then_rolled_back(cluster: Cluster) -> None:
    pods = serving_v1(cluster)
    cluster.patch_spec("db", version="v3")
    wait_for(lambda: cluster.get("configmap", "db-desired")["data"]["version"] == "v3", 30, "ConfigMap v3")
    cluster.report(pods[0], served="v1", error="season_02.lmdb.tar.zst: sha256 mismatch")
    st = cluster.wait_status("db", "rolled back", lambda st: st.get("failedVersion") == "v3"
                             and st.get("targetVersion") == "v1")
    assert st["phase"] == "Degraded"
    degraded = condition(st, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    assert "sha256 mismatch" in degraded["message"]
    assert condition(st, "Available")["status"] == "True", "v1 kept serving"
    assert st["currentVersion"] == "v1" and st["lastGoodVersion"] == "v1"
    assert cluster.get("configmap", "db-desired")["data"]["version"] == "v1"
    assert cluster.fdb("db")["spec"]["version"] == "v3", "the spec stays as the user wrote it"
    assert cluster.wait_event("db", "RolledBack")["type"] == "Warning"
    cluster.wait_event("db", "FetchFailed")

    # The sidecar follows the ConfigMap back to v1 and clears its error; it stays rolled back.
    cluster.report(pods[0], served="v1")
    time.sleep(4)  # at least one resync
    st = cluster.status("db")
    assert st["phase"] == "Degraded" and st["targetVersion"] == "v1"
    # A new version starts a fresh rollout.
    cluster.patch_spec("db", version="v4")
    st = cluster.wait_status("db", "progressing to v4", lambda st: st.get("targetVersion") == "v4")
    assert "failedVersion" not in st
    for p in pods:
        cluster.report(p, served="v4")
    cluster.wait_status("db", "Available v4", available("v4"))


def test_progress_deadline_without_rollback_keeps_old_version_serving(cluster: Cluster) -> None:
    serving_v1(cluster, rollout={"progressDeadlineSeconds": 10, "autoRollback": False})
    cluster.patch_spec("db", version="v5")
    st = cluster.wait_status("db", "deadline exceeded",
                             lambda st: condition(st, "Degraded").get("reason") == "ProgressDeadlineExceeded",
                             timeout=40)
    assert st["phase"] == "Degraded" and st["currentVersion"] == "v1" and st["targetVersion"] == "v5"
    assert "autoRollback is off" in condition(st, "Degraded")["message"]
    assert cluster.get("configmap", "db-desired")["data"]["version"] == "v5"
    cluster.wait_event("db", "ProgressDeadlineExceeded")


def test_operator_restart_mid_rollout_resumes_and_changes_nothing_that_is_right(
        cluster: Cluster, operator: Operator) -> None:
    pods = serving_v1(cluster)
    cluster.patch_spec("db", version="v2")
    st = cluster.wait_status("db", "progressing", lambda st: st.get("targetVersion") == "v2")
    started = st["rolloutStartTime"]
    operator.stop()
    for p in pods:
        cluster.report(p, served="v2")
    time.sleep(1)
    assert cluster.status("db")["currentVersion"] == "v1", "nobody reconciles while the operator is down"
    operator.start()
    st = cluster.wait_status("db", "Available v2 after restart", available("v2"))
    assert st["rolloutStartTime"] == started, "resumed the same rollout"

    children = {"deployment": "db", "configmap": "db-desired", "service": "db", "role": "db-fetcher"}
    before = {k: cluster.get(k, n)["metadata"]["resourceVersion"] for k, n in children.items()}
    before_fdb = cluster.fdb("db")["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    time.sleep(5)  # a full resync after start
    after = {k: cluster.get(k, n)["metadata"]["resourceVersion"] for k, n in children.items()}
    assert after == before
    assert cluster.fdb("db")["metadata"]["resourceVersion"] == before_fdb


def test_deleted_or_edited_children_are_restored(cluster: Cluster) -> None:
    serving_v1(cluster)
    cluster.kubectl("delete", "configmap", "db-desired")
    cluster.kubectl("delete", "service", "db")
    wait_for(lambda: (cluster.get("configmap", "db-desired") or {}).get("data") == {"version": "v1"},
             30, "ConfigMap back", cluster.op)
    wait_for(lambda: cluster.get("service", "db"), 30, "Service back", cluster.op)

    cluster.kubectl("patch", "configmap", "db-desired", "-p", json.dumps({"data": {"version": "hacked"}}))
    wait_for(lambda: cluster.get("configmap", "db-desired")["data"]["version"] == "v1", 30,
             "ConfigMap edit reverted", cluster.op)
    cluster.kubectl("scale", "deployment", "db", "--replicas=5")
    wait_for(lambda: cluster.get("deployment", "db")["spec"]["replicas"] == 2, 30,
             "replicas edit reverted", cluster.op)


def test_spec_the_operator_cannot_act_on_is_reported(cluster: Cluster) -> None:
    name = "a-name-that-is-far-too-long-for-the-children-it-would-get"
    cluster.apply(fdb(name))
    st = cluster.wait_status(name, "InvalidSpec",
                             lambda st: condition(st, "Degraded").get("reason") == "InvalidSpec")
    assert "longer than" in condition(st, "Degraded")["message"]
    assert st["phase"] == "Degraded"
    assert cluster.get("deployment", name) is None
    cluster.wait_event(name, "InvalidSpec")


def test_deleting_the_resource_removes_its_children(cluster: Cluster) -> None:
    serving_v1(cluster)
    cluster.kubectl("delete", "fingerprintdb", "db", "--wait=true", "--timeout=60s")

    def gone() -> bool:
        return all(cluster.get(k, n) is None for k, n in (
            ("deployment", "db"), ("service", "db"), ("configmap", "db-desired"),
            ("poddisruptionbudget", "db"),
            ("serviceaccount", "db-fetcher"), ("role", "db-fetcher"), ("rolebinding", "db-fetcher")))
    wait_for(gone, 90, "children garbage-collected", cluster.op)
    wait_for(lambda: not cluster.pods("db"), 90, "pods gone", cluster.op)


def test_metrics_and_liveness(operator: Operator, cluster: Cluster) -> None:
    serving_v1(cluster)
    assert http_ok(f"http://127.0.0.1:{operator.liveness}/healthz")
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    me = f'name="db",namespace="{cluster.ns}"'  # prometheus_client sorts label names
    assert f'citywok_operator_reconciles_total{{{me},result="ok"}}' in text, "per-resource labels"
    assert f'citywok_operator_rollout_duration_seconds_count{{{me},outcome="complete"}} 1.0' in text
    assert f"citywok_fingerprintdb_ready_replicas{{{me}}} 2.0" in text
    assert f"citywok_fingerprintdb_progressing{{{me}}} 0.0" in text
    assert "citywok_build_info{" in text and "process_resident_memory_bytes " in text
    assert "_created" not in text

    # Level-based but quiet: writing the status wakes the daemon once and then nothing changes, so in
    # a steady state reconciles come from the resync timer (3 s here), not from a feedback loop.
    first = reconciles(operator, cluster.ns)
    time.sleep(6)
    assert reconciles(operator, cluster.ns) - first < 30

    # A deleted FingerprintDB takes its series with it.
    cluster.kubectl("delete", "fingerprintdb", "db", "--wait=true", "--timeout=60s")

    def forgotten() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics}/metrics", timeout=5) as r:
            return me not in r.read().decode()
    wait_for(forgotten, 30, "the deleted resource's series dropped", operator)


def reconciles(op: Operator, namespace: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics}/metrics", timeout=5) as r:
        line = next(ln for ln in r.read().decode().splitlines()
                    if ln.startswith(f'citywok_operator_reconciles_total{{name="db",namespace="{namespace}",'
                                     'result="ok"}'))
    return float(line.split()[-1])


def test_restart_strategy_bad_version_rolls_the_template_back(cluster: Cluster) -> None:
    serving_v1(cluster, replicas=1, rollout={"strategy": "Restart"})
    cluster.patch_spec("db", version="v6")
    (new,) = cluster.ready_pods("db", 1, template_version="v6")
    cluster.report(new["metadata"]["name"], error="manifest.json: no such key")
    st = cluster.wait_status("db", "rolled back", lambda st: st.get("failedVersion") == "v6")
    assert condition(st, "Degraded")["reason"] == "RolledBack"
    wait_for(lambda: cluster.get("deployment", "db")["spec"]["template"]["metadata"]["annotations"]
             ["citywok.io/version"] == "v1", 30, "template back at v1", cluster.op)


def test_the_fetchers_own_reporter_drives_rollout_and_rollback(cluster: Cluster) -> None:
    """The fetcher's PodAnnotations reporter, bound to each pod's identity, is what the operator reads."""
    from citywok.fetcher.report import PodAnnotations, Status

    def reporter(pod: str) -> PodAnnotations:
        r = PodAnnotations.from_env({"POD_NAME": pod, "POD_NAMESPACE": cluster.ns,
                                     "KUBECONFIG": str(cluster.k8s.kubeconfig)})
        assert r is not None
        return r

    pods = serving_v1(cluster)
    sidecars = {p: reporter(p) for p in pods}
    cluster.patch_spec("db", version="v2")
    for r in sidecars.values():
        r.report(Status(served="v2", desired="v2"))
    cluster.wait_status("db", "Available v2", available("v2"))

    cluster.patch_spec("db", version="v3")
    cluster.wait_status("db", "progressing to v3", lambda st: st.get("targetVersion") == "v3")
    sidecars[pods[1]].report(Status(served="v2", desired="v3", error="season_01.lmdb.tar.zst: sha256 mismatch"))
    st = cluster.wait_status("db", "rolled back to v2", lambda st: st.get("failedVersion") == "v3")
    assert st["targetVersion"] == "v2" and st["currentVersion"] == "v2"
    assert "sha256 mismatch" in condition(st, "Degraded")["message"]
