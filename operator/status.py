"""Pods -> what is served, and the FingerprintDB status assembled from a rollout decision.

Pure functions over plain dicts (pods as the API returns them), so they are tested without a cluster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from citywok.operator.desired import VERSION_ANNOTATION

from citywok.layout import ERROR_ANNOTATION, SERVED_ANNOTATION

CONDITION_TYPES = ("Available", "Progressing", "Degraded")


@dataclass(frozen=True)
class PodView:
    """What the operator needs to know about one matcher pod."""

    name: str
    ready: bool
    terminating: bool
    served: str | None
    error: str | None
    template_version: str | None


@dataclass(frozen=True)
class Observation:
    pods: tuple[PodView, ...]

    @property
    def live(self) -> list[PodView]:
        return [p for p in self.pods if not p.terminating]

    @property
    def ready(self) -> list[PodView]:
        return [p for p in self.live if p.ready]

    def served_versions(self) -> dict[str, int]:
        """Version -> number of ready pods serving it."""
        return dict(sorted(Counter(p.served for p in self.ready if p.served).items()))

    def errors(self, target: str, restart: bool) -> list[str]:
        """Fetch errors that stand between the pods and ``target``, as ``pod: reason`` lines.

        A pod that already serves the target has nothing left to fetch. Under Restart only pods
        created for the target count: an old pod's error is about an older version.
        """
        return [f"{p.name}: {p.error}" for p in self.live
                if p.error and p.served != target and (not restart or p.template_version == target)]


def format_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    ann = meta.get("annotations") or {}
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return PodView(
        name=meta.get("name", "?"),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        served=ann.get(SERVED_ANNOTATION) or None,
        error=ann.get(ERROR_ANNOTATION) or None,
        template_version=ann.get(VERSION_ANNOTATION) or None,
    )


def observe(pods: list[dict[str, Any]]) -> Observation:
    return Observation(tuple(sorted((pod_view(p) for p in pods), key=lambda v: v.name)))


def merge_condition(old: list[dict[str, Any]], ctype: str, status: str, reason: str, message: str,
                    now: datetime, generation: int | None) -> dict[str, Any]:
    """One condition, keeping ``lastTransitionTime`` unless its status flips."""
    prev = next((c for c in old if c.get("type") == ctype), None)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    cond: dict[str, Any] = {"type": ctype, "status": status, "reason": reason, "message": message,
                            "lastTransitionTime": since or format_time(now)}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def condition(conditions: list[dict[str, Any]] | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing ``new`` would change anything the user can see (so quiet reconciles write nothing)."""
    return any(old.get(k) != v for k, v in new.items())


def label_selector(labels: dict[str, str]) -> str:
    """A label selector in the string form the scale subresource's ``labelSelectorPath`` wants."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def build(old: dict[str, Any], *, record: dict[str, Any], phase: str,
          conditions: dict[str, tuple[str, str, str]], obs: Observation, target: str | None,
          generation: int | None, now: datetime, selector: str | None = None) -> dict[str, Any]:
    """The new ``status`` as a merge patch over ``old`` (vanished versions are set to None).

    ``selector``: the matcher pods' label selector, for the scale subresource (an HPA that targets the
    FingerprintDB counts these pods).
    """
    served = obs.served_versions()
    old_served = old.get("servedVersions") or {}
    old_conditions = old.get("conditions") or []
    return {
        "observedGeneration": generation,
        "phase": phase,
        **record,
        "replicas": len(obs.live),
        **({"selector": selector} if selector else {}),
        "readyReplicas": len(obs.ready),
        "updatedReplicas": served.get(target, 0) if target else 0,
        "servedVersions": {**{v: None for v in old_served if v not in served}, **served},
        "conditions": [merge_condition(old_conditions, t, *conditions[t], now, generation)
                       for t in CONDITION_TYPES if t in conditions],
    }
