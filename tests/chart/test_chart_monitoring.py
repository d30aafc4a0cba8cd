"""The Grafana dashboard and the alert rules query only series the parts really export, in valid PromQL.

PromQL is parsed by promql-parser (Python bindings of the Rust `promql-parser` crate, Prometheus 2.45
grammar); metric and label names are checked against the matcher's, fetcher's and operator's metric
objects (tests/chart/promkit.py).
"""

from __future__ import annotations

import re

import promql_parser
import pytest

from tests.chart.chartkit import FULL_VALUES, ROOT, one, render
from tests.chart.promkit import TARGET_LABELS, exported_series, parse

RUNBOOKS_URL = "https://github.com/citywok/citywok/blob/main/docs/runbooks.md"
RUNBOOK_SECTIONS = ("What it means", "What to check", "What to do")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
ALERT_LABEL = re.compile(r"\$labels\.(\w+)")


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    parts = exported_series()
    for part, names in parts.items():
        assert names, f"no citywok_* metrics found for {part}"
    return {name: labels for names in parts.values() for name, labels in names.items()}


def dashboard_targets() -> list[tuple[str, dict]]:
    from tests.chart.chartkit import dashboard

    return [(p["title"], t) for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


def alert_rules() -> list[dict]:
    rule = one(render(values=[FULL_VALUES]), "PrometheusRule")
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def check_query(expr: str, series: dict[str, set[str]]) -> set[str]:
    """Parse; every selector names an exported series and only labels it can carry. Returns metric names."""
    q = parse(expr)
    assert q.selectors, expr
    for name, labels in q.selectors:
        assert name in series, f"{name} is not exported by the matcher, fetcher or operator ({expr})"
        unknown = labels - series[name] - TARGET_LABELS
        assert not unknown, f"{name} has no label {sorted(unknown)} ({expr})"
    return {name for name, _ in q.selectors}


def test_promql_check_catches_what_it_should(series) -> None:
    """The checker itself: a bad name, a bad label and a syntax error are all caught."""
    check_query('rate(citywok_identify_total{outcome="match"}[5m])', series)
    with pytest.raises(AssertionError, match="not exported"):
        check_query("rate(citywok_identify_requests_total[5m])", series)
    with pytest.raises(AssertionError, match="has no label"):
        check_query('citywok_ready{route="/x"}', series)
    with pytest.raises(ValueError):
        parse("sum(rate(citywok_identify_total[5m])")


def test_dashboard_is_a_grafana_dashboard_with_unique_panels() -> None:
    from tests.chart.chartkit import dashboard

    d = dashboard()
    assert d["uid"] == "citywok" and d["title"] == "CityWok" and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert [t["refId"] for t in p["targets"]] == [chr(65 + i) for i in range(len(p["targets"]))]


def test_every_dashboard_query_parses_and_uses_exported_series(series) -> None:
    parts = exported_series()
    used: set[str] = set()
    for title, target in dashboard_targets():
        used |= check_query(target["expr"], series)
        q = parse(target["expr"])
        for label in LEGEND_LABEL.findall(target.get("legendFormat", "")):
            assert label in q.grouping, f"{title}: legend {{{{{label}}}}} is not kept by the query"
    for var in ("namespace", "fingerprintdb"):
        query = next(v for v in dashboard_template_vars() if v["name"] == var)["definition"]
        inner = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        assert inner and inner.group(2) in TARGET_LABELS
        used |= check_query(inner.group(1), series)
    for part, names in parts.items():
        assert used & set(names), f"the dashboard shows nothing from the {part}"


def dashboard_template_vars() -> list[dict]:
    from tests.chart.chartkit import dashboard

    return [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]


def test_dashboard_covers_what_operators_look_at() -> None:
    exprs = " ".join(t["expr"] for _, t in dashboard_targets())
    for needle in ("citywok_identify_total", "histogram_quantile(0.99", 'outcome="match"', "status=~\"4..|5..\"",
                   'outcome=~"client_error|server_error|refused"', "citywok_db_info",
                   "citywok_fingerprintdb_ready_replicas", "citywok_fingerprintdb_progressing",
                   "citywok_fetcher_downloaded_bytes_total", "citywok_fetcher_verify_failures_total",
                   "citywok_operator_reconciles_total", "citywok_identify_workers_lost_total", "citywok_build_info",
                   "process_resident_memory_bytes", "process_cpu_seconds_total", "up{"):
        assert needle in exprs, needle
    # 429s once: as the identify outcome "refused", not also as an HTTP status or the rejected counter.
    assert "citywok_identify_rejected_total" not in exprs
    assert 'route="/api/v1/identify"' not in next(t["expr"] for title, t in dashboard_targets()
                                                  if title == "Errors and refusals" and "http_requests" in t["expr"])


def test_operator_panels_follow_the_namespace_and_fingerprintdb_filters(series) -> None:
    for title, target in dashboard_targets():
        for name, labels in parse(target["expr"]).selectors:
            if name.startswith(("citywok_operator_", "citywok_fingerprintdb_")):
                assert {"namespace", "name"} <= labels, f"{title}: {name} ignores the filters"
                assert {"namespace", "name"} <= series[name], name


@pytest.mark.go
def test_every_alert_parses_uses_exported_series_and_names_kept_labels(series) -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert {"CityWokHighErrorRate", "CityWokIdentifyLatencyHigh", "CityWokFingerprintDBDegraded",
            "CityWokVerifyFailures", "CityWokMixedVersions", "CityWokTargetDown", "CityWokOperatorDown",
            "CityWokMatchRateDrop", "CityWokWorkersLost", "CityWokFingerprintDBStuckProgressing"} <= names
    for r in rules:
        check_query(r["expr"], series)
        q = parse(r["expr"])
        if "for" in r:
            assert promql_parser.parse_duration(r["for"]).total_seconds() > 0, r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["labels"]["team"] == "audio", "extraLabels reach every alert"
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert r["annotations"]["runbook_url"] == f"{RUNBOOKS_URL}#{r['alert'].lower()}", r["alert"]
        for label in ALERT_LABEL.findall(r["annotations"]["description"]):
            assert label in q.grouping, f"{r['alert']}: $labels.{label} is dropped by the expression"


@pytest.mark.go
def test_alert_thresholds_come_from_values() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert rules["CityWokHighErrorRate"]["expr"].rstrip().endswith("> 0.05")
    assert rules["CityWokMixedVersions"]["for"] == "30m"
    tuned = one(render(values=[FULL_VALUES], sets={"metrics.prometheusRule.thresholds.p99LatencySeconds": 0.5,
                                                   "metrics.prometheusRule.thresholds.mixedVersionsFor": "1h"}),
                "PrometheusRule")
    tuned_rules = {r["alert"]: r for g in tuned["spec"]["groups"] for r in g["rules"]}
    assert tuned_rules["CityWokIdentifyLatencyHigh"]["expr"].rstrip().endswith("> 0.5")
    assert tuned_rules["CityWokMixedVersions"]["for"] == "1h"


def runbook_sections() -> dict[str, str]:
    """docs/runbooks.md: `## AlertName` heading -> the text of its section."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    parts = re.split(r"^## (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.go
def test_every_alert_has_a_runbook_section_that_says_what_to_check_and_do() -> None:
    sections = runbook_sections()
    alerts = {r["alert"] for r in alert_rules()}
    assert alerts == set(sections), f"no runbook: {alerts - set(sections)}; no alert: {set(sections) - alerts}"
    for alert, body in sections.items():
        for heading in RUNBOOK_SECTIONS:
            part = re.search(rf"^\*\*{heading}:?\*\*(.*?)(?=^\*\*|\Z)", body, flags=re.M | re.S)
            assert part and len(part.group(1).split()) >= 8, f"{alert}: '{heading}' missing or empty"


@pytest.mark.go
def test_match_rate_alert_compares_against_its_own_earlier_rate() -> None:
    rule = next(r for r in alert_rules() if r["alert"] == "CityWokMatchRateDrop")
    q = parse(rule["expr"])
    assert [n for n, _ in q.selectors].count("citywok_identify_total") >= 4
    assert "offset 30m" in rule["expr"] and "[1d]" in rule["expr"] and "< 0.7 *" in rule["expr"]


def test_real_exposition_has_build_info_process_series_and_no_created() -> None:
    """The text each part serves on /metrics (the matcher's registry, the fetcher's and operator's default)."""
    import citywok.fetcher.metrics  # noqa: F401
    import citywok.operator.metrics  # noqa: F401
    from citywok.matcher.service.metrics import Metrics
    from prometheus_client import REGISTRY, generate_latest

    from citywok.buildinfo import labels

    build = labels()
    for text in (Metrics().render().decode(), generate_latest(REGISTRY).decode()):
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert not [ln for ln in samples if "_created" in ln.split("{")[0]]
        assert f'citywok_build_info{{revision="{build["revision"]}",version="{build["version"]}"}} 1.0' in samples
        assert any(ln.startswith("process_resident_memory_bytes ") for ln in samples)
