"""The few Kubernetes API calls the operator makes, as plain JSON dicts in and out.

Built on the official client's transport (auth, TLS, kubeconfig) but without its typed models: the
operator's logic works on the same dicts the API serves, and server-side apply takes them as they are.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import kubernetes
from citywok.operator.desired import API_VERSION, PLURAL
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

from citywok.errors import CityWokError

FIELD_MANAGER = "citywok-operator"

# kind -> (API path prefix, plural) for the namespaced children the operator applies.
CHILD_PATHS = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Service": ("/api/v1", "services"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
}


class KubeError(CityWokError):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    code = "kube_api"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``$KUBECONFIG`` by default)."""
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config()
            return kubernetes.client.ApiClient()
        except kubernetes.config.ConfigException:
            pass
    return kubernetes.config.new_client_from_config(config_file=kubeconfig)


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        # DynamicClient.request is the client's public raw-request call: paths and dicts in, bytes out.
        self.dynamic = DynamicClient(client)
        self.field_manager = field_manager

    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                body: Any = None, content_type: str | None = None) -> dict[str, Any] | None:
        """One call; None for 404, :class:`KubeError` for any other failure."""
        params: dict[str, Any] = {"query_params": query or [], "serialize": False, "_request_timeout": 30}
        if content_type:
            params["content_type"] = content_type
        try:
            resp = self.dynamic.request(method.lower(), path, body=body, **params)
        except NotFoundError:
            return None
        except DynamicApiError as e:
            raise KubeError(int(e.status or 0), f"{method} {path}: {e.summary()}") from e
        except Exception as e:  # connection errors come from urllib3 in several shapes
            raise KubeError(0, f"{method} {path}: {e}") from e
        data = resp.data.decode() if resp.data else ""
        return json.loads(data) if data else {}

    def _fdb_path(self, namespace: str, name: str) -> str:
        return f"/apis/{API_VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    def get_fingerprintdb(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", self._fdb_path(namespace, name))

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the status subresource (a None value removes the field)."""
        return self.request("PATCH", self._fdb_path(namespace, name) + "/status", body={"status": status},
                            content_type="application/merge-patch+json")

    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        out = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods",
                           query=[("labelSelector", selector)]) or {}
        return list(out.get("items") or [])

    def _child_path(self, kind: str, namespace: str, name: str) -> str:
        prefix, plural = CHILD_PATHS[kind]
        return f"{prefix}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One child as the API serves it (None when it does not exist)."""
        return self.request("GET", self._child_path(kind, namespace, name))

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete one child, only if it is still the object ``uid`` (a recreated namesake is left alone)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid},
                "propagationPolicy": "Background"}
        try:
            self.request("DELETE", self._child_path(kind, namespace, name), body=body)
        except KubeError as e:
            if e.status != 409:  # 409: the uid precondition failed, someone else's object now
                raise

    def apply(self, obj: dict[str, Any], field_manager: str | None = None) -> dict[str, Any] | None:
        """Server-side apply with force: creates, updates, and takes back fields someone edited by hand."""
        meta = obj["metadata"]
        path = self._child_path(obj["kind"], meta["namespace"], meta["name"])
        return self.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                            query=[("fieldManager", field_manager or self.field_manager), ("force", "true")])
