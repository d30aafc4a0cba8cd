"""``spec.podTemplate`` and the containers' ``env``/``envFrom``: the platform knobs of the matcher pods.

Pure: parsed once from the spec (a :class:`SpecError` names the field when something cannot be honoured)
and merged into the pod template :mod:`citywok.operator.desired` builds. What the operator itself sets
(the selector labels, its annotations, the variables of the volume and fetch contract) cannot be
replaced from here: a pod that lies about its version or reads another DATA_DIR would break the rollout.
Credentials only arrive by reference: an env var whose name says it is a secret must come from a
Secret (``valueFrom``) or an ``envFrom`` source, never as a plain value in the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from citywok.errors import CityWokError

Obj = dict[str, Any]

# Names the CRD rejects with a plain value too (crds/fingerprintdb.yaml repeats this pattern).
CREDENTIAL_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|KEY|DSN|CREDENTIALS?|APIKEY)(_|$)", re.I)
# Variables the operator sets that a spec may not replace (WORKERS may be: it is only a default).
MATCHER_RESERVED = frozenset({"DATA_DIR", "SEASONS", "MAX_SEASONS", "POD_NAME", "POD_NAMESPACE"})
FETCHER_RESERVED = MATCHER_RESERVED | {"S3_BUCKET", "S3_PREFIX", "AWS_ENDPOINT_URL", "AWS_REGION",
                                       "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
RESERVED_ANNOTATION = re.compile(r"^(citywok\.io/|prometheus\.io/)")
VALUE_FROM = ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
# The label keys desired.labels() puts on every pod: the Deployment's selector and ownership.
OWN_LABEL_KEYS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                            "app.kubernetes.io/managed-by", "citywok.io/fingerprintdb"})


class PodTemplateError(CityWokError, ValueError):
    """Raised for a knob the operator cannot apply; :mod:`citywok.operator.spec` reports it as a SpecError."""

    code = "bad_pod_template"


@dataclass(frozen=True)
class PodTemplate:
    """Pod-level knobs copied onto every matcher pod (empty: the field is left out)."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Obj, ...] = ()
    affinity: Obj = field(default_factory=dict)
    topology_spread: tuple[Obj, ...] = ()
    priority_class: str | None = None
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraEnv:
    """A container's ``env`` entries and ``envFrom`` sources from the spec, checked."""

    env: tuple[Obj, ...] = ()
    env_from: tuple[Obj, ...] = ()


