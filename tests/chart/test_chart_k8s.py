"""The chart installed by a real `helm install` on the real Kubernetes test bed (tests/k8s/testbed.py:
etcd, kube-apiserver with RBAC, controller-manager, scheduler, kwok nodes that run pods as fakes).

What the API server checks here and nothing above can: the CRDs are accepted and established, every
rendered object passes the server's own validation (the FingerprintDB against its CRD schema), the
operator's Deployment becomes available, and its ServiceAccount holds exactly the permissions the
operator uses: it can apply every child it creates (RBAC refuses a Role that grants more than the
granter holds), and nothing outside the watched namespaces. The Prometheus operator's CRDs are not on
the test bed: ServiceMonitor/PodMonitor/PrometheusRule are switched off here (they are checked by
helm template and the PromQL tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from tests.chart.chartkit import CHART, FULL_VALUES, KUBE_VERSION
from tests.k8s.testbed import TestBed, TestBedError, build_binaries

pytestmark = [pytest.mark.k8s, pytest.mark.go]

NO_MONITORING = ["--set", "metrics.serviceMonitor.enabled=false", "--set", "metrics.prometheusRule.enabled=false"]


@pytest.fixture(scope="module")
def bed() -> Iterator[TestBed]:
    """A control plane of our own for this module (started and stopped here, so it never overlaps
    the session-wide `k8s` fixture of tests/k8s)."""
    try:
        bed = TestBed(build_binaries()).start()
    except TestBedError as exc:
        pytest.fail(f"Kubernetes test bed unavailable: {exc}", pytrace=False)
    try:
        yield bed
    finally:
        bed.stop()


def helm(bed: TestBed, *args: str) -> str:
    proc = bed_run(bed, [str(bed.bin_dir / "helm"), "--kubeconfig", str(bed.kubeconfig), *args])
    return proc.stdout


def bed_run(bed: TestBed, argv: list[str]):
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, env=bed.env, timeout=300)
    assert proc.returncode == 0, f"{' '.join(argv[:3])} ... failed:\n{proc.stderr[-3000:]}"
    return proc


def can(bed: TestBed, sa: str, *args: str) -> bool:
    out = bed.kubectl("auth", "can-i", f"--as=system:serviceaccount:{sa}", *args, check=False)
    return out.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def default_release(bed: TestBed) -> str:
    helm(bed, "install", "cw", str(CHART), "--namespace", "citywok", "--create-namespace",
         "--wait", "--timeout", "180s")
    return "citywok:cw-citywok-operator"


@pytest.fixture(scope="module")
def full_release(bed: TestBed, default_release: str) -> str:
    bed.kubectl("create", "namespace", "citywok-staging")
    helm(bed, "install", "full", str(CHART), "--namespace", "citywok-staging", "-f", str(FULL_VALUES),
         *NO_MONITORING, "--wait", "--timeout", "180s")
    return "citywok-staging:full-citywok-operator"


def test_helm_install_default_values(bed: TestBed, default_release: str) -> None:
    for crd in ("fingerprintdbs.citywok.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        bed.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    dep = json.loads(bed.kubectl("-n", "citywok", "get", "deploy", "cw-citywok-operator", "-o", "json").stdout)
    assert dep["status"].get("availableReplicas") == 1, dep["status"]
    assert bed.kubectl("get", "clusterkopfpeering", "citywok", "-o", "name").stdout.strip()
    out = bed.kubectl("get", "fingerprintdbs", "-A").stdout
    assert out == "" or "No resources" in out
    notes = helm(bed, "get", "notes", "cw", "--namespace", "citywok")
    assert "watches FingerprintDB resources in every namespace" in notes, notes
    assert "No FingerprintDB was created" in notes and "No ServiceMonitor" in notes, notes
    server = json.loads(bed.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert server == f"v{KUBE_VERSION}", "helm template renders for the version the test bed runs"


def test_cluster_wide_operator_rbac_is_what_the_operator_needs_and_no_more(bed: TestBed, default_release) -> None:
    sa = default_release
    for verb, res in (("watch", "fingerprintdbs.citywok.io"), ("patch", "fingerprintdbs.citywok.io/status"),
                      ("create", "deployments.apps"), ("patch", "pods"), ("create", "roles.rbac.authorization.k8s.io"),
                      ("create", "events"), ("list", "customresourcedefinitions.apiextensions.k8s.io")):
        assert can(bed, sa, verb, res, "-n", "anywhere"), f"{verb} {res}"
    for verb, res in (("get", "secrets"), ("delete", "pods"), ("create", "clusterroles.rbac.authorization.k8s.io"),
                      ("delete", "fingerprintdbs.citywok.io"), ("create", "pods/exec")):
        assert not can(bed, sa, verb, res, "-n", "citywok"), f"{verb} {res} should be refused"


def test_helm_install_full_values_creates_the_fingerprintdb(bed: TestBed, full_release: str) -> None:
    fpdb = json.loads(bed.kubectl("-n", "citywok-staging", "get", "fingerprintdb", "episodes", "-o", "json").stdout)
    expected = yaml.safe_load(FULL_VALUES.read_text())["fingerprintDB"]
    assert fpdb["spec"]["version"] == expected["version"]
    assert fpdb["spec"]["source"]["endpoint"] == expected["source"]["endpoint"]
    assert fpdb["spec"]["maxSeasons"] == 20 and fpdb["spec"]["replicas"] == 3
    dep = json.loads(bed.kubectl("-n", "citywok-staging", "get", "deploy", "full-citywok-operator",
                                 "-o", "json").stdout)
    assert dep["status"].get("availableReplicas") == 2
    assert bed.kubectl("-n", "citywok", "get", "kopfpeering", "citywok", "-o", "name").stdout.strip()
    assert bed.kubectl("get", "ingress", "-n", "citywok-staging", "full-citywok", "-o", "name").stdout.strip()
    notes = helm(bed, "get", "notes", "full", "--namespace", "citywok-staging")
    assert "FingerprintDB episodes asks for version 2026-11-27" in notes, notes
    assert "Secret citywok-r2" in notes and "https://citywok.example.com/api/v1/identify" in notes, notes


def test_namespaced_operator_reaches_only_the_watched_namespaces(bed: TestBed, full_release: str) -> None:
    sa = full_release
    for ns in ("citywok", "citywok-staging"):
        assert can(bed, sa, "create", "deployments.apps", "-n", ns)
        assert can(bed, sa, "patch", "fingerprintdbs.citywok.io/status", "-n", ns)
    assert not can(bed, sa, "create", "deployments.apps", "-n", "default")
    assert not can(bed, sa, "list", "pods", "-n", "kube-system")
    assert can(bed, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can(bed, sa, "get", "secrets", "-n", "citywok")


def children_manifest(bed: TestBed, namespace: str) -> str:
    from citywok.operator import desired
    from citywok.operator.spec import parse

    owner = json.loads(bed.kubectl("-n", "citywok-staging", "get", "fingerprintdb", "episodes", "-o", "json").stdout)
    spec = parse("episodes", namespace, owner["spec"])
    owner["metadata"]["namespace"] = namespace
    return yaml.safe_dump_all(desired.children(spec, owner["spec"]["version"], owner))


def test_operator_account_can_apply_every_child_it_creates(bed: TestBed, full_release: str) -> None:
    """What the operator does on each reconcile, as its ServiceAccount: a real server-side apply (a dry
    run cannot bind the fetcher's Role before it exists)."""
    apply = ["apply", "--server-side", "--field-manager=citywok-operator",
             f"--as=system:serviceaccount:{full_release}", "-f", "-"]
    applied = bed.kubectl(*apply, input=children_manifest(bed, "citywok-staging")).stdout
    for kind in ("configmap", "serviceaccount", "role.rbac.authorization.k8s.io",
                 "rolebinding.rbac.authorization.k8s.io", "service", "poddisruptionbudget.policy", "deployment.apps"):
        assert f"{kind}/episodes" in applied, applied
    assert can(bed, "citywok-staging:episodes-fetcher", "patch", "pods", "-n", "citywok-staging"), \
        "the fetcher sidecar may annotate its pod"
    refused = bed.kubectl(*apply, "--dry-run=server", input=children_manifest(bed, "default"), check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr, "outside the watched namespaces: refused"


def test_helm_test_pod_is_accepted_under_restricted_pod_security(bed: TestBed, full_release: str) -> None:
    """The `helm test` pod as rendered for the full release, checked by the API server (a server-side
    dry run) in a namespace that enforces the restricted Pod Security level."""
    bed.kubectl("create", "namespace", "citywok-restricted")
    bed.kubectl("label", "namespace", "citywok-restricted", "pod-security.kubernetes.io/enforce=restricted")
    manifest = helm(bed, "template", "full", str(CHART), "--namespace", "citywok-restricted", "-f", str(FULL_VALUES),
                    *NO_MONITORING, "--show-only", "templates/tests/test-api.yaml")
    pod = yaml.safe_load(manifest)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"][1] == "http://episodes.citywok-restricted.svc:8000/api/v1/test"
    out = bed.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert out.returncode == 0 and "created (server dry run)" in out.stdout, out.stderr
    weakened = manifest.replace("runAsNonRoot: true", "runAsNonRoot: false")
    refused = bed.kubectl("apply", "--dry-run=server", "-f", "-", input=weakened, check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, "the namespace really enforces"
