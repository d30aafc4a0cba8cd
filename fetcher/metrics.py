"""The fetcher's Prometheus metrics (served by `citywok fetch --watch --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from citywok import buildinfo

BYTES_DOWNLOADED = Counter("citywok_fetcher_downloaded_bytes", "Archive bytes downloaded from the bucket")
BYTES_REUSED = Counter("citywok_fetcher_reused_bytes", "Season bytes reused from a version already on the volume")
FETCH_SECONDS = Histogram(
    "citywok_fetcher_fetch_seconds",
    "Time to fetch, verify and unpack one version",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
FETCHES = Counter("citywok_fetcher_fetches", "Version fetches by outcome", ["outcome"])
VERIFY_FAILURES = Counter("citywok_fetcher_verify_failures", "Archives or shards that failed verification")
RETRIES = Counter("citywok_fetcher_retries", "Retried object-store requests and resumed downloads")
SERVED = Gauge("citywok_fetcher_served_version_info", "The version `current` points to (value 1)", ["version"])
DESIRED = Gauge("citywok_fetcher_desired_version_info", "The version the fetcher was asked for (value 1)", ["version"])
FETCH_ERROR = Gauge("citywok_fetcher_fetch_error", "1 while the desired version fails to fetch")
buildinfo.register()  # citywok_build_info beside the process_* series of the default registry


def set_info(gauge: Gauge, version: str | None) -> None:
    """Keep exactly one label value on an info-style gauge."""
    gauge.clear()
    if version:
        gauge.labels(version=version).set(1)