def _strings(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise PodTemplateError(f"{where} must map names to strings")
    return dict(raw)


def _objects(raw: Any, where: str) -> tuple[Obj, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise PodTemplateError(f"{where} must be a list of objects")
    return tuple(raw)


def parse_pod_template(raw: Obj | None) -> PodTemplate:
    """``spec.podTemplate``, refusing what only the operator may set."""
    raw = raw or {}
    meta = raw.get("metadata") or {}
    labels = _strings(meta.get("labels"), "spec.podTemplate.metadata.labels")
    taken = sorted(set(labels) & OWN_LABEL_KEYS)
    if taken:
        raise PodTemplateError(f"spec.podTemplate.metadata.labels: {', '.join(taken)} is set by the operator "
                               "(the Deployment's selector and ownership)")
    annotations = _strings(meta.get("annotations"), "spec.podTemplate.metadata.annotations")
    taken = sorted(k for k in annotations if RESERVED_ANNOTATION.match(k))
    if taken:
        raise PodTemplateError(f"spec.podTemplate.metadata.annotations: {', '.join(taken)} is reserved "
                               "(citywok.io/* and prometheus.io/* are the operator's)")
    secrets = _objects(raw.get("imagePullSecrets"), "spec.podTemplate.imagePullSecrets")
    if not all(isinstance(s.get("name"), str) and s["name"] for s in secrets):
        raise PodTemplateError("spec.podTemplate.imagePullSecrets: every entry needs a name")
    affinity = raw.get("affinity") or {}
    if not isinstance(affinity, dict):
        raise PodTemplateError("spec.podTemplate.affinity must be an object")
    priority = raw.get("priorityClassName") or None
    return PodTemplate(
        labels=labels,
        annotations=annotations,
        node_selector=_strings(raw.get("nodeSelector"), "spec.podTemplate.nodeSelector"),
        tolerations=_objects(raw.get("tolerations"), "spec.podTemplate.tolerations"),
        affinity=dict(affinity),
        topology_spread=_objects(raw.get("topologySpreadConstraints"),
                                 "spec.podTemplate.topologySpreadConstraints"),
        priority_class=str(priority) if priority else None,
        pull_secrets=tuple(dict.fromkeys(s["name"] for s in secrets)),
    )


def _env_entry(e: Obj, where: str, reserved: frozenset[str]) -> Obj:
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise PodTemplateError(f"{where}: every entry needs a name")
    if name in reserved:
        raise PodTemplateError(f"{where}: {name} is set by the operator (the volume and fetch contract)")
    has_value, value_from = "value" in e, e.get("valueFrom")
    if has_value and value_from:
        raise PodTemplateError(f"{where}: {name} has both value and valueFrom")
    if has_value and CREDENTIAL_NAME.search(name):
        raise PodTemplateError(f"{where}: {name} looks like a credential: take it from a Secret "
                               "(valueFrom.secretKeyRef or envFrom), not a value in the spec")
    if value_from is not None:
        if not isinstance(value_from, dict) or len(value_from) != 1 or next(iter(value_from)) not in VALUE_FROM:
            raise PodTemplateError(f"{where}: {name}.valueFrom needs exactly one of {', '.join(VALUE_FROM)}")
        return {"name": name, "valueFrom": value_from}
    value = e.get("value", "")
    if not isinstance(value, str):
        raise PodTemplateError(f"{where}: {name}.value must be a string (quote numbers)")
    return {"name": name, "value": value}


def parse_env(raw: Obj | None, where: str, reserved: frozenset[str]) -> ExtraEnv:
    """``env``/``envFrom`` of one container block (``where``: e.g. ``spec.matcher``)."""
    raw = raw or {}
    entries = _objects(raw.get("env"), f"{where}.env")
    env = tuple(_env_entry(e, f"{where}.env", reserved) for e in entries)
    names = [e["name"] for e in env]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PodTemplateError(f"{where}.env: {', '.join(dupes)} given more than once")
    sources = _objects(raw.get("envFrom"), f"{where}.envFrom")
    for s in sources:
        refs = [k for k in ("secretRef", "configMapRef") if k in s]
        if len(refs) != 1 or not (s[refs[0]] or {}).get("name"):
            raise PodTemplateError(f"{where}.envFrom: each source needs exactly one named secretRef or "
                                   "configMapRef")
    return ExtraEnv(env, sources)


def merge_env(own: list[Obj], extra: ExtraEnv) -> list[Obj]:
    """The operator's variables, then the spec's; a spec entry replaces an operator default of its name."""
    names = {e["name"] for e in extra.env}
    return [e for e in own if e["name"] not in names] + list(extra.env)


def apply(template: Obj, pt: PodTemplate, selector: dict[str, str]) -> Obj:
    """``template`` with the pod-level knobs added; topology spread counts this FingerprintDB's pods
    unless a constraint names its own labelSelector."""
    meta, spec = template["metadata"], template["spec"]
    meta["labels"] = {**pt.labels, **meta["labels"]}
    meta["annotations"] = {**pt.annotations, **meta["annotations"]}
    if pt.pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in pt.pull_secrets]
    if pt.priority_class:
        spec["priorityClassName"] = pt.priority_class
    if pt.node_selector:
        spec["nodeSelector"] = dict(pt.node_selector)
    if pt.tolerations:
        spec["tolerations"] = [dict(t) for t in pt.tolerations]
    if pt.affinity:
        spec["affinity"] = dict(pt.affinity)
    if pt.topology_spread:
        spec["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": dict(selector)}, **c} for c in pt.topology_spread]
    return template
