"""A version name is one rule, citywok.layout.VERSION_RE: the CRD and the chart's values schema, which
cannot import it, must spell the same pattern (the chart's CRD copy is checked against crds/ elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from citywok.operator.spec import SpecError, parse

from citywok import layout

ROOT = Path(__file__).resolve().parents[2]


def test_the_crd_and_the_values_schema_spell_the_layouts_version_pattern() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "fingerprintdb.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["version"]["pattern"] == layout.VERSION_RE.pattern
    schema = json.loads((ROOT / "charts" / "citywok" / "values.schema.json").read_text())
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "version" in node.get("properties", {}):
                found.append(node["properties"]["version"].get("pattern"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found and set(found) == {layout.VERSION_RE.pattern}, found


@pytest.mark.parametrize("version", ["-v1", "a/b", "x" * 64, "current"])
def test_the_operator_refuses_what_the_layout_refuses(version: str) -> None:
    with pytest.raises(SpecError, match="not a valid version name"):
        parse("db", "tv", {"version": version, "source": {"bucket": "b"}})
    if version != "current":
        assert not layout.VERSION_RE.match(version)
