"""Rendered manifests validated by kubeconform (pinned, hack/tools.sh) against schemas made offline.

The schemas come from the pinned Kubernetes version's own OpenAPI document and the chart's CRDs
(tests/chart/kubeschemas.py), so nothing is downloaded. The Prometheus operator's kinds have no
schema here: they are the only ones allowed to be skipped, and the test says which were.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chart.chartkit import CHART, FULL_VALUES, KUBE_VERSION, MONITORING, ROOT, render_text, run, tool
from tests.chart.kubeschemas import TEMPLATE, swagger_path, write_crds, write_kubernetes

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("kubeconform-schemas")
    assert write_kubernetes(swagger_path(f"v{KUBE_VERSION}"), dest) > 200
    assert write_crds(sorted((CHART / "crds").glob("*.yaml")), dest) == [
        "fingerprintdb-citywok.io-v1alpha1.json", "clusterkopfpeering-kopf.dev-v1.json", "kopfpeering-kopf.dev-v1.json"]
    return dest


def kubeconform(schemas: Path, manifest: str) -> dict:
    proc = run([tool("kubeconform"), "-strict", "-ignore-missing-schemas", "-summary", "-output", "json",
                "-schema-location", f"{schemas}/{TEMPLATE}", "-"], check=False, stdin=manifest)
    report = json.loads(proc.stdout)
    bad = [r for r in report["resources"] if r["status"] in ("statusInvalid", "statusError")]
    return {"rc": proc.returncode, "bad": bad, "summary": report["summary"],
            "skipped": {r["kind"] for r in report["resources"] if r["status"] == "statusSkipped"}}


@pytest.mark.parametrize("values", [[], [FULL_VALUES], [ROOT / "hack/kind/values.yaml"]],
                         ids=["default", "full", "kind-dev"])
def test_rendered_chart_is_valid_kubernetes(schemas: Path, values: list[Path]) -> None:
    out = kubeconform(schemas, render_text(values=values, api_versions=[MONITORING], crds=True))
    assert out["rc"] == 0 and not out["bad"], out["bad"]
    assert out["skipped"] <= MONITORING_KINDS, f"skipped without a schema: {out['skipped']}"
    assert out["summary"]["valid"] >= 9


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
