"""spec.podTemplate, env/envFrom and the scale subresource against a real API server and scheduler.

kwok's nodes carry the label ``type=kwok``; the real kube-scheduler places (or refuses to place) the
matcher pods by the nodeSelector and tolerations the operator copied from the FingerprintDB.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.k8s import test_operator as base
from tests.k8s.test_operator import Cluster, available, fdb, serving_v1, wait_for

pytestmark = pytest.mark.k8s
operator = base.operator
cluster = base.cluster

POD_TEMPLATE = {
    "metadata": {"labels": {"team": "audio"}, "annotations": {"cost-center": "tv"}},
    "imagePullSecrets": [{"name": "ghcr-pull"}],
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "citywok", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
}
MATCHER_ENV = {"env": [{"name": "URL_ALLOW_HOSTS", "value": "cdn.example.com"},
                       {"name": "INGEST_TOKEN", "valueFrom": {"secretKeyRef": {"name": "matcher-env",
                                                                              "key": "INGEST_TOKEN"}}}],
               "envFrom": [{"secretRef": {"name": "matcher-env"}}]}


def secret(c: Cluster) -> None:
    c.kubectl("create", "secret", "generic", "matcher-env", "--from-literal=INGEST_TOKEN=t0ken",
              "--from-literal=SENTRY_DSN=https://key@sentry.example/1")


def matcher(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "matcher")


def scale(c: Cluster, name: str) -> dict[str, Any]:
    return json.loads(c.kubectl("get", "fingerprintdb", name, "--subresource=scale", "-o", "json").stdout)


def test_pods_carry_pull_secrets_node_selector_tolerations_and_env_from_a_secret(cluster: Cluster) -> None:
    secret(cluster)
    cluster.apply(fdb("db", podTemplate=POD_TEMPLATE, matcher=MATCHER_ENV))
    pods = cluster.ready_pods("db", 2)  # scheduled onto kwok nodes by the real scheduler
    for pod in pods:
        spec = pod["spec"]
        assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
        assert spec["nodeSelector"] == {"type": "kwok"}
        assert POD_TEMPLATE["tolerations"][0] in spec["tolerations"]
        assert spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
            "app.kubernetes.io/instance"] == "db"
        assert pod["metadata"]["labels"]["team"] == "audio"
        assert pod["metadata"]["annotations"]["cost-center"] == "tv"
        m = matcher(pod)
        assert m["envFrom"] == [{"secretRef": {"name": "matcher-env"}}]
        env = {e["name"]: e for e in m["env"]}
        assert env["URL_ALLOW_HOSTS"]["value"] == "cdn.example.com"
        assert env["INGEST_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "matcher-env", "key": "INGEST_TOKEN"}
        assert "t0ken" not in json.dumps(pod), "the credential stays in the Secret"

    # A selector no node satisfies: the new pod the rollout surges is left unscheduled.
    cluster.patch_spec("db", podTemplate={**POD_TEMPLATE, "nodeSelector": {"type": "gpu"}})

    def unschedulable() -> bool:
        for pod in cluster.pods("db"):
            if pod["spec"].get("nodeSelector") == {"type": "gpu"}:
                conds = pod.get("status", {}).get("conditions", [])
                return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conds)
        return False
    wait_for(unschedulable, 60, "a pod with nodeSelector type=gpu left Unschedulable", cluster.op)


def test_the_api_server_refuses_a_credential_as_a_plain_value(cluster: Cluster) -> None:
    bad = fdb("db", matcher={"env": [{"name": "INGEST_TOKEN", "value": "hunter2"}]})
    r = cluster.apply(bad, check=False)
    assert r.returncode != 0 and "a credential comes from a Secret" in r.stderr, r.stderr


def test_kubectl_scale_fingerprintdb_changes_the_deployment(cluster: Cluster) -> None:
    serving_v1(cluster)
    sc = wait_for(lambda: (s := scale(cluster, "db"))["status"].get("selector") and s, 30, "scale selector")
    assert sc["spec"]["replicas"] == 2 and sc["status"]["replicas"] == 2
    assert "app.kubernetes.io/instance=db" in sc["status"]["selector"].split(",")
    cluster.kubectl("scale", "fingerprintdb", "db", "--replicas=3")
    assert cluster.fdb("db")["spec"]["replicas"] == 3
    wait_for(lambda: (d := cluster.get("deployment", "db")) and d["spec"]["replicas"] == 3, 30,
             "deployment/db at 3 replicas", cluster.op)
    cluster.serve("db", "v1", 3)
    cluster.wait_status("db", "3 ready", lambda st: st.get("readyReplicas") == 3 and available("v1")(st))
    assert scale(cluster, "db")["status"]["replicas"] == 3


def test_under_spec_autoscaling_kubectl_scale_waits_and_the_hpa_keeps_the_count(cluster: Cluster) -> None:
    auto = {"minReplicas": 2, "maxReplicas": 4, "target": {"requestsPerSecond": 5}}
    serving_v1(cluster, autoscaling=auto)
    wait_for(lambda: cluster.get("hpa", "db"), 30, "hpa/db", cluster.op)
    cluster.kubectl("scale", "fingerprintdb", "db", "--replicas=4")
    assert cluster.fdb("db")["spec"]["replicas"] == 4
    dep = wait_for(lambda: cluster.get("deployment", "db"), 10, "deployment/db")
    for _ in range(3):  # a few resyncs (3 s): the operator's HPA, not spec.replicas, sets the count
        wait_for(lambda: cluster.status("db").get("observedGeneration") == cluster.fdb("db")["metadata"][
            "generation"], 30, "the new generation reconciled", cluster.op)
        dep = cluster.get("deployment", "db")
        assert dep is not None and dep["spec"]["replicas"] == 2
        time.sleep(3)
