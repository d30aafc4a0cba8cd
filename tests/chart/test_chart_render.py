"""The chart rendered by a real `helm template` (pinned helm from hack/tools.sh), default and full values."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.chartkit import (
    CHART,
    FULL_VALUES,
    MONITORING,
    NAMESPACE,
    RELEASE,
    ROOT,
    by_kind,
    one,
    render,
    render_error,
    run,
    tool,
)

OPERATOR = f"{RELEASE}-citywok-operator"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def operator_rules() -> list[dict]:
    return yaml.safe_load((ROOT / "operator/rbac.yaml").read_text())["rules"]


def test_chart_copies_of_crds_and_rbac_match_their_sources() -> None:
    """The chart ships copies (helm cannot package files outside it); `make chart-sync` refreshes them."""
    hint = "out of date: run `make chart-sync`"
    assert (CHART / "crds/fingerprintdb.yaml").read_bytes() == (ROOT / "crds/fingerprintdb.yaml").read_bytes(), hint
    assert (CHART / "files/operator-rbac.yaml").read_bytes() == (ROOT / "operator/rbac.yaml").read_bytes(), hint
    peering = [d for d in yaml.safe_load_all((ROOT / "operator/peering-crds.yaml").read_text())
               if d["kind"] == "CustomResourceDefinition"]
    assert list(yaml.safe_load_all((CHART / "crds/kopf-peering.yaml").read_text())) == peering, hint


@pytest.mark.go
def test_helm_lint_strict_default_and_full_values() -> None:
    helm = tool("helm")
    run([helm, "lint", "--strict", CHART])
    run([helm, "lint", "--strict", CHART, "-f", FULL_VALUES])


@pytest.mark.go
def test_default_values_render_operator_rbac_peering_and_dashboard_only() -> None:
    objs = render()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service",
                            "Deployment", "ClusterKopfPeering"]), kinds
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "citywok", o["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "citywok-0.1.0"
    role = one(objs, "ClusterRole", OPERATOR)
    assert role["rules"] == operator_rules(), "the ClusterRole is operator/rbac.yaml's rules, unchanged"
    binding = one(objs, "ClusterRoleBinding", OPERATOR)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == OPERATOR
    assert one(objs, "ClusterKopfPeering")["metadata"]["name"] == "citywok"


@pytest.mark.go
def test_operator_deployment_is_locked_down_and_wired() -> None:
    dep = one(render(), "Deployment", OPERATOR)
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/citywok/citywok:0.1.0"
    assert c["command"] == ["citywok"] and c["args"][0] == "operator"
    assert "--peering=citywok" in c["args"] and "--metrics-port=8081" in c["args"]
    assert not any(a.startswith("--namespace") for a in c["args"]), "cluster-wide by default"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 8081}
    assert pod["serviceAccountName"] == OPERATOR
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.go
def test_full_values_render_every_part() -> None:
    objs = render(values=[FULL_VALUES])
    assert {o["kind"] for o in objs} == {
        "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
        "Deployment", "Ingress", "FingerprintDB", "KopfPeering", "PodMonitor", "PrometheusRule", "ServiceMonitor",
        "PodDisruptionBudget", "Pod"}
    for o in objs:
        assert o["metadata"]["labels"]["team"] == "audio", f"commonLabels on {o['kind']}"

    fpdb = one(objs, "FingerprintDB", "episodes")
    assert fpdb["metadata"]["namespace"] == NAMESPACE
    assert fpdb["spec"]["source"] == {
        "bucket": "citywok-fingerprints", "prefix": "fingerprints", "region": "auto",
        "endpoint": "https://0123456789abcdef.r2.cloudflarestorage.com",
        "credentialsSecret": {"name": "citywok-r2", "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
                              "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}}
    assert fpdb["spec"]["version"] == "2026-11-27" and fpdb["spec"]["maxSeasons"] == 20
    assert "seasons" not in fpdb["spec"]
    assert fpdb["spec"]["matcher"]["image"] == "ghcr.io/citywok/citywok:0.1.0"
    assert fpdb["spec"]["rollout"] == {"strategy": "Restart", "progressDeadlineSeconds": 900, "autoRollback": True}

    ing = one(objs, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "episodes", "port": {"name": "http"}}, "the matcher Service is named after the FDB"
    assert ing["spec"]["ingressClassName"] == "nginx" and ing["spec"]["tls"][0]["secretName"] == "citywok-tls"

    args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=citywok" in args and "--namespace=citywok-staging" in args
    assert one(objs, "Deployment")["spec"]["replicas"] == 2


@pytest.mark.go
def test_watch_namespaces_split_rbac_into_roles_and_a_small_clusterrole() -> None:
    objs = render(values=[FULL_VALUES])
    rules = operator_rules()
    cluster = one(objs, "ClusterRole")["rules"]
    roles = by_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["citywok", "citywok-staging"]
    assert {(g, res) for r in cluster for g in r["apiGroups"] for res in r["resources"]} == {
        ("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"),
        ("kopf.dev", "clusterkopfpeerings"), ("kopf.dev", "kopfpeerings")}
    for role in roles:
        assert sorted(map(str, role["rules"] + cluster)) == sorted(map(str, rules)), "no rule lost or added"
        granted = {res for r in role["rules"] for res in r["resources"]}
        assert {"deployments", "pods", "fingerprintdbs/status", "roles", "events"} <= granted
    for binding in by_kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objs, "KopfPeering")) == ["citywok", "citywok-staging"]


@pytest.mark.go
@pytest.mark.parametrize(("setting", "api", "expected"), [
    (None, False, False), (None, True, True), ("false", True, False), ("true", False, True)])
def test_monitoring_objects_follow_the_prometheus_operator_api(setting, api, expected) -> None:
    sets = {} if setting is None else {"metrics.serviceMonitor.enabled": setting,
                                        "metrics.prometheusRule.enabled": setting}
    objs = render(sets=sets, api_versions=[MONITORING] if api else [])
    assert ({o["kind"] for o in objs} & MONITORING_KINDS == MONITORING_KINDS) is expected
    assert bool({o["kind"] for o in objs} & MONITORING_KINDS) is expected


@pytest.mark.go
def test_service_monitors_select_what_the_operator_creates() -> None:
    from citywok.operator import desired

    objs = render(values=[FULL_VALUES])
    matcher_labels = desired.labels("episodes")
    svc_port = desired.service(_spec("episodes"), _OWNER)["spec"]["ports"][0]["name"]
    sm = one(objs, "ServiceMonitor", f"{RELEASE}-citywok-matcher")
    assert sm["spec"]["selector"]["matchLabels"].items() <= matcher_labels.items()
    assert sm["spec"]["endpoints"][0]["port"] == svc_port
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["citywok", "citywok-staging"]}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pm = one(objs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"].items() <= matcher_labels.items()
    op = one(objs, "ServiceMonitor", OPERATOR)
    op_svc = one(objs, "Service", f"{OPERATOR}-metrics")
    assert op["spec"]["selector"]["matchLabels"] == op_svc["spec"]["selector"]
    assert op["spec"]["endpoints"][0]["port"] == op_svc["spec"]["ports"][0]["name"]
    assert op["spec"]["endpoints"][0]["honorLabels"] is True


@pytest.mark.go
def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    import json

    cm = one(render(values=[FULL_VALUES]), "ConfigMap", f"{RELEASE}-citywok-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "CityWok"}
    assert json.loads(cm["data"]["citywok.json"]) == json.loads((CHART / "dashboards/citywok.json").read_text())
    assert not by_kind(render(sets={"metrics.dashboard.enabled": "false"}), "ConfigMap")


@pytest.mark.go
@pytest.mark.parametrize(("sets", "message"), [
    ({"fingerprintDB.enabled": "true"}, "fingerprintDB.source.bucket is required"),
    ({"fingerprintDB.enabled": "true", "fingerprintDB.source.bucket": "abc", "fingerprintDB.seasons": "[1,2]",
      "fingerprintDB.maxSeasons": "3"}, "either seasons or maxSeasons"),
    ({"ingress.enabled": "true"}, "ingress.enabled needs fingerprintDB.enabled or ingress.serviceName"),
    ({"operator.replicas": "2", "operator.peering.enabled": "false"}, "needs operator.peering.enabled"),
])
def test_inconsistent_values_fail_with_a_clear_message(sets, message) -> None:
    assert message in render_error(sets=sets)


@pytest.mark.go
@pytest.mark.parametrize(("key", "value", "field"), [
    ("image.pullPolicy", "Sometimes", "pullPolicy"),
    ("image.digest", "latest", "digest"),
    ("operator.logFormat", "xml", "logFormat"),
    ("operator.replica", "2", "replica"),
    ("operator.watchNamespaces", '["Not_A_Namespace"]', "watchNamespaces"),
    ("fingerprintDB.version", "current", "version"),
    ("fingerprintDB.version", "../etc", "version"),
    ("fingerprintDB.source.bucket", "Bad_Bucket", "bucket"),
    ("fingerprintDB.source.endpoint", "r2.example.com", "endpoint"),
    ("fingerprintDB.name", "x" * 51, "name"),
    ("fingerprintDB.replicas", "-1", "replicas"),
    ("fingerprintDB.seasons", "[0]", "seasons"),
    ("fingerprintDB.storage.type", "HostPath", "type"),
    ("fingerprintDB.rollout.strategy", "BlueGreen", "strategy"),
    ("ingress.hosts", '[{"host": "a.example.com", "paths": [{"path": "api", "pathType": "Prefix"}]}]', "path"),
    ("metrics.serviceMonitor.enabled", "yes", "enabled"),
    ("metrics.serviceMonitor.interval", "5 minutes", "interval"),
    ("metrics.prometheusRule.thresholds.errorRatio", "5", "errorRatio"),
])
def test_values_schema_rejects_bad_values(key, value, field) -> None:
    err = render_error(sets={key: value})
    assert "values don't meet the specifications of the schema" in err, err
    assert field in err, err


def _spec(name: str):
    from citywok.operator.spec import parse

    return parse(name, NAMESPACE, {"version": "v1", "source": {"bucket": "abc"}})


_OWNER = {"metadata": {"name": "episodes", "uid": "0"}}
