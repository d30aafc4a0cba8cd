"""spec.autoscaling against a real API server and the real HPA controller (kube-controller-manager).

The test bed has no metrics-server and no custom-metrics API, so the HPA never gets a metric. Two
things still exercise the real controller: it raises a Deployment below ``minReplicas`` to it without
any metric (raising minReplicas is how these tests make it scale), and with no metric it leaves the
count alone otherwise, so a ``kubectl scale`` (the scale subresource, which the HPA controller itself
writes through) stands in for a metric-driven decision and must survive the operator's reconciles.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.k8s import test_operator as base
from tests.k8s.test_operator import Cluster, available, fdb, serving_v1, wait_for

pytestmark = pytest.mark.k8s
# The operator subprocess (one per module) and a fresh namespace per test, as in test_operator.py.
operator = base.operator
cluster = base.cluster

REQUESTS = {"requests": {"cpu": "100m", "memory": "64Mi"}}
CPU = {"minReplicas": 2, "maxReplicas": 5, "target": {"cpuUtilization": 60}}
RPS = {"minReplicas": 3, "maxReplicas": 6, "target": {"requestsPerSecond": 5}}
ONE_TARGET = 'spec.autoscaling.target" must validate one and only one'  # the CRD's oneOf


def deployment(c: Cluster) -> dict[str, Any]:
    dep = c.get("deployment", "db")
    assert dep is not None, "deployment/db is gone"
    return dep


def replicas_managers(c: Cluster) -> set[str]:
    """Field managers of the Deployment's spec.replicas (kubectl hides managedFields unless asked)."""
    dep = json.loads(c.kubectl("get", "deployment", "db", "-o", "json", "--show-managed-fields").stdout)
    fields = dep["metadata"]["managedFields"]
    assert any(m["manager"] == "citywok-operator" for m in fields), fields
    return {m["manager"] for m in fields if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})}


def released(c: Cluster) -> bool:
    """The operator applies the Deployment without replicas (the HPA's field now)."""
    return "citywok-operator" not in replicas_managers(c)


def wait_replicas(c: Cluster, n: int, timeout: float = 60) -> dict[str, Any]:
    """Wait for the Deployment (which the operator may not have created yet) to hold ``n`` replicas."""
    return wait_for(lambda: (d := c.get("deployment", "db")) is not None and d["spec"].get("replicas") == n and d,
                    timeout, f"deployment/db at {n} replicas", c.op)


def remove_autoscaling(c: Cluster) -> None:
    c.kubectl("patch", "fingerprintdb", "db", "--type=json",
              "-p", json.dumps([{"op": "remove", "path": "/spec/autoscaling"}]))


def live_pod_names(c: Cluster) -> set[str]:
    return {p["metadata"]["name"] for p in c.pods("db")}


# ------------------------------------------------------------------------------------------------


def test_hpa_appears_with_target_bounds_and_owner_and_the_operator_leaves_replicas_to_it(
        cluster: Cluster) -> None:
    cluster.apply(fdb("db", replicas=4, autoscaling=CPU, matcher={"resources": REQUESTS}))
    owner = cluster.fdb("db")
    hpa = wait_for(lambda: cluster.get("hpa", "db"), 30, "hpa/db", cluster.op)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "db"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"] == [{"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "matcher", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    (ref,) = hpa["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "FingerprintDB", "db", owner["metadata"]["uid"], True)

    # Created at minReplicas, not spec.replicas (4) nor the API default (1); then handed over.
    assert deployment(cluster)["spec"]["replicas"] == 2
    wait_for(lambda: released(cluster), 30, "operator releases spec.replicas", cluster.op)
    assert deployment(cluster)["spec"]["replicas"] == 2

    # A count set through the scale subresource (what the HPA controller does) is not reverted.
    cluster.kubectl("scale", "deployment", "db", "--replicas=4")
    pods = cluster.serve("db", "v1", 4)
    st = cluster.wait_status("db", "Available v1 on 4 pods", lambda st: available("v1")(st)
                             and st.get("readyReplicas") == 4)
    assert st["servedVersions"] == {"v1": 4}
    time.sleep(7)  # two operator resyncs (3 s)
    assert deployment(cluster)["spec"]["replicas"] == 4
    assert live_pod_names(cluster) == set(pods)

    # The real HPA controller raises the Deployment to a new minReplicas, with no metrics at all.
    cluster.patch_spec("db", autoscaling={**CPU, "minReplicas": 5})
    wait_for(lambda: cluster.get("hpa", "db")["spec"]["minReplicas"] == 5, 30, "hpa min 5", cluster.op)
    wait_replicas(cluster, 5)
    assert "citywok-operator" not in replicas_managers(cluster)
    assert cluster.fdb("db")["spec"]["replicas"] == 4, "the spec stays as the user wrote it"

    # A deleted HPA comes back (the operator watches the HPAs it owns); the count stays where it was.
    uid = cluster.get("hpa", "db")["metadata"]["uid"]
    cluster.kubectl("delete", "hpa", "db")
    wait_for(lambda: (h := cluster.get("hpa", "db")) and h["metadata"]["uid"] != uid, 30, "hpa recreated", cluster.op)
    assert deployment(cluster)["spec"]["replicas"] == 5


def test_autoscaling_off_and_on_without_a_dip(cluster: Cluster) -> None:
    pods = serving_v1(cluster, replicas=2, matcher={"resources": REQUESTS})
    cluster.patch_spec("db", autoscaling=RPS)
    hpa = wait_for(lambda: cluster.get("hpa", "db"), 30, "hpa/db", cluster.op)
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "citywok_identify_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "5"}}}]
    wait_replicas(cluster, 3)  # the HPA controller: 2 < minReplicas 3
    # Handing replicas over never reset the count to the API default of 1: both old pods are alive.
    assert set(pods) <= live_pod_names(cluster)
    assert "citywok-operator" not in replicas_managers(cluster)
    pods = cluster.serve("db", "v1", 3)
    cluster.wait_status("db", "Available v1 on 3", lambda st: available("v1")(st) and st.get("readyReplicas") == 3)

    # Off: the HPA is deleted and spec.replicas (2) applies again, owned by the operator.
    remove_autoscaling(cluster)
    wait_for(lambda: cluster.get("hpa", "db") is None, 30, "hpa/db deleted", cluster.op)
    wait_replicas(cluster, 2)
    assert "citywok-operator" in replicas_managers(cluster)
    cluster.kubectl("scale", "deployment", "db", "--replicas=5")
    wait_replicas(cluster, 2, 30)  # a hand edit is reverted again without autoscaling
    cluster.wait_status("db", "Available v1 on 2", lambda st: available("v1")(st) and st.get("readyReplicas") == 2)

    # On again, with a count already inside the bounds: nothing moves.
    before = live_pod_names(cluster)
    cluster.patch_spec("db", autoscaling={**CPU, "minReplicas": 1})
    hpa = wait_for(lambda: cluster.get("hpa", "db"), 30, "hpa/db again", cluster.op)
    assert hpa["spec"]["minReplicas"] == 1
    wait_for(lambda: released(cluster), 30, "operator releases spec.replicas again", cluster.op)
    time.sleep(5)
    assert deployment(cluster)["spec"]["replicas"] == 2
    assert live_pod_names(cluster) == before


def test_a_users_own_hpa_is_not_deleted(cluster: Cluster) -> None:
    """Only the HPA the FingerprintDB owns goes away with the block; a namesake someone made stays."""
    serving_v1(cluster, replicas=1)
    cluster.apply({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": "db"},
                   "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"},
                            "minReplicas": 1, "maxReplicas": 2}})
    time.sleep(5)  # operator resyncs with no autoscaling block
    assert cluster.get("hpa", "db") is not None


