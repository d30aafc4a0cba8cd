"""Spec -> the child objects a FingerprintDB owns, as plain dicts ready for server-side apply.

Pure: the same spec and version always give the same objects, so applying them on every reconcile is
idempotent, recreates a deleted child and reverts a hand edit of any field listed here.

The pod contract (shared with the fetcher):
  * init container ``citywok fetch --once`` fills DATA_DIR before the matcher starts;
  * sidecar ``citywok fetch --watch`` follows the desired version and reports on its own Pod through
    the annotations ``citywok.io/served-version`` and ``citywok.io/fetch-error``;
  * InPlace: both read the version from the mounted ConfigMap file ``/etc/citywok/desired/version``,
    so a new version changes the ConfigMap only and the pod template stays the same;
  * Restart: both get ``--version V`` and the template carries the version annotation, so a new
    version rolls the pods (maxUnavailable 0).

Autoscaling: when ``spec.autoscaling`` is set an HPA owns the replica count, so ``replicas`` is left out
of the Deployment (server-side apply then stops claiming the field) except as the first count of a
Deployment that does not exist yet -- see :func:`deployment` and :mod:`citywok.operator.autoscaling`.
"""

from __future__ import annotations

import math
from typing import Any

from citywok.operator import autoscaling, podtemplate
from citywok.operator.spec import Container, Spec

GROUP = "citywok.io"
API_VERSION = f"{GROUP}/v1alpha1"
KIND = "FingerprintDB"
PLURAL = "fingerprintdbs"

VERSION_ANNOTATION = f"{GROUP}/version"
INSTANCE_LABEL = f"{GROUP}/fingerprintdb"
MANAGED_BY = "citywok-operator"

DATA_DIR = "/data"
DESIRED_DIR = "/etc/citywok/desired"
VERSION_FILE = f"{DESIRED_DIR}/version"
HTTP_PORT = 8000
FETCHER_METRICS_PORT = 9102

Obj = dict[str, Any]


def selector_labels(name: str) -> dict[str, str]:
    """The Deployment's selector (immutable once created, so it never changes)."""
    return {"app.kubernetes.io/name": "citywok", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "matcher"}


def labels(name: str) -> dict[str, str]:
    return {**selector_labels(name), "app.kubernetes.io/managed-by": MANAGED_BY, INSTANCE_LABEL: name}


def names(name: str) -> dict[str, str]:
    """Child kind -> child name for one FingerprintDB."""
    return {
        "Deployment": name,
        "Service": name,
        "PodDisruptionBudget": name,
        "ConfigMap": f"{name}-desired",
        "ServiceAccount": f"{name}-fetcher",
        "Role": f"{name}-fetcher",
        "RoleBinding": f"{name}-fetcher",
    }


def owner_reference(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _meta(spec: Spec, kind: str, owner: Obj) -> Obj:
    return {"name": names(spec.name)[kind], "namespace": spec.namespace, "labels": labels(spec.name),
            "ownerReferences": [owner_reference(owner)]}


def configmap(spec: Spec, version: str, owner: Obj) -> Obj:
    """The desired version, as the file the sidecars watch (InPlace) and as a record (both)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, "ConfigMap", owner),
            "data": {"version": version}}


def service_account(spec: Spec, owner: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(spec, "ServiceAccount", owner),
            "automountServiceAccountToken": True}


def role(spec: Spec, owner: Obj) -> Obj:
    """The sidecar reads and annotates its own Pod (RBAC cannot narrow it to one dynamic pod name)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(spec, "Role", owner),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]}


def role_binding(spec: Spec, owner: Obj) -> Obj:
    n = names(spec.name)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta(spec, "RoleBinding", owner),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["Role"]},
            "subjects": [{"kind": "ServiceAccount", "name": n["ServiceAccount"],
                          "namespace": spec.namespace}]}


