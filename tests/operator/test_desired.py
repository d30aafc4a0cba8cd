"""Spec -> child objects: names, owner references, the pod contract, strategies, storage, credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from citywok.operator import desired
from citywok.operator.spec import SpecError, parse

OWNER = {"apiVersion": "citywok.io/v1alpha1", "kind": "FingerprintDB",
         "metadata": {"name": "sp", "namespace": "tv", "uid": "1234-uid"}}
BASE = {"version": "v1", "source": {"bucket": "fingerprints-prod", "endpoint": "https://r2.example.com",
                                    "credentialsSecret": {"name": "r2-keys"}}, "replicas": 3}


def spec(**over: object):
    return parse("sp", "tv", {**BASE, **over})


def by_kind(objs: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objs}


def containers(template: dict) -> dict[str, dict]:
    s = template["spec"]
    return {c["name"]: c for c in s["initContainers"] + s["containers"]}


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    objs = desired.children(spec(), "v1", OWNER)
    assert sorted(o["kind"] for o in objs) == sorted(desired.names("sp"))
    for o in objs:
        meta = o["metadata"]
        assert meta["namespace"] == "tv"
        assert meta["name"] == desired.names("sp")[o["kind"]]
        assert meta["labels"][desired.INSTANCE_LABEL] == "sp"
        (ref,) = meta["ownerReferences"]
        assert ref == {"apiVersion": "citywok.io/v1alpha1", "kind": "FingerprintDB", "name": "sp",
                       "uid": "1234-uid", "controller": True, "blockOwnerDeletion": True}


def test_credentials_only_as_secret_references() -> None:
    objs = desired.children(spec(), "v1", OWNER)
    text = json.dumps(objs)
    env = containers(by_kind(objs)["Deployment"]["spec"]["template"])["fetcher"]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"AWS_ACCESS_KEY_ID": {"name": "r2-keys", "key": "AWS_ACCESS_KEY_ID"},
                    "AWS_SECRET_ACCESS_KEY": {"name": "r2-keys", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert '"value": "AWS_' not in text
    matcher_env = containers(by_kind(objs)["Deployment"]["spec"]["template"])["matcher"]["env"]
    assert not any(e["name"].startswith("AWS_") for e in matcher_env), "the matcher never sees the keys"


def test_pod_contract_inplace() -> None:
    dep = desired.deployment(spec(), "v1", OWNER)
    tpl = dep["spec"]["template"]
    c = containers(tpl)
    assert c["fetch"]["args"] == ["fetch", "--once", "--version-file", "/etc/citywok/desired/version"]
    assert c["fetcher"]["args"] == ["fetch", "--watch", "--metrics-port", "9102",
                                    "--version-file", "/etc/citywok/desired/version"]
    assert c["fetcher"]["ports"] == [{"name": "fetcher-metrics", "containerPort": 9102, "protocol": "TCP"}]
    assert c["matcher"]["args"] == ["serve"]
    assert c["matcher"]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["matcher"]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["matcher"]["ports"][0]["containerPort"] == 8000
    for name in ("fetch", "fetcher", "matcher"):
        mounts = {m["name"]: m["mountPath"] for m in c[name]["volumeMounts"]}
        assert mounts["data"] == "/data"
        envs = {e["name"]: e for e in c[name]["env"]}
        assert envs["DATA_DIR"]["value"] == "/data"
        assert envs["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert envs["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert {m["name"] for m in c["fetcher"]["volumeMounts"]} == {"data", "tmp", "desired"}
    vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
    assert vols["desired"]["configMap"]["name"] == "sp-desired"
    assert vols["data"] == {"name": "data", "emptyDir": {}}
    assert tpl["spec"]["serviceAccountName"] == "sp-fetcher"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["replicas"] == 3


def test_inplace_template_does_not_change_with_the_version() -> None:
    a = desired.deployment(spec(), "v1", OWNER)
    b = desired.deployment(spec(), "v2", OWNER)
    assert a == b
    assert desired.configmap(spec(), "v2", OWNER)["data"] == {"version": "v2"}


def test_restart_template_carries_the_version() -> None:
    s = spec(rollout={"strategy": "Restart"})
    a = desired.deployment(s, "v1", OWNER)["spec"]["template"]
    b = desired.deployment(s, "v2", OWNER)["spec"]["template"]
    assert a != b
    assert b["metadata"]["annotations"][desired.VERSION_ANNOTATION] == "v2"
    assert containers(b)["fetch"]["args"] == ["fetch", "--once", "--version", "v2"]
    assert "desired" not in {v["name"] for v in b["spec"]["volumes"]}


def test_storage_variants() -> None:
    def data(**st: object) -> dict:
        tpl = desired.pod_template(spec(storage=st), "v1")
        return next(v for v in tpl["spec"]["volumes"] if v["name"] == "data")

    assert data(type="EmptyDir", size="2Gi") == {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}}
    assert data(type="PersistentVolumeClaim", claimName="shards") == {
        "name": "data", "persistentVolumeClaim": {"claimName": "shards"}}
    eph = data(type="PersistentVolumeClaim", size="5Gi", storageClassName="fast")["ephemeral"]
    assert eph["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert eph["volumeClaimTemplate"]["spec"]["storageClassName"] == "fast"


def test_seasons_and_images_and_resources() -> None:
    s = spec(seasons=[3, 1, 2], matcher={"image": "m:1", "resources": {"limits": {"memory": "1Gi"}}},
             fetcher={"image": "f:1"})
    c = containers(desired.pod_template(s, "v1"))
    assert {"name": "SEASONS", "value": "1,2,3"} in c["fetcher"]["env"]
    assert c["matcher"]["image"] == "m:1" and c["fetcher"]["image"] == "f:1"
    assert c["matcher"]["resources"] == {"limits": {"memory": "1Gi"}}
    c = containers(desired.pod_template(spec(maxSeasons=4), "v1"))
    assert {"name": "MAX_SEASONS", "value": "4"} in c["matcher"]["env"]
    assert containers(desired.pod_template(spec(matcher={"image": "m:2"}), "v1"))["fetcher"]["image"] == "m:2"


def test_fetcher_role_binding() -> None:
    kinds = by_kind(desired.children(spec(), "v1", OWNER))
    assert kinds["Role"]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    assert kinds["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "sp-fetcher",
                                                 "namespace": "tv"}]
    assert kinds["Service"]["spec"]["selector"] == desired.selector_labels("sp")
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == desired.selector_labels("sp")


@pytest.mark.parametrize(("over", "message"), [
    ({"version": "../etc"}, "not a valid version"),
    ({"version": "current"}, "not a valid version"),
    ({"replicas": -1}, "replicas"),
    ({"seasons": [1], "maxSeasons": 3}, "either"),
    ({"rollout": {"strategy": "BlueGreen"}}, "strategy"),
    ({"storage": {"type": "PersistentVolumeClaim"}}, "claimName or size"),
    ({"source": {}}, "bucket"),
])
def test_bad_specs_are_refused_with_a_reason(over: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(**over)


def test_long_name_refused() -> None:
    with pytest.raises(SpecError, match="longer than"):
        parse("x" * 51, "tv", BASE)


def test_crd_schema_matches_what_the_operator_reads() -> None:
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "fingerprintdb.yaml").read_text())
    (ver,) = crd["spec"]["versions"]
    props = ver["schema"]["openAPIV3Schema"]["properties"]
    spec_props = props["spec"]["properties"]
    assert set(spec_props) >= {"version", "source", "seasons", "maxSeasons", "replicas", "matcher",
                               "fetcher", "storage", "rollout"}
    assert spec_props["rollout"]["properties"]["strategy"]["enum"] == ["InPlace", "Restart"]
    assert spec_props["replicas"]["minimum"] == 0
    assert ver["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}
    assert crd["spec"]["names"]["shortNames"] == ["fpdb"]
    cols = {c["name"]: c["jsonPath"] for c in ver["additionalPrinterColumns"]}
    assert cols["Version"] == ".spec.version" and cols["Serving"] == ".status.currentVersion"
    status_props = props["status"]["properties"]
    assert set(status_props) >= {"observedGeneration", "phase", "conditions", "servedVersions",
                                 "targetVersion", "currentVersion", "lastGoodVersion", "readyReplicas",
                                 "updatedReplicas", "replicas", "selector"}


@pytest.mark.parametrize(("resources", "workers"), [
    ({}, "1"),
    ({"requests": {"cpu": "250m"}}, "1"),
    ({"requests": {"cpu": "1500m"}}, "2"),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": "3"}}, "3"),
    ({"limits": {"memory": "1Gi"}, "requests": {"cpu": 2}}, "2"),
])
def test_matcher_workers_follow_the_cpus_it_is_given(resources: dict, workers: str) -> None:
    c = containers(desired.pod_template(spec(matcher={"resources": resources}), "v1"))
    assert {"name": "WORKERS", "value": workers} in c["matcher"]["env"]
    assert not any(e["name"] == "WORKERS" for e in c["fetcher"]["env"])
