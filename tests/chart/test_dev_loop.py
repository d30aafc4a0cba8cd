"""skaffold.yaml, hack/kind and deploy.mk: docker, kind and skaffold do not run here, so what is checked
is that the files parse, point at what exists, and that what they deploy renders and validates."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.chart.chartkit import CHART, ROOT, one, render
from tests.support import free_port

SKAFFOLD = ROOT / "skaffold.yaml"
KIND = ROOT / "hack" / "kind"


def skaffold() -> dict:
    return yaml.safe_load(SKAFFOLD.read_text())


def test_skaffold_yaml_parses_with_the_expected_schema_version() -> None:
    cfg = skaffold()
    assert cfg["apiVersion"] == "skaffold/v4beta13" and cfg["kind"] == "Config"
    artifacts = {a["image"]: a for a in cfg["build"]["artifacts"]}
    assert set(artifacts) == {"citywok", "citywok-dev-s3"}
    for a in artifacts.values():
        assert (ROOT / a["context"] / a["docker"]["dockerfile"]).is_file()
    assert cfg["build"]["local"]["push"] is False, "kind loads local images; nothing is pushed"
    (release,) = cfg["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    assert release["setValueTemplates"]["image.repository"] == "{{.IMAGE_REPO_citywok}}"
    assert release["setValueTemplates"]["image.tag"] == "{{.IMAGE_TAG_citywok}}"
    for path in release["valuesFiles"] + cfg["manifests"]["rawYaml"]:
        assert (ROOT / path).is_file(), path


@pytest.mark.go
def test_dev_values_render_a_fingerprintdb_that_reads_the_dev_s3() -> None:
    objs = render(values=[KIND / "values.yaml"], sets={"image.repository": "citywok", "image.tag": "dev"})
    fpdb = one(objs, "FingerprintDB", "citywok")
    s3 = {d["kind"]: d for d in yaml.safe_load_all((KIND / "s3.yaml").read_text())}
    svc_port = s3["Service"]["spec"]["ports"][0]["port"]
    assert fpdb["spec"]["source"]["endpoint"] == f"http://{s3['Service']['metadata']['name']}:{svc_port}"
    assert fpdb["spec"]["source"]["credentialsSecret"]["name"] == s3["Secret"]["metadata"]["name"]
    assert set(s3["Secret"]["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert fpdb["spec"]["matcher"]["image"] == "citywok:dev"
    assert s3["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == "citywok-dev-s3"
    assert "--standalone" in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]

    # The dev server's own command, run here: the bucket the FingerprintDB names exists once it is up.
    cmd = json.loads(DockerfileParser(str(KIND / "s3.Dockerfile")).cmd)
    port = free_port()
    server = subprocess.Popen(cmd, env={**os.environ, "PORT": str(port)}, stdout=subprocess.PIPE, text=True)
    try:
        lines = [server.stdout.readline().strip() for _ in range(2)]  # moto's own line, then ours
        assert lines[-1] == f"s3 dev server on :{port}, bucket citywok", lines
        s3_client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                 aws_access_key_id="dev", aws_secret_access_key="dev")
        assert [b["Name"] for b in s3_client.list_buckets()["Buckets"]] == [fpdb["spec"]["source"]["bucket"]]
    finally:
        server.kill()
        server.wait()


def test_deploy_mk_targets_expand_with_the_main_makefile() -> None:
    """`make -n` expands every recipe without running it (no docker or kind needed)."""
    targets = ["kind-up", "deploy", "dev", "logs", "port-forward", "chart-sync", "chart-lint", "tools"]
    proc = subprocess.run(["make", "-n", "-f", "Makefile", *targets], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    out = proc.stdout
    assert "kind create cluster --name citywok --config hack/kind/cluster.yaml" in out
    assert "skaffold run --kube-context kind-citywok --namespace citywok" in out
    assert "port-forward svc/citywok 8000:8000" in out
    assert "kubectl --context kind-citywok apply --server-side -f charts/citywok/crds/" in out
    assert "--kube-version 1." in out
    assert yaml.safe_load((KIND / "cluster.yaml").read_text())["name"] == "citywok"
