"""One reconcile of one FingerprintDB: read, decide (pure), apply children, write status.

Level-based: everything is derived from the resource, its status and its pods as they are now, so
running it again (or after an operator restart) changes nothing that is already right.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from citywok.operator import autoscaling, desired, metrics, status
from citywok.operator.kube import Kube
from citywok.operator.rollout import Decision, Event, Intent, Record, decide
from citywok.operator.spec import DEFAULT_IMAGE, Spec, SpecError, parse

log = logging.getLogger("citywok.operator")


@dataclass(frozen=True)
class Options:
    default_image: str = DEFAULT_IMAGE


@dataclass
class Outcome:
    body: dict[str, Any] | None  # the resource as read (None when it is gone)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def intent(spec: Spec, replicas: int | None = None) -> Intent:
    """``replicas``: the count the pods are steered to when an HPA, not ``spec.replicas``, sets it."""
    return Intent(version=spec.version, replicas=spec.replicas if replicas is None else replicas,
                  strategy=spec.rollout.strategy,
                  deadline_seconds=spec.rollout.progress_deadline_seconds,
                  auto_rollback=spec.rollout.auto_rollback)


def selector(name: str) -> str:
    """``status.selector``: the matcher pods of ``name`` (the scale subresource's labelSelectorPath)."""
    return status.label_selector(desired.selector_labels(name))


def status_for(old: dict[str, Any], d: Decision, obs: status.Observation, generation: int | None,
               now: datetime, name: str | None = None) -> dict[str, Any]:
    conds = {"Available": d.available, "Progressing": d.progressing, "Degraded": d.degraded}
    return status.build(old, record=d.record.to_status(), phase=d.phase,
                        conditions={k: (c.status, c.reason, c.message) for k, c in conds.items()},
                        obs=obs, target=d.record.target, generation=generation, now=now,
                        selector=selector(name) if name else None)


def invalid_status(old: dict[str, Any], error: SpecError, obs: status.Observation, generation: int | None,
                   now: datetime, name: str | None = None) -> dict[str, Any]:
    serving = sum(obs.served_versions().values())
    conds = {"Available": ("True", "PodsServing", "pods keep serving") if serving
             else ("False", "NoPodServing", "no pod serves a version"),
             "Progressing": ("False", "InvalidSpec", str(error)),
             "Degraded": ("True", "InvalidSpec", str(error))}
    rec = Record.from_status(old)
    return status.build(old, record=rec.to_status(), phase="Degraded", conditions=conds, obs=obs,
                        target=rec.target, generation=generation, now=now,
                        selector=selector(name) if name else None)


def reconcile(kube: Kube, namespace: str, name: str, options: Options,
              now: datetime | None = None) -> Outcome:
    """Bring one FingerprintDB's children and status to what its spec and pods say."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    body = kube.get_fingerprintdb(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return Outcome(None)
    old = body.get("status") or {}
    generation = body["metadata"].get("generation")
    obs = status.observe(kube.list_pods(namespace, desired.selector_labels(name)))
    try:
        spec = parse(name, namespace, body.get("spec") or {}, options.default_image)
    except SpecError as e:
        new = invalid_status(old, e, obs, generation, now, name)
        events = [Event("Warning", "InvalidSpec", str(e))] if status.status_changed(old, new) else []
        _write(kube, namespace, name, old, new)
        metrics.RECONCILES.labels(namespace, name, "invalid").inc()
        return Outcome(body, events)

    live = None
    replicas = spec.replicas
    if spec.autoscaling is not None:
        live = kube.get("Deployment", namespace, desired.names(name)["Deployment"])
        replicas = autoscaling.current_replicas(live, spec.autoscaling)
    d = decide(intent(spec, replicas), Record.from_status(old), obs, now)
    apply_children(kube, spec, d.version, body, live)
    new = status_for(old, d, obs, generation, now, name)
    _write(kube, namespace, name, old, new)
    events = list(d.events) + _availability_events(old, new)
    for ev in events:
        log.info("%s/%s %s: %s", namespace, name, ev.reason, ev.message,
                 extra={"k8s": {"kind": desired.KIND, "namespace": namespace, "name": name},
                        "reason": ev.reason, "event_type": ev.type})
    record_metrics(namespace, name, d, new["readyReplicas"], time.monotonic() - started)
    return Outcome(body, events, d.requeue_after)


def record_metrics(namespace: str, name: str, d: Decision, ready: int, seconds: float) -> None:
    """The per-resource series of one successful reconcile."""
    if d.outcome and d.rollout_seconds is not None:
        metrics.ROLLOUT_SECONDS.labels(namespace, name, d.outcome).observe(d.rollout_seconds)
    if d.outcome == "rolled_back" and d.rollout_seconds is not None:
        metrics.ROLLBACKS.labels(namespace, name).inc()
    metrics.READY.labels(namespace, name).set(ready)
    metrics.DEGRADED.labels(namespace, name).set(1 if d.degraded.status == "True" else 0)
    metrics.PROGRESSING.labels(namespace, name).set(1 if d.progressing.status == "True" else 0)
    metrics.RECONCILES.labels(namespace, name, "ok").inc()
    metrics.RECONCILE_SECONDS.labels(namespace, name).observe(seconds)


def apply_children(kube: Kube, spec: Spec, version: str, owner: dict[str, Any],
                   live: dict[str, Any] | None) -> None:
    """Apply every child; hand ``replicas`` to the HPA, or take it back, without a dip in between.

    ``live``: the Deployment as read this reconcile (only needed under autoscaling).
    Off: the HPA goes first so it cannot scale after the operator has set ``spec.replicas`` again.
    On: a Deployment that does not exist yet starts at minReplicas; an existing one keeps its count
    through the handover manager while the operator stops applying the field.
    """
    a = spec.autoscaling
    seed = None
    if a is None:
        remove_hpa(kube, spec.namespace, desired.hpa_name(spec.name), owner)
    elif live is None:
        seed = a.min_replicas
    elif autoscaling.needs_handover(live, kube.field_manager):
        kube.apply(autoscaling.handover(live), field_manager=autoscaling.HANDOVER_MANAGER)
    for child in desired.children(spec, version, owner, seed):
        kube.apply(child)


def remove_hpa(kube: Kube, namespace: str, name: str, owner: dict[str, Any]) -> None:
    """Delete the HPA this FingerprintDB created, if any (one someone else made is not ours to delete)."""
    hpa = kube.get("HorizontalPodAutoscaler", namespace, name)
    if hpa is None:
        return
    meta = owner["metadata"]
    refs = hpa["metadata"].get("ownerReferences") or []
    if any(r.get("uid") == meta["uid"] and r.get("controller") for r in refs):
        kube.delete("HorizontalPodAutoscaler", namespace, name, hpa["metadata"]["uid"])
        log.info("%s/%s autoscaling off: HPA deleted, spec.replicas applies again", namespace, meta["name"],
                 extra={"k8s": {"kind": desired.KIND, "namespace": namespace, "name": meta["name"]}})


def _write(kube: Kube, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    if status.status_changed(old, new):
        kube.patch_status(namespace, name, new)


def _availability_events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """An event when Available flips (rollout transitions have their own events)."""
    before = status.condition(old.get("conditions"), "Available") or {}
    after = status.condition(new.get("conditions"), "Available") or {}
    if not before or before.get("status") == after.get("status"):
        return []
    if after.get("status") == "True":
        return [Event("Normal", "Available", after.get("message", ""))]
    return [Event("Warning", "Unavailable", after.get("message", ""))]
