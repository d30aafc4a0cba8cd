"""The chart's side of autoscaling: fingerprintDB.autoscaling -> spec.autoscaling, and the documented
prometheus-adapter rule (off by default) that serves the HPA's requests-per-second metric."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from citywok.matcher.service.server import ServerConfig, create_app
from citywok.operator import autoscaling, desired
from citywok.operator.spec import parse

from tests.chart.chartkit import render, render_error

FDB = {"fingerprintDB.enabled": True, "fingerprintDB.source.bucket": "citywok-fingerprints",
       "fingerprintDB.autoscaling.enabled": True}


def one(objs: list[dict], kind: str, suffix: str = "") -> dict[str, Any] | None:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) <= 1
    return found[0] if found else None


def adapter_rule(objs: list[dict]) -> dict[str, Any]:
    cm = one(objs, "ConfigMap", "-adapter-rules")
    assert cm is not None
    (rule,) = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    return rule


@pytest.mark.go
def test_adapter_rule_is_off_by_default() -> None:
    assert one(render(), "ConfigMap", "-adapter-rules") is None


@pytest.mark.go
def test_adapter_rule_names_the_metric_the_hpa_asks_for() -> None:
    objs = render(sets={"metrics.prometheusAdapter.enabled": True,
                        "metrics.prometheusAdapter.namespace": "monitoring"})
    cm = one(objs, "ConfigMap", "-adapter-rules")
    assert cm is not None and cm["metadata"]["namespace"] == "monitoring"
    rule = adapter_rule(objs)
    assert rule["name"]["as"] == autoscaling.RPS_METRIC
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert re.fullmatch(rule["name"]["matches"], "citywok_http_requests_total")
    assert 'route="/api/v1/identify"' in rule["seriesQuery"]
    assert rule["metricsQuery"].startswith("sum(rate(<<.Series>>{<<.LabelMatchers>>,route=\"/api/v1/identify\"}[2m]))")
    assert rule["metricsQuery"].endswith("by (<<.GroupBy>>)")


def test_the_series_the_rule_selects_is_what_the_matcher_exports(tmp_path: Path) -> None:
    """A real identify request (503: nothing served yet) shows up under the rule's name and route."""
    async def scrape() -> str:
        async with TestClient(TestServer(create_app(ServerConfig(data_dir=tmp_path)))) as client:
            await client.post("/api/v1/identify", data={"url": "https://example.com/clip.mp3"})
            return await (await client.get("/metrics")).text()

    text = asyncio.run(scrape())
    line = next(ln for ln in text.splitlines() if ln.startswith("citywok_http_requests_total{"))
    assert 'route="/api/v1/identify"' in line and line.endswith(" 1.0"), line


@pytest.mark.go
def test_fingerprintdb_values_become_spec_autoscaling_the_operator_accepts() -> None:
    cpu = one(render(sets=FDB), "FingerprintDB")
    assert cpu is not None
    assert cpu["spec"]["autoscaling"] == {"minReplicas": 2, "maxReplicas": 10, "target": {"cpuUtilization": 70}}
    spec = parse("db", "citywok", cpu["spec"])
    assert spec.autoscaling == autoscaling.Autoscaling(2, 10, cpu_utilization=70)

    rps = one(render(sets={**FDB, "fingerprintDB.autoscaling.requestsPerSecond": 2.5,
                           "fingerprintDB.autoscaling.maxReplicas": 6}), "FingerprintDB")
    assert rps is not None
    assert rps["spec"]["autoscaling"] == {"minReplicas": 2, "maxReplicas": 6, "target": {"requestsPerSecond": 2.5}}
    owner = {"metadata": {"name": "db", "uid": "u"}}
    hpa = desired.horizontal_pod_autoscaler(parse("db", "citywok", rps["spec"]), owner)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == autoscaling.RPS_METRIC

    off = one(render(sets={**FDB, "fingerprintDB.autoscaling.enabled": False}), "FingerprintDB")
    assert off is not None and "autoscaling" not in off["spec"]


@pytest.mark.go
def test_autoscaling_without_a_target_is_refused() -> None:
    err = render_error(sets={**FDB, "fingerprintDB.autoscaling.cpuUtilization": 0})
    assert "set cpuUtilization or requestsPerSecond above 0" in err
