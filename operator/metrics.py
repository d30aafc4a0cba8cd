"""The operator's own Prometheus metrics (served by :func:`serve` on the metrics port).

Per-resource series carry the FingerprintDB's ``namespace`` and ``name`` (the operator's ServiceMonitor
keeps them over the target's own namespace), so the dashboard's filters apply to them; they are dropped
when the resource goes (:func:`forget`). ``process_*``/``python_*`` come from prometheus_client's default
collectors, ``citywok_build_info`` from :mod:`citywok.buildinfo`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from citywok import buildinfo

RESOURCE = ["namespace", "name"]
RECONCILES = Counter("citywok_operator_reconciles_total", "Reconciles of a FingerprintDB, by result",
                     [*RESOURCE, "result"])
ERRORS = Counter("citywok_operator_reconcile_errors_total", "Reconciles that failed, by error kind",
                 [*RESOURCE, "kind"])
RECONCILE_SECONDS = Histogram("citywok_operator_reconcile_duration_seconds", "Time spent in one reconcile",
                              RESOURCE, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ROLLOUT_SECONDS = Histogram("citywok_operator_rollout_duration_seconds",
                            "From a new target version to its outcome", [*RESOURCE, "outcome"],
                            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600))
ROLLBACKS = Counter("citywok_operator_rollbacks_total", "Automatic rollbacks to the last good version",
                    RESOURCE)
READY = Gauge("citywok_fingerprintdb_ready_replicas", "Ready matcher pods", RESOURCE)
DEGRADED = Gauge("citywok_fingerprintdb_degraded", "1 while a FingerprintDB is Degraded", RESOURCE)
PROGRESSING = Gauge("citywok_fingerprintdb_progressing", "1 while a FingerprintDB's Progressing condition is True",
                    RESOURCE)
PER_RESOURCE = (RECONCILES, ERRORS, RECONCILE_SECONDS, ROLLOUT_SECONDS, ROLLBACKS, READY, DEGRADED, PROGRESSING)
buildinfo.register()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the metrics HTTP server in a background thread."""
    start_http_server(port, addr)


def forget(namespace: str, name: str) -> None:
    """Drop every series of a deleted FingerprintDB."""
    for metric in PER_RESOURCE:
        metric.remove_by_labels({"namespace": namespace, "name": name})