def test_version_rollout_while_the_hpa_holds_three_replicas_keeps_capacity(cluster: Cluster) -> None:
    cluster.apply(fdb("db", replicas=2, autoscaling=RPS, rollout={"strategy": "Restart"}))
    wait_replicas(cluster, 3)
    wait_for(lambda: released(cluster), 30, "operator releases spec.replicas", cluster.op)
    cluster.serve("db", "v1", 3, "v1")
    st = cluster.wait_status("db", "Available v1 on 3", lambda st: available("v1")(st)
                             and st.get("readyReplicas") == 3)
    assert "3/3 pods ready" in next(c for c in st["conditions"] if c["type"] == "Available")["message"]
    pdb = wait_for(lambda: (p := cluster.get("pdb", "db")).get("status", {}).get("expectedPods") == 3 and p,
                   30, "PDB expects the HPA's 3 pods", cluster.op)
    assert pdb["status"]["disruptionsAllowed"] == 1

    cluster.patch_spec("db", version="v2")
    seen_ready: list[int] = []
    seen_replicas: set[int] = set()

    def rolled() -> bool:
        pods = cluster.pods("db")
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        seen_ready.append(len(ready))
        seen_replicas.add(deployment(cluster)["spec"]["replicas"])
        for p in ready:  # play each new pod's sidecar as it comes up
            ann = p["metadata"].get("annotations", {})
            if ann.get("citywok.io/version") == "v2" and ann.get("citywok.io/served-version") != "v2":
                cluster.report(p["metadata"]["name"], served="v2")
        st = cluster.status("db")
        return available("v2")(st) and st.get("servedVersions") == {"v2": 3}

    wait_for(rolled, 120, "rollout to v2 on 3 pods", cluster.op)
    assert min(seen_ready) >= 3, f"capacity dropped during the rollout: ready pods seen {seen_ready}"
    assert seen_replicas == {3}, f"the operator and the HPA fought over replicas: {seen_replicas}"
    st = cluster.status("db")
    assert st["readyReplicas"] == 3 and st["lastGoodVersion"] == "v2"
    assert cluster.get("hpa", "db")["spec"]["minReplicas"] == 3
    wait_for(lambda: len(cluster.pods("db")) == 3, 60, "surge pods gone", cluster.op)
    pdb = cluster.get("pdb", "db")
    assert pdb["status"]["expectedPods"] == 3


@pytest.mark.parametrize(("block", "extra", "message"), [
    ({**CPU, "maxReplicas": 1}, {}, "maxReplicas must be >= minReplicas"),
    ({**CPU, "minReplicas": 0}, {}, "spec.autoscaling.minReplicas"),
    ({**CPU, "target": {"cpuUtilization": 60, "requestsPerSecond": 5}}, {}, ONE_TARGET),
    ({**CPU, "target": {}}, {}, ONE_TARGET),
    ({"minReplicas": 1, "target": {"requestsPerSecond": 5}}, {}, "spec.autoscaling.maxReplicas"),
    ({**RPS, "target": {"requestsPerSecond": 0}}, {}, "spec.autoscaling.target.requestsPerSecond"),
    (CPU, {"matcher": {"resources": {"requests": {"memory": "1Gi"}}}}, "needs matcher.resources.requests.cpu"),
])
def test_schema_refuses_bad_autoscaling(cluster: Cluster, block: dict[str, Any], extra: dict[str, Any],
                                        message: str) -> None:
    obj = fdb("bad", autoscaling=block, **({"matcher": {"resources": REQUESTS}} | extra))
    r = cluster.apply(obj, check=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert cluster.get("fingerprintdb", "bad") is None
