"""The operator's RBAC covers every child it applies (a missing verb only shows up in a cluster)."""

from __future__ import annotations

from pathlib import Path

import yaml
from citywok.operator import desired, kube
from citywok.operator.handlers import CHILD_RESOURCES

from tests.operator.test_desired import OWNER, spec

RBAC = Path(__file__).parents[2] / "operator" / "rbac.yaml"


def allowed(rules: list[dict], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_rbac_covers_children_pods_and_status() -> None:
    rules = yaml.safe_load(RBAC.read_text())["rules"]
    for child in desired.children(spec(), "v1", OWNER):
        prefix, plural = kube.CHILD_PATHS[child["kind"]]
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert {"get", "list", "watch", "create", "patch"} <= allowed(rules, group, plural), child["kind"]
    for res in CHILD_RESOURCES:
        group = "" if len(res) == 2 else res[0]
        assert {"list", "watch"} <= allowed(rules, group, res[-1]), res
    assert "patch" in allowed(rules, "citywok.io", "fingerprintdbs/status")
    assert {"get", "patch"} <= allowed(rules, "", "pods"), "needed to grant the fetcher's Role"
    assert "create" in allowed(rules, "", "events")
