"""The operator's own Prometheus metrics (served by :func:`serve` on the metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("citywok_operator_reconciles_total", "Reconciles of a FingerprintDB, by result",
                     ["result"])
ERRORS = Counter("citywok_operator_reconcile_errors_total", "Reconciles that failed, by error kind",
                 ["kind"])
RECONCILE_SECONDS = Histogram("citywok_operator_reconcile_duration_seconds", "Time spent in one reconcile",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ROLLOUT_SECONDS = Histogram("citywok_operator_rollout_duration_seconds",
                            "From a new target version to its outcome", ["outcome"],
                            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600))
ROLLBACKS = Counter("citywok_operator_rollbacks_total", "Automatic rollbacks to the last good version")
READY = Gauge("citywok_fingerprintdb_ready_replicas", "Ready matcher pods", ["namespace", "name"])
DEGRADED = Gauge("citywok_fingerprintdb_degraded", "1 while a FingerprintDB is Degraded",
                 ["namespace", "name"])


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the metrics HTTP server in a background thread."""
    start_http_server(port, addr)


def forget(namespace: str, name: str) -> None:
    """Drop the per-resource series of a deleted FingerprintDB."""
    for gauge in (READY, DEGRADED):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
