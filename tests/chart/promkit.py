"""What the dashboard and alert rules may query: the real metric names of matcher, fetcher and operator.

Names come from the metric objects the parts define (their registries, expanded by type the way the
Prometheus text format exposes them), not from a list written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser
from prometheus_client import REGISTRY, CollectorRegistry

# Labels a series gets from the scrape (ServiceMonitor/PodMonitor target labels and our relabeling).
TARGET_LABELS = frozenset({"namespace", "pod", "service", "container", "endpoint", "job", "instance",
                           "fingerprintdb"})
# Grafana's variables, replaced by something PromQL accepts before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}
# No *_created series: citywok.buildinfo turns them off in every process that exports metrics.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
# Series Prometheus itself writes for every scrape target (labels: the target labels).
SCRAPE_SERIES = ("up", "scrape_duration_seconds", "scrape_samples_scraped")
# What every component exports besides its own citywok_* series.
COMMON_PREFIXES = ("citywok_build_info", "process_", "python_")


def _registry_series(registry: CollectorRegistry) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # every collector, even without children yet
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe() if hasattr(collector, "describe") else collector.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in registry.collect():  # label names known only once a value is set (Info)
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def exported_series() -> dict[str, dict[str, set[str]]]:
    """part -> series name -> label names, for every citywok_* series the three parts export."""
    import citywok.fetcher.metrics  # noqa: F401  (registers into the default registry)
    import citywok.operator.metrics  # noqa: F401  (registers into the default registry)
    from citywok.matcher.service.metrics import Metrics

    matcher = Metrics()
    matcher.served("v1", [1, 2], 0, 0)  # what the service records once a version is loaded
    default = _registry_series(REGISTRY)
    return {
        "matcher": {k: v for k, v in _registry_series(matcher.registry).items()
                    if k.startswith(("citywok_", *COMMON_PREFIXES))},
        "fetcher": {k: v for k, v in default.items() if k.startswith(("citywok_fetcher_", *COMMON_PREFIXES))},
        "operator": {k: v for k, v in default.items()
                     if k.startswith(("citywok_operator_", "citywok_fingerprintdb_", *COMMON_PREFIXES))},
        "prometheus": {name: set() for name in SCRAPE_SERIES},
    }


@dataclass
class Query:
    selectors: list[tuple[str, set[str]]]  # (metric name, label names matched)
    grouping: set[str]                       # labels named in by (...) / on (...) clauses


def parse(expr: str) -> Query:
    """Parse a PromQL expression (Grafana variables substituted); raises ValueError if it is not PromQL."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    expr = re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)  # template variables only ever stand in regex matchers
    tree = promql_parser.parse(expr)
    q = Query([], set())

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            q.selectors.append((node.name, {m.name for m in node.matchers.matchers}))
        modifier = getattr(node, "modifier", None)
        labels = getattr(modifier, "labels", None) or getattr(getattr(modifier, "matching", None), "labels", None)
        if labels:
            q.grouping |= set(labels)

    promql_parser.walk(tree, visit)
    return q
