"""spec.autoscaling -> the HPA, the Deployment without replicas, and the replicas handover (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from citywok.operator import autoscaling, desired
from citywok.operator.autoscaling import HANDOVER_MANAGER, RPS_METRIC, Autoscaling
from citywok.operator.kube import FIELD_MANAGER
from citywok.operator.spec import SpecError, parse

OWNER = {"apiVersion": "citywok.io/v1alpha1", "kind": "FingerprintDB",
         "metadata": {"name": "sp", "namespace": "tv", "uid": "1234-uid"}}
BASE: dict[str, Any] = {"version": "v1", "source": {"bucket": "fingerprints-prod"}, "replicas": 3,
                        "matcher": {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}}
CPU = {"minReplicas": 2, "maxReplicas": 8, "target": {"cpuUtilization": 70}}
RPS = {"minReplicas": 1, "maxReplicas": 5, "target": {"requestsPerSecond": 2.5}}


def spec(**over: Any):
    return parse("sp", "tv", {**BASE, **over})


def by_kind(objs: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objs}


def test_no_block_means_no_hpa_and_the_operator_sets_replicas() -> None:
    s = spec()
    assert s.autoscaling is None
    objs = by_kind(desired.children(s, "v1", OWNER))
    assert "HorizontalPodAutoscaler" not in objs
    assert objs["Deployment"]["spec"]["replicas"] == 3


def test_cpu_target_maps_to_the_matcher_containers_utilisation() -> None:
    s = spec(autoscaling=CPU)
    assert s.autoscaling == Autoscaling(2, 8, cpu_utilization=70)
    hpa = by_kind(desired.children(s, "v1", OWNER))["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sp"},
        "minReplicas": 2, "maxReplicas": 8,
        "metrics": [{"type": "ContainerResource", "containerResource": {
            "name": "cpu", "container": "matcher",
            "target": {"type": "Utilization", "averageUtilization": 70}}}],
    }
    # the container the metric names is the matcher container of the pod template
    template = desired.deployment(s, "v1", OWNER)["spec"]["template"]["spec"]
    assert "matcher" in [c["name"] for c in template["containers"]]


def test_rps_target_maps_to_the_custom_pods_metric_as_a_quantity() -> None:
    hpa = desired.horizontal_pod_autoscaler(spec(autoscaling=RPS), OWNER)
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 5
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": RPS_METRIC}, "target": {"type": "AverageValue", "averageValue": "2500m"}}}]
    whole = desired.horizontal_pod_autoscaler(
        spec(autoscaling={**RPS, "target": {"requestsPerSecond": 40}}), OWNER)
    assert whole["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "40"


@pytest.mark.parametrize(("value", "text"), [(1, "1"), (40.0, "40"), (0.5, "500m"), (2.25, "2250m"),
                                             (0.001, "1m")])
def test_quantity(value: float, text: str) -> None:
    assert autoscaling.quantity(value) == text


def test_hpa_is_owned_labelled_and_named_like_the_deployment() -> None:
    hpa = desired.horizontal_pod_autoscaler(spec(autoscaling=CPU), OWNER)
    meta = hpa["metadata"]
    assert (meta["name"], meta["namespace"]) == ("sp", "tv")
    assert meta["labels"][desired.INSTANCE_LABEL] == "sp"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == desired.MANAGED_BY
    (ref,) = meta["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("FingerprintDB", "sp", "1234-uid", True)


def test_under_autoscaling_the_deployment_leaves_replicas_to_the_hpa() -> None:
    s = spec(autoscaling=CPU)
    dep = by_kind(desired.children(s, "v1", OWNER))["Deployment"]
    assert "replicas" not in dep["spec"]
    # a Deployment that does not exist yet starts at the given count instead of the API default of 1
    seeded = by_kind(desired.children(s, "v1", OWNER, seed_replicas=2))["Deployment"]
    assert seeded["spec"]["replicas"] == 2
    # the rest of the Deployment is the same as without autoscaling (the surge, the template)
    plain = desired.deployment(spec(), "v1", OWNER)
    assert {k: v for k, v in plain["spec"].items() if k != "replicas"} == dep["spec"]
    assert plain["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_the_pdb_does_not_depend_on_the_count() -> None:
    """maxUnavailable, not minAvailable: stays right whatever count the HPA picks."""
    a = by_kind(desired.children(spec(autoscaling=CPU), "v1", OWNER))["PodDisruptionBudget"]
    b = by_kind(desired.children(spec(), "v1", OWNER))["PodDisruptionBudget"]
    assert a == b and a["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize(("block", "message"), [
    ({**CPU, "minReplicas": 0}, "minReplicas must be an integer >= 1"),
    ({**CPU, "minReplicas": True}, "minReplicas must be an integer >= 1"),
    ({**CPU, "maxReplicas": 1}, "maxReplicas must be an integer >= minReplicas (2)"),
    ({"minReplicas": 2, "target": {"cpuUtilization": 70}}, "maxReplicas must be an integer"),
    ({**CPU, "target": {}}, "exactly one of cpuUtilization, requestsPerSecond"),
    ({**CPU, "target": {"cpuUtilization": 70, "requestsPerSecond": 3}}, "exactly one of"),
    ({**CPU, "target": {"cpuUtilization": 0}}, "cpuUtilization must be a percentage >= 1"),
    ({**CPU, "target": {"cpuUtilization": "70%"}}, "cpuUtilization must be a percentage"),
    ({**RPS, "target": {"requestsPerSecond": 0}}, "requestsPerSecond must be a number > 0"),
    ({**RPS, "target": {"requestsPerSecond": "10"}}, "requestsPerSecond must be a number > 0"),
])
def test_bad_blocks_are_refused_with_the_field_named(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="spec.autoscaling") as e:
        spec(autoscaling=block)
    assert message in str(e.value)


def test_cpu_target_needs_a_cpu_request_on_the_matcher() -> None:
    with pytest.raises(SpecError, match=r"needs spec.matcher.resources.requests.cpu"):
        spec(autoscaling=CPU, matcher={"resources": {"requests": {"memory": "1Gi"}}})
    assert spec(autoscaling=RPS, matcher={}).autoscaling == Autoscaling(1, 5, requests_per_second=2.5)


def managed(*entries: tuple[str, dict]) -> dict[str, Any]:
    return {"metadata": {"name": "sp", "namespace": "tv", "managedFields": [
        {"manager": m, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": f} for m, f in entries]},
        "spec": {"replicas": 4}}


def test_handover_only_while_the_operator_still_owns_replicas() -> None:
    ours = managed((FIELD_MANAGER, {"f:spec": {"f:replicas": {}, "f:template": {}}}))
    assert autoscaling.replicas_managers(ours) == {FIELD_MANAGER}
    assert autoscaling.needs_handover(ours, FIELD_MANAGER)
    assert autoscaling.handover(ours) == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": {"name": "sp", "namespace": "tv"},
                                          "spec": {"replicas": 4}}
    released = managed((FIELD_MANAGER, {"f:spec": {"f:template": {}}}),
                       (HANDOVER_MANAGER, {"f:spec": {"f:replicas": {}}}))
    assert not autoscaling.needs_handover(released, FIELD_MANAGER)
    scaled = managed((FIELD_MANAGER, {"f:spec": {"f:template": {}}}),
                     ("kube-controller-manager", {"f:spec": {"f:replicas": {}}}))
    assert autoscaling.replicas_managers(scaled) == {"kube-controller-manager"}
    assert not autoscaling.needs_handover(None, FIELD_MANAGER)
    assert not autoscaling.needs_handover({"metadata": {}}, FIELD_MANAGER)


def test_current_replicas_follows_the_deployment_not_spec_replicas() -> None:
    a = Autoscaling(2, 8, cpu_utilization=70)
    assert autoscaling.current_replicas({"spec": {"replicas": 5}}, a) == 5
    assert autoscaling.current_replicas(None, a) == 2, "not created yet: it will start at minReplicas"
    assert autoscaling.current_replicas({"spec": {}}, a) == 2


def test_rbac_lets_the_operator_apply_watch_and_delete_the_hpa() -> None:
    from pathlib import Path

    import yaml
    rules = yaml.safe_load((Path(__file__).parents[2] / "operator" / "rbac.yaml").read_text())["rules"]
    verbs = {v for r in rules if "autoscaling" in r["apiGroups"] and "horizontalpodautoscalers" in r["resources"]
             for v in r["verbs"]}
    assert {"get", "list", "watch", "create", "patch", "delete"} <= verbs
