"""``spec.autoscaling`` -> the matcher's HorizontalPodAutoscaler, and who owns the Deployment's replicas.

Pure functions over plain dicts. While the block is set, the HPA (``autoscaling/v2``) owns
``Deployment.spec.replicas``: the operator leaves the field out of what it applies. Server-side apply
resets a field to its default (1 for ``replicas``) when its only owner stops applying it, so before the
operator lets go it hands the current count to a second field manager (:data:`HANDOVER_MANAGER`), the
pattern the Kubernetes docs give for handing ``replicas`` to an HPA. The HPA controller's first scale
then takes the field over.

Targets:
  * ``cpuUtilization``: percent of the *matcher* container's CPU request (a ``ContainerResource``
    metric, so the idle fetcher sidecar does not dilute it); needs metrics-server;
  * ``requestsPerSecond``: identify requests per second per pod, the ``Pods`` metric
    :data:`RPS_METRIC` served by the custom-metrics API (the chart's prometheus-adapter rule derives it
    from the matcher's ``citywok_http_requests_total{route="/api/v1/identify"}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HPA_API_VERSION = "autoscaling/v2"
RPS_METRIC = "citywok_identify_requests_per_second"
MATCHER_CONTAINER = "matcher"
HANDOVER_MANAGER = "citywok-operator-handover"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Autoscaling:
    """Bounds and one target (exactly one of the two is set)."""

    min_replicas: int
    max_replicas: int
    cpu_utilization: int | None = None
    requests_per_second: float | None = None


def quantity(value: float) -> str:
    """A Kubernetes quantity for a non-negative number: whole numbers as such, else in milli-units."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def metric(a: Autoscaling) -> Obj:
    """The HPA's one metric for the target that is set."""
    if a.cpu_utilization is not None:
        return {"type": "ContainerResource", "containerResource": {
            "name": "cpu", "container": MATCHER_CONTAINER,
            "target": {"type": "Utilization", "averageUtilization": a.cpu_utilization}}}
    assert a.requests_per_second is not None
    return {"type": "Pods", "pods": {
        "metric": {"name": RPS_METRIC},
        "target": {"type": "AverageValue", "averageValue": quantity(a.requests_per_second)}}}


def hpa_spec(a: Autoscaling, deployment: str) -> Obj:
    """The HPA's ``spec``: scale the matcher Deployment ``deployment`` between the bounds."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": a.min_replicas,
        "maxReplicas": a.max_replicas,
        "metrics": [metric(a)],
    }


def replicas_managers(deployment: Obj) -> set[str]:
    """Field managers that own ``spec.replicas`` of a Deployment as the API server returned it."""
    out = set()
    for entry in (deployment.get("metadata") or {}).get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in spec and entry.get("manager"):
            out.add(entry["manager"])
    return out


def needs_handover(deployment: Obj | None, manager: str) -> bool:
    """True when ``manager`` still owns ``replicas`` and dropping it would reset the count to 1."""
    return deployment is not None and manager in replicas_managers(deployment)


def handover(deployment: Obj) -> Obj:
    """The apply body that makes :data:`HANDOVER_MANAGER` co-own today's replica count."""
    meta = deployment["metadata"]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": (deployment.get("spec") or {}).get("replicas", 1)}}


def current_replicas(deployment: Obj | None, a: Autoscaling) -> int:
    """The count the pods are being steered to: what the HPA last set on the Deployment.

    Rollout completion and the Available message count against this, not ``spec.replicas``, so an HPA
    scaling mid-rollout neither stalls the rollout nor trips its deadline.
    """
    live = ((deployment or {}).get("spec") or {}).get("replicas")
    return live if isinstance(live, int) else a.min_replicas
