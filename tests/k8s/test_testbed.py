"""End-to-end proof that the Kubernetes test bed is a real, well-behaved control plane."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import yaml

from tests.k8s.testbed import TESTENV_SCRIPT, TestBed, TestBedError, pinned_versions
from tests.support import wait_for


def _deployment(namespace: str, version: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "registry.k8s.io/pause:3.10",
                                "env": [{"name": "VERSION", "value": version}],
                            }
                        ]
                    },
                },
            },
        }
    )


def _pods(k8s: TestBed, namespace: str) -> list[dict]:
    return json.loads(k8s.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout)[
        "items"
    ]


def _is_ready(pod: dict) -> bool:
    conditions = pod["status"].get("conditions", [])
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def _env_version(pod: dict) -> str:
    return next(e["value"] for e in pod["spec"]["containers"][0]["env"] if e["name"] == "VERSION")


def _processes_under(directory: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `directory` (every component's does)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(directory) in arg for arg in cmdline):
            found.append(proc)
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.k8s
def test_api_server_and_kubectl_report_the_pinned_version(k8s: TestBed) -> None:
    versions = json.loads(k8s.kubectl("version", "-o", "json").stdout)
    pinned = pinned_versions()["K8S_VERSION"]
    assert versions["serverVersion"]["gitVersion"] == pinned
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert versions["serverVersion"]["gitTreeState"] == "clean"


@pytest.mark.k8s
def test_deployment_rolls_out_then_rolls_to_a_new_template_on_fake_nodes(k8s: TestBed) -> None:
    namespace = "testbed-rollout"
    k8s.kubectl("create", "namespace", namespace)
    try:
        k8s.kubectl("apply", "-f", "-", input=_deployment(namespace, "one"))
        k8s.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
        first = _pods(k8s, namespace)
        assert len(first) == 2
        assert all(_is_ready(pod) for pod in first)
        assert {pod["spec"]["nodeName"] for pod in first} <= set(k8s.node_names)
        assert all(pod["status"].get("podIP") for pod in first)

        k8s.kubectl("set", "env", "deployment/web", "-n", namespace, "VERSION=two")
        k8s.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")

        def rolled() -> bool:
            pods = _pods(k8s, namespace)
            return len(pods) == 2 and all(_is_ready(p) and _env_version(p) == "two" for p in pods)

        wait_for(rolled, 60, "the old pods to go and two new Ready pods to remain", interval=0.3)
        second = _pods(k8s, namespace)
        assert {p["metadata"]["name"] for p in second}.isdisjoint(p["metadata"]["name"] for p in first)
        deployment = json.loads(k8s.kubectl("get", "deployment/web", "-n", namespace, "-o", "json").stdout)
        assert deployment["metadata"]["generation"] == 2
        assert deployment["status"]["updatedReplicas"] == deployment["status"]["readyReplicas"] == 2
    finally:
        k8s.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.k8s
def test_rbac_forbids_a_service_account_until_a_role_grants_it(k8s: TestBed) -> None:
    namespace = "testbed-rbac"
    subject = f"system:serviceaccount:{namespace}:nobody"
    k8s.kubectl("create", "namespace", namespace)
    try:
        k8s.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
        denied = k8s.kubectl("get", "pods", "-n", namespace, f"--as={subject}", check=False)
        assert denied.returncode != 0
        assert "Error from server (Forbidden)" in denied.stderr
        assert f'User "{subject}" cannot list resource "pods"' in denied.stderr

        # The service account's own token (signed by the test bed's SA key) gets a plain HTTP 403.
        token = k8s.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
        request = urllib.request.Request(
            f"{k8s.server}/api/v1/namespaces/{namespace}/pods", headers={"Authorization": f"Bearer {token}"}
        )
        context = ssl.create_default_context(cafile=str(k8s.ca_cert))
        with pytest.raises(urllib.error.HTTPError) as forbidden:
            urllib.request.urlopen(request, context=context, timeout=10)
        assert forbidden.value.code == 403

        k8s.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list", "--resource=pods")
        k8s.kubectl(
            "create",
            "rolebinding",
            "nobody-reads",
            "-n",
            namespace,
            "--role=pod-reader",
            f"--serviceaccount={namespace}:nobody",
        )
        wait_for(
            lambda: k8s.kubectl("get", "pods", "-n", namespace, f"--as={subject}", check=False).returncode == 0,
            15,
            "the RoleBinding to take effect",
            interval=0.3,
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as allowed:
            assert allowed.status == 200
        still_denied = k8s.kubectl("get", "secrets", "-n", namespace, f"--as={subject}", check=False)
        assert "(Forbidden)" in still_denied.stderr
    finally:
        k8s.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.k8s
def test_stop_leaves_no_process_port_or_file_behind(k8s: TestBed) -> None:
    bed = TestBed(k8s.bin_dir, nodes=1).start()
    try:
        assert bed.startup_seconds is not None
        pids = bed.pids()
        children = {child.pid for child in psutil.Process().children(recursive=True)}
        assert len(pids) == 5 and set(pids) <= children
        port = urlparse(bed.server).port
        assert port is not None and _port_open(port)
        assert bed.kubectl("get", "nodes", "-o", "name").stdout.split() == ["node/kwok-node-0"]
    finally:
        bed.stop()
    assert bed.dir is not None and not bed.dir.exists()
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not _processes_under(bed.dir)
    assert not _port_open(port)
    # The session's control plane, started from the same binaries, is untouched.
    assert k8s.kubectl("get", "--raw", "/readyz").stdout == "ok"


@pytest.mark.k8s
def test_a_component_that_fails_to_start_is_reported_with_its_log_and_cleaned_up(k8s: TestBed) -> None:
    bed = TestBed(k8s.bin_dir, extra_args={"kube-apiserver": ["--no-such-flag"]})
    with pytest.raises(TestBedError) as failure:
        bed.start()
    try:
        message = str(failure.value)
        assert "kube-apiserver exited with code" in message
        assert "unknown flag: --no-such-flag" in message  # the tail of kube-apiserver's own log
        assert bed.dir is not None and str(bed.dir) in message  # logs kept for the post-mortem
        assert not _processes_under(bed.dir)
        assert bed.pids() == []
    finally:
        if bed.dir is not None:
            shutil.rmtree(bed.dir, ignore_errors=True)


@pytest.mark.k8s
def test_testenv_script_is_a_quick_no_op_when_cached(k8s: TestBed) -> None:
    result = subprocess.run(["bash", str(TESTENV_SCRIPT)], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == str(k8s.bin_dir)
    assert "cached:" in result.stderr
    pins = pinned_versions()

    def version_of(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert version_of(str(k8s.bin_dir / "helm"), "version", "--short").startswith(pins["HELM_VERSION"])
    assert version_of(str(k8s.bin_dir / "kubeconform"), "-v") == pins["KUBECONFORM_VERSION"]


def test_testenv_script_without_go_fails_with_a_clear_message(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    result = subprocess.run(
        ["/bin/bash", str(TESTENV_SCRIPT)],
        capture_output=True,
        text=True,
        env={"PATH": str(tools), "HOME": str(tmp_path), "CITYWOK_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode != 0
    assert "'go' is not on PATH" in result.stderr
    assert result.stdout == ""


def test_missing_binaries_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TestBedError, match=r"lacks etcd, kube-apiserver.*run hack/k8s-testenv\.sh"):
        TestBed(tmp_path)
