"""Prometheus metrics of the matcher service, one registry per app (so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from citywok import buildinfo

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
HASH_BUCKETS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)

# citywok_identify_total{outcome}: every identify request lands in exactly one.
OUTCOMES = ("match", "no_match", "client_error", "server_error", "refused")


def identify_outcome(status: int, code: str = "") -> str:
    """The outcome of an identify request that ended in an HTTP error.

    refused: the server declined to try (429 overloaded, 503 not ready); client_error: the request was
    at fault (4xx: malformed, too large, not audio, too short); server_error: everything else (5xx,
    including a worker process that died mid-request).
    """
    if status == 429 or (status == 503 and code == "not_ready"):
        return "refused"
    if 400 <= status < 500:
        return "client_error"
    return "server_error"


class Metrics:
    """Every metric the service exports, named by Prometheus conventions."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # process_*, python_*
            r.register(collector)
        buildinfo.register(r)
        self.requests = Counter("citywok_http_requests_total", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("citywok_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("citywok_http_requests_in_flight", "HTTP requests being handled", registry=r)
        self.identify = Counter("citywok_identify_total",
                                "identify outcomes (" + ", ".join(OUTCOMES) + ")", ["outcome"], registry=r)
        self.rejected = Counter("citywok_identify_rejected_total", "identify requests refused with 429",
                                registry=r)
        self.queue = Gauge("citywok_identify_queue_depth", "identify jobs admitted (running or waiting)",
                           registry=r)
        self.decode_seconds = Histogram("citywok_decode_seconds", "time to decode a query clip",
                                        buckets=STAGE_BUCKETS, registry=r)
        self.match_seconds = Histogram("citywok_match_seconds", "time to fingerprint and match a decoded clip",
                                       buckets=STAGE_BUCKETS, registry=r)
        self.hashes = Histogram("citywok_identify_hashes_looked_up", "distinct hashes looked up per query",
                                buckets=HASH_BUCKETS, registry=r)
        self.url_bytes = Counter("citywok_url_download_bytes_total", "bytes downloaded for URL identify",
                                 registry=r)
        self.ingest = Counter("citywok_ingest_total", "ingest outcomes (added, replaced, error)",
                              ["outcome"], registry=r)
        self.db = Info("citywok_db", "the fingerprint version served and its seasons", registry=r)
        self.shard_bytes = Gauge("citywok_shard_bytes", "bytes of the season shards served", registry=r)
        self.episodes = Gauge("citywok_episodes", "episodes in the served version", registry=r)
        self.ready = Gauge("citywok_ready", "1 when a verified version is loaded", registry=r)
        self.workers_lost = Counter("citywok_identify_workers_lost_total",
                                    "identify requests failed because their worker process died", registry=r)
        self.swaps = Counter("citywok_swaps_total", "hot swaps to a new fingerprint version", registry=r)
        self.load_errors = Counter("citywok_version_load_errors_total",
                                   "versions that `current` named but could not be served", registry=r)

    def served(self, version: str, seasons: list[int], nbytes: int, episodes: int) -> None:
        """Record what is being served now."""
        self.db.info({"version": version, "seasons": ",".join(str(s) for s in seasons)})
        self.shard_bytes.set(nbytes)
        self.episodes.set(episodes)
        self.ready.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