def service(spec: Spec, owner: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, "Service", owner),
            "spec": {"type": "ClusterIP", "selector": selector_labels(spec.name),
                     "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def pod_disruption_budget(spec: Spec, owner: Obj) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(spec, "PodDisruptionBudget", owner),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec.name)}}}


def _fetcher_env(spec: Spec) -> list[Obj]:
    src = spec.source
    env: list[Obj] = [
        {"name": "DATA_DIR", "value": DATA_DIR},
        {"name": "S3_BUCKET", "value": src.bucket},
        {"name": "S3_PREFIX", "value": src.prefix},
    ]
    if src.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": src.endpoint})
    if src.region:
        env.append({"name": "AWS_REGION", "value": src.region})
    env.extend(_season_env(spec))
    if src.secret_name:
        for var, key in (("AWS_ACCESS_KEY_ID", src.access_key_id_key),
                         ("AWS_SECRET_ACCESS_KEY", src.secret_access_key_key)):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": src.secret_name, "key": key}}})
    return env + _downward_env()


def _season_env(spec: Spec) -> list[Obj]:
    if spec.seasons:
        return [{"name": "SEASONS", "value": ",".join(str(s) for s in spec.seasons)}]
    if spec.max_seasons is not None:
        return [{"name": "MAX_SEASONS", "value": str(spec.max_seasons)}]
    return []


def cpu_count(quantity: str | int | float | None) -> int | None:
    """Whole CPUs of a Kubernetes CPU quantity, rounded up ("250m" -> 1, "1.5" -> 2, 3 -> 3)."""
    if quantity is None or str(quantity).strip() == "":
        return None
    q = str(quantity).strip()
    try:
        value = float(q[:-1]) / 1000 if q.endswith("m") else float(q)
    except ValueError:
        return None
    return max(1, math.ceil(value)) if value > 0 else None


def _worker_env(c: Container) -> list[Obj]:
    """WORKERS for the matcher: one identify process per CPU it is given (its limit, else its request).
    Without it the matcher would start one per CPU of the node, whatever the pod may use."""
    res = c.resources or {}
    cpus = cpu_count((res.get("limits") or {}).get("cpu")) or cpu_count((res.get("requests") or {}).get("cpu"))
    return [{"name": "WORKERS", "value": str(cpus or 1)}]


def _downward_env() -> list[Obj]:
    return [{"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for var, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"))]


def _security_context() -> Obj:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _container(c: Container, name: str, args: list[str], env: list[Obj], mounts: list[Obj]) -> Obj:
    """One container; the spec's own env entries follow the operator's, its envFrom sources come first
    in Kubernetes' order (an ``env`` entry wins over an ``envFrom`` key of the same name)."""
    out: Obj = {"name": name, "image": c.image, "command": ["citywok"], "args": args,
                "env": podtemplate.merge_env(env, c.extra), "volumeMounts": mounts,
                "securityContext": _security_context()}
    if c.extra.env_from:
        out["envFrom"] = [dict(s) for s in c.extra.env_from]
    if c.pull_policy:
        out["imagePullPolicy"] = c.pull_policy
    if c.resources:
        out["resources"] = c.resources
    return out


