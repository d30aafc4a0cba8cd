"""The chart's `helm test` pod, the operator's readiness probe and PodDisruptionBudget, and the
FingerprintDB knobs passed through from values.

The test pod's own command is run here against the real matcher app on loopback (Kubernetes cannot
run containers on this machine), so what `helm test` checks is checked, not only its shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.chart.chartkit import FULL_VALUES, by_kind, one, render
from tests.http.support import LoopbackServer, ServerThread

pytestmark = pytest.mark.go  # helm, kubeconform and the schemas come from Go modules

FDB_ON = {"fingerprintDB.enabled": "true", "fingerprintDB.source.bucket": "abc", "fingerprintDB.name": "episodes"}


def helm_test_pod(**kw: object) -> dict:
    pods = [p for p in by_kind(render(**kw), "Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert len(pods) == 1, pods
    return pods[0]


def run_test_command(pod: dict, url: str) -> subprocess.CompletedProcess:
    """The container's command with the Service URL replaced by ``url``, run by this interpreter."""
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["python", "-c"]
    script, _service_url = c["args"]
    return subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, timeout=60)


def test_helm_test_pod_calls_the_api_through_the_matcher_service() -> None:
    pod = helm_test_pod(sets=FDB_ON)
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["args"][1] == "http://episodes.citywok.svc:8000/api/v1/test"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    via_ingress = helm_test_pod(sets={"ingress.serviceName": "other-db"})
    assert via_ingress["spec"]["containers"][0]["args"][1] == "http://other-db.citywok.svc:8000/api/v1/test"


def test_no_test_pod_without_a_service_to_call_or_when_disabled() -> None:
    assert not [p for p in by_kind(render(), "Pod")]
    assert not [p for p in by_kind(render(sets={**FDB_ON, "tests.enabled": "false"}), "Pod")]


def test_the_test_command_passes_against_the_real_api_and_fails_otherwise(tmp_path: Path) -> None:
    from citywok.matcher.service.server import ServerConfig

    pod = helm_test_pod(sets=FDB_ON)
    s = ServerThread(ServerConfig(data_dir=tmp_path, host="127.0.0.1", poll_interval=0.1)).start()
    try:
        ok = run_test_command(pod, f"{s.url}/api/v1/test")
    finally:
        s.stop()
    assert ok.returncode == 0, ok.stderr
    assert "'status': 'ok'" in ok.stdout

    async def down(_: web.Request) -> web.Response:
        return web.json_response({"status": "degraded"})

    app = web.Application()
    app.router.add_get("/api/v1/test", down)
    other = LoopbackServer(app).start()
    try:
        bad = run_test_command(pod, f"{other.url}/api/v1/test")
    finally:
        other.stop()
    assert bad.returncode == 1
    gone = run_test_command(pod, "http://127.0.0.1:9/api/v1/test")
    assert gone.returncode != 0 and "URLError" in gone.stderr


@pytest.mark.parametrize(("replicas", "pdb"), [(1, False), (2, True)])
def test_operator_pdb_only_with_standby_replicas(replicas: int, pdb: bool) -> None:
    objs = render(sets={"operator.replicas": str(replicas)})
    pdbs = by_kind(objs, "PodDisruptionBudget")
    assert bool(pdbs) is pdb
    if pdb:
        dep = one(objs, "Deployment")
        assert pdbs[0]["spec"]["maxUnavailable"] == 1
        assert pdbs[0]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_operator_has_a_readiness_probe_on_kopfs_health_endpoint() -> None:
    (c,) = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_fingerprintdb_gets_pod_knobs_env_and_the_release_pull_secrets() -> None:
    spec = one(render(values=[FULL_VALUES]), "FingerprintDB")["spec"]
    pt = spec["podTemplate"]
    assert pt["imagePullSecrets"] == [{"name": "ghcr-pull"}], "the top-level imagePullSecrets by default"
    assert pt["metadata"] == {"labels": {"cost-center": "tv"}, "annotations": {"example.com/owner": "audio"}}
    assert pt["priorityClassName"] == "citywok-serving" and pt["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pt["tolerations"][0]["key"] == "dedicated" and pt["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert spec["matcher"]["envFrom"] == [{"secretRef": {"name": "citywok-sentry"}}]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"} in spec["fetcher"]["env"]
    own = one(render(values=[FULL_VALUES], sets={"fingerprintDB.podTemplate.imagePullSecrets":
                                                 json.dumps([{"name": "matcher-pull"}])}), "FingerprintDB")
    assert own["spec"]["podTemplate"]["imagePullSecrets"] == [{"name": "matcher-pull"}]
    assert "podTemplate" not in one(render(sets=FDB_ON), "FingerprintDB")["spec"], "nothing set: nothing sent"


def test_what_the_chart_sends_the_operator_accepts() -> None:
    from citywok.operator import desired
    from citywok.operator.spec import parse

    fdb = one(render(values=[FULL_VALUES]), "FingerprintDB")
    spec = parse(fdb["metadata"]["name"], fdb["metadata"]["namespace"], fdb["spec"])
    tpl = desired.pod_template(spec, spec.version)
    assert tpl["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert tpl["spec"]["priorityClassName"] == "citywok-serving"


def test_helm_knows_its_kubernetes_version_without_kube_version(tmp_path: Path) -> None:
    """hack/k8s/helm.sh links helm's client-go version in: no --kube-version, no "v1.20.0"."""
    from tests.chart.chartkit import CHART, KUBE_VERSION, run, tool

    chart = tmp_path / "kv"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kv\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text("kube: {{ .Capabilities.KubeVersion.Version }}\n")
    out = run([tool("helm"), "template", "kv", chart]).stdout
    major_minor = ".".join(KUBE_VERSION.split(".")[:2])
    assert f"kube: v{major_minor}.0" in out, (
        f"helm's default Kubernetes version ({out.strip()[-20:]}) should be the test bed's {major_minor}: the "
        "pinned helm's client-go minor (if the pins part ways, compare with helm's go.mod instead)")
    rendered = run([tool("helm"), "template", "cw", CHART]).stdout  # kubeVersion: >=1.25.0-0
    assert "kind: Deployment" in rendered
