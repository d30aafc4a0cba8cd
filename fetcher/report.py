"""Where the fetcher says what it serves: a local status file, and the own Pod's annotations.

The operator reads ``citywok.io/served-version`` and ``citywok.io/fetch-error`` from the pods it owns.
Each reporter writes only when the state changes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from citywok import layout, settings
from citywok.layout import ERROR_ANNOTATION, SERVED_ANNOTATION

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 1024


@dataclass(frozen=True)
class Status:
    served: str | None
    desired: str | None
    error: str | None = None


class Reporter(Protocol):
    def report(self, status: Status) -> None: ...


class StatusFile:
    """``{"served_version", "desired_version", "fetch_error", "updated"}`` written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: Status | None = None

    def report(self, status: Status) -> None:
        if status == self._last:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        layout.write_json_atomic(
            self.path,
            {
                "served_version": status.served,
                "desired_version": status.desired,
                "fetch_error": status.error,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self._last = status


def annotation_patch(status: Status) -> dict[str, Any]:
    """The merge patch for the Pod: served version set, fetch-error set or removed (null)."""
    error = status.error[:MAX_ERROR_CHARS] if status.error else None
    return {"metadata": {"annotations": {SERVED_ANNOTATION: status.served or "", ERROR_ANNOTATION: error}}}


class PodAnnotations:
    """Patches the fetcher's own Pod through the Kubernetes API with the pod's service account."""

    def __init__(self, name: str, namespace: str, api: Any) -> None:
        self.name, self.namespace, self.api = name, namespace, api
        self._last: Status | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PodAnnotations | None:
        """From the downward API's POD_NAME and POD_NAMESPACE; None outside Kubernetes."""
        where = settings.pod(env)
        if not where.name or not where.namespace:
            return None
        from kubernetes import client, config

        if where.kubeconfig:
            config.load_kube_config(config_file=where.kubeconfig)
        else:
            config.load_incluster_config()
        return cls(where.name, where.namespace, client.CoreV1Api())

    def report(self, status: Status) -> None:
        if status == self._last:
            return
        try:
            self.api.patch_namespaced_pod(self.name, self.namespace, annotation_patch(status))
        except Exception as e:  # the API being away must not stop the fetcher; retried on the next report
            log.warning("cannot annotate pod %s/%s: %s", self.namespace, self.name, type(e).__name__)
            return
        self._last = status


class Reporters:
    """Report to several places; one failing does not stop the others."""

    def __init__(self, *reporters: Reporter | None) -> None:
        self.reporters = [r for r in reporters if r is not None]

    def report(self, status: Status) -> None:
        for r in self.reporters:
            r.report(status)
