"""spec.podTemplate and the containers' env/envFrom -> every matcher pod (pure: no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from citywok.operator import desired, podtemplate
from citywok.operator.reconcile import selector
from citywok.operator.spec import SpecError, parse

BASE = {"version": "v1", "source": {"bucket": "fingerprints-prod", "credentialsSecret": {"name": "r2-keys"}},
        "replicas": 2}
POD = {
    "metadata": {"labels": {"team": "audio"}, "annotations": {"cost-center": "tv"}},
    "imagePullSecrets": [{"name": "ghcr-pull"}, {"name": "mirror-pull"}, {"name": "ghcr-pull"}],
    "nodeSelector": {"pool": "cpu"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "citywok", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"team": "audio"}}}],
    "priorityClassName": "serving",
}
MATCHER = {"env": [{"name": "URL_ALLOW_HOSTS", "value": "cdn.example.com"},
                   {"name": "INGEST_TOKEN", "valueFrom": {"secretKeyRef": {"name": "ingest", "key": "token"}}},
                   {"name": "WORKERS", "value": "3"}],
           "envFrom": [{"secretRef": {"name": "sentry"}}, {"configMapRef": {"name": "limits"}, "prefix": "CW_"}]}


def template(**over: object) -> dict:
    return desired.pod_template(parse("db", "tv", {**BASE, **over}), "v1")


def containers(tpl: dict) -> dict[str, dict]:
    return {c["name"]: c for c in tpl["spec"]["initContainers"] + tpl["spec"]["containers"]}


def test_pod_knobs_reach_the_matcher_pod() -> None:
    tpl = template(podTemplate=POD)
    s = tpl["spec"]
    assert s["imagePullSecrets"] == [{"name": "ghcr-pull"}, {"name": "mirror-pull"}], "deduplicated, in order"
    assert s["nodeSelector"] == {"pool": "cpu"}
    assert s["tolerations"] == POD["tolerations"]
    assert s["affinity"] == POD["affinity"]
    assert s["priorityClassName"] == "serving"
    zone, host = s["topologySpreadConstraints"]
    assert zone["labelSelector"] == {"matchLabels": desired.selector_labels("db")}, "defaults to our pods"
    assert host["labelSelector"] == {"matchLabels": {"team": "audio"}}, "its own selector is kept"
    assert tpl["metadata"]["labels"]["team"] == "audio"
    assert tpl["metadata"]["labels"]["app.kubernetes.io/instance"] == "db"
    assert tpl["metadata"]["annotations"]["cost-center"] == "tv"
    assert tpl["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_without_knobs_the_template_has_none_of_the_fields() -> None:
    s = template()["spec"]
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                "priorityClassName"):
        assert key not in s
    assert all("envFrom" not in c for c in containers(template()).values())


def test_matcher_env_and_env_from_go_to_the_matcher_only() -> None:
    c = containers(template(matcher=MATCHER))
    env = {e["name"]: e for e in c["matcher"]["env"]}
    assert env["URL_ALLOW_HOSTS"] == {"name": "URL_ALLOW_HOSTS", "value": "cdn.example.com"}
    assert env["INGEST_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "ingest", "key": "token"}}
    assert [e for e in c["matcher"]["env"] if e["name"] == "WORKERS"] == [{"name": "WORKERS", "value": "3"}], \
        "the spec's WORKERS replaces the operator's default, once"
    assert env["DATA_DIR"]["value"] == desired.DATA_DIR
    assert c["matcher"]["envFrom"] == MATCHER["envFrom"]
    for name in ("fetch", "fetcher"):
        assert "envFrom" not in c[name]
        assert not {"URL_ALLOW_HOSTS", "INGEST_TOKEN"} & {e["name"] for e in c[name]["env"]}


def test_fetcher_env_goes_to_init_and_sidecar() -> None:
    extra = {"env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
             "envFrom": [{"configMapRef": {"name": "proxy"}}]}
    c = containers(template(fetcher=extra))
    for name in ("fetch", "fetcher"):
        assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c[name]["env"]
        assert c[name]["envFrom"] == [{"configMapRef": {"name": "proxy"}}]
    assert "envFrom" not in c["matcher"]


@pytest.mark.parametrize(("over", "message"), [
    ({"matcher": {"env": [{"name": "INGEST_TOKEN", "value": "hunter2"}]}}, "looks like a credential"),
    ({"matcher": {"env": [{"name": "SENTRY_DSN", "value": "https://k@sentry"}]}}, "looks like a credential"),
    ({"fetcher": {"env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}}, "set by the operator"),
    ({"matcher": {"env": [{"name": "DATA_DIR", "value": "/elsewhere"}]}}, "set by the operator"),
    ({"matcher": {"env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}}, "more than once"),
    ({"matcher": {"env": [{"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}},
     "both value and valueFrom"),
    ({"matcher": {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {}, "fieldRef": {}}}]}}, "exactly one of"),
    ({"matcher": {"env": [{"name": "MAX_UPLOAD_BYTES", "value": 100}]}}, "must be a string"),
    ({"matcher": {"envFrom": [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]}}, "exactly one named"),
    ({"matcher": {"envFrom": [{"prefix": "X_"}]}}, "exactly one named"),
    ({"podTemplate": {"metadata": {"labels": {"app.kubernetes.io/instance": "other"}}}}, "set by the operator"),
    ({"podTemplate": {"metadata": {"annotations": {"citywok.io/served-version": "v9"}}}}, "reserved"),
    ({"podTemplate": {"imagePullSecrets": [{"name": ""}]}}, "needs a name"),
    ({"podTemplate": {"nodeSelector": {"pool": 1}}}, "map names to strings"),
])
def test_knobs_the_operator_cannot_honour_are_refused_with_the_field(over: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse("db", "tv", {**BASE, **over})


def test_a_credential_by_reference_is_accepted() -> None:
    spec = parse("db", "tv", {**BASE, "matcher": {"env": [
        {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}}]}})
    assert spec.matcher.extra.env[0]["valueFrom"]["secretKeyRef"]["name"] == "sentry"


def test_own_label_keys_are_the_labels_the_operator_sets() -> None:
    assert set(desired.labels("db")) == podtemplate.OWN_LABEL_KEYS


def test_status_selector_selects_the_deployment_pods() -> None:
    sel = dict(kv.split("=", 1) for kv in selector("db").split(","))
    assert sel == desired.selector_labels("db")


def test_crd_documents_every_knob_and_repeats_the_credential_rule() -> None:
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "fingerprintdb.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    pod = spec["podTemplate"]
    assert pod["description"]
    assert set(pod["properties"]) == {"metadata", "imagePullSecrets", "nodeSelector", "priorityClassName",
                                      "tolerations", "affinity", "topologySpreadConstraints"}
    for part in ("matcher", "fetcher"):
        env = spec[part]["properties"]["env"]
        assert env["description"] and spec[part]["properties"]["envFrom"]["description"]
        rules = " ".join(r["rule"] for r in env["items"]["x-kubernetes-validations"])
        assert podtemplate.CREDENTIAL_NAME.pattern in rules.replace("(?i)", "")