def _data_volume(spec: Spec) -> Obj:
    st = spec.storage
    if st.type == "PersistentVolumeClaim" and st.claim_name:
        return {"name": "data", "persistentVolumeClaim": {"claimName": st.claim_name}}
    if st.type == "PersistentVolumeClaim":
        claim: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": st.size}}}
        if st.storage_class:
            claim["storageClassName"] = st.storage_class
        return {"name": "data", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": labels(spec.name)}, "spec": claim}}}
    return {"name": "data", "emptyDir": {"sizeLimit": st.size} if st.size else {}}


def pod_template(spec: Spec, version: str) -> Obj:
    """The matcher pod. Under InPlace it does not depend on ``version`` at all (no restarts)."""
    restart = spec.rollout.strategy == "Restart"
    data_mount = {"name": "data", "mountPath": DATA_DIR}
    tmp_mount = {"name": "tmp", "mountPath": "/tmp"}
    fetch_mounts: list[Obj] = [data_mount, tmp_mount]
    volumes: list[Obj] = [_data_volume(spec), {"name": "tmp", "emptyDir": {}}]
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(HTTP_PORT),
                   "prometheus.io/path": "/metrics"}
    if restart:
        source_args = ["--version", version]
        annotations[VERSION_ANNOTATION] = version
    else:
        source_args = ["--version-file", VERSION_FILE]
        volumes.append({"name": "desired", "configMap": {"name": names(spec.name)["ConfigMap"]}})
        fetch_mounts = [*fetch_mounts, {"name": "desired", "mountPath": DESIRED_DIR, "readOnly": True}]
    fenv = _fetcher_env(spec)
    matcher_env = [{"name": "DATA_DIR", "value": DATA_DIR}, *_season_env(spec), *_worker_env(spec.matcher),
                   *_downward_env()]
    matcher = _container(spec.matcher, "matcher", ["serve"], matcher_env, [data_mount, tmp_mount])
    matcher["ports"] = [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    matcher["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"},
                                 "periodSeconds": 5, "failureThreshold": 2}
    matcher["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"},
                                "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 3}
    sidecar = _container(spec.fetcher, "fetcher",
                         ["fetch", "--watch", "--metrics-port", str(FETCHER_METRICS_PORT), *source_args],
                         fenv, fetch_mounts)
    sidecar["ports"] = [{"name": "fetcher-metrics", "containerPort": FETCHER_METRICS_PORT, "protocol": "TCP"}]
    return podtemplate.apply({
        "metadata": {"labels": labels(spec.name), "annotations": annotations},
        "spec": {
            "serviceAccountName": names(spec.name)["ServiceAccount"],
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [_container(spec.fetcher, "fetch", ["fetch", "--once", *source_args],
                                          fenv, fetch_mounts)],
            "containers": [matcher, sidecar],
            "volumes": volumes,
        },
    }, spec.pod, selector_labels(spec.name))


def deployment(spec: Spec, version: str, owner: Obj, seed_replicas: int | None = None) -> Obj:
    """The matcher Deployment; under autoscaling ``replicas`` only when ``seed_replicas`` is given."""
    replicas = spec.replicas if spec.autoscaling is None else seed_replicas
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, "Deployment", owner),
        "spec": {
            **({"replicas": replicas} if replicas is not None else {}),
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "selector": {"matchLabels": selector_labels(spec.name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": pod_template(spec, version),
        },
    }


def horizontal_pod_autoscaler(spec: Spec, owner: Obj) -> Obj:
    """The HPA of the matcher Deployment (same name); only while ``spec.autoscaling`` is set."""
    assert spec.autoscaling is not None
    meta = {**_meta(spec, "Deployment", owner), "name": hpa_name(spec.name)}
    return {"apiVersion": autoscaling.HPA_API_VERSION, "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": autoscaling.hpa_spec(spec.autoscaling, names(spec.name)["Deployment"])}


def hpa_name(name: str) -> str:
    """The HPA is named like the Deployment it scales (kept out of :func:`names`: it is optional)."""
    return names(name)["Deployment"]


def children(spec: Spec, version: str, owner: Obj, seed_replicas: int | None = None) -> list[Obj]:
    """Every object the operator applies for one FingerprintDB, in dependency order.

    ``seed_replicas``: under autoscaling, the count a Deployment that does not exist yet starts with.
    """
    objs = [
        configmap(spec, version, owner),
        service_account(spec, owner),
        role(spec, owner),
        role_binding(spec, owner),
        service(spec, owner),
        pod_disruption_budget(spec, owner),
        deployment(spec, version, owner, seed_replicas),
    ]
    if spec.autoscaling is not None:
        objs.append(horizontal_pod_autoscaler(spec, owner))
    return objs
