"""Rendered manifests validated by kubeconform (pinned, hack/tools.sh) against schemas made offline.

The schemas come from the pinned Kubernetes version's own OpenAPI document, the chart's CRDs and the
Prometheus operator's published CRDs (hack/prometheus-crds.sh, cached by hack/k8s-testenv.sh from the
pinned Go module), converted by tests/chart/kubeschemas.py: nothing is downloaded here and no kind is
skipped, ServiceMonitor, PodMonitor and PrometheusRule included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chart.chartkit import CHART, FULL_VALUES, KUBE_VERSION, MONITORING, ROOT, render_text, run, tool
from tests.chart.kubeschemas import TEMPLATE, swagger_path, write_crds, write_kubernetes

pytestmark = pytest.mark.go  # helm, kubeconform and the schemas come from Go modules

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def prometheus_operator_crds() -> list[Path]:
    """The cached CRD files (hack/prometheus-crds.sh --offline: fails, saying what to run, when missing)."""
    proc = run(["bash", ROOT / "hack/prometheus-crds.sh", "--offline"])
    return sorted(Path(proc.stdout.strip().splitlines()[-1]).glob("*.yaml"))


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("kubeconform-schemas")
    assert write_kubernetes(swagger_path(f"v{KUBE_VERSION}"), dest) > 200
    assert write_crds(sorted((CHART / "crds").glob("*.yaml")), dest) == [
        "fingerprintdb-citywok.io-v1alpha1.json", "clusterkopfpeering-kopf.dev-v1.json", "kopfpeering-kopf.dev-v1.json"]
    assert sorted(write_crds(prometheus_operator_crds(), dest)) == [
        "podmonitor-monitoring.coreos.com-v1.json", "prometheusrule-monitoring.coreos.com-v1.json",
        "servicemonitor-monitoring.coreos.com-v1.json"]
    return dest


def kubeconform(schemas: Path, manifest: str) -> dict:
    proc = run([tool("kubeconform"), "-strict", "-ignore-missing-schemas", "-summary", "-verbose", "-output", "json",
                "-schema-location", f"{schemas}/{TEMPLATE}", "-"], check=False, stdin=manifest)
    report = json.loads(proc.stdout)
    bad = [r for r in report["resources"] if r["status"] in ("statusInvalid", "statusError")]
    return {"rc": proc.returncode, "bad": bad, "summary": report["summary"],
            "skipped": {r["kind"] for r in report["resources"] if r["status"] == "statusSkipped"},
            "valid_kinds": {r["kind"] for r in report["resources"] if r["status"] == "statusValid"}}


@pytest.mark.parametrize("values", [[], [FULL_VALUES], [ROOT / "hack/kind/values.yaml"]],
                         ids=["default", "full", "kind-dev"])
def test_rendered_chart_is_valid_kubernetes(schemas: Path, values: list[Path]) -> None:
    out = kubeconform(schemas, render_text(values=values, api_versions=[MONITORING], crds=True))
    assert out["rc"] == 0 and not out["bad"], out["bad"]
    assert not out["skipped"], f"skipped without a schema: {out['skipped']}"
    assert out["summary"]["valid"] >= 9
    if values == [FULL_VALUES]:
        assert MONITORING_KINDS <= out["valid_kinds"], "the monitoring objects were validated"


def test_dev_s3_manifest_is_valid_kubernetes(schemas: Path) -> None:
    out = kubeconform(schemas, (ROOT / "hack/kind/s3.yaml").read_text())
    assert out["rc"] == 0 and not out["bad"] and out["summary"]["valid"] == 3, out


def test_kubeconform_with_these_schemas_rejects_bad_objects(schemas: Path) -> None:
    bad = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i, ports: [{containerPort: "80"}]}]}
---
apiVersion: citywok.io/v1alpha1
kind: FingerprintDB
metadata: {name: fp}
spec: {version: v1, source: {bucket: abc}, replicas: "two"}
"""
    out = kubeconform(schemas, bad)
    assert out["rc"] != 0
    messages = " ".join(r["msg"] for r in out["bad"])
    assert "'replica' not allowed" in messages and "containerPort" in messages
    assert "/spec/replicas" in messages, "the FingerprintDB schema comes from crds/fingerprintdb.yaml"


def test_kubeconform_rejects_bad_monitoring_objects(schemas: Path) -> None:
    """The Prometheus operator's schemas are really applied: a misspelt field and a bad duration fail."""
    bad = """\
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: sm}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: http, interval: 30, relabellings: []}]
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: pr}
spec:
  groups: [{name: g, rules: [{alert: A, expr: up == 0, for: ten minutes}]}]
"""
    out = kubeconform(schemas, bad)
    assert out["rc"] != 0
    messages = " ".join(r["msg"] for r in out["bad"])
    assert "relabellings" in messages and "/spec/endpoints/0/interval" in messages, messages
    assert "/spec/groups/0/rules/0/for" in messages, messages
