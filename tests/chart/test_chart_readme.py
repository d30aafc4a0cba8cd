"""The chart's README: its values table is generated from values.schema.json and kept current; the icon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.chart.chartkit import CHART, ROOT

SCRIPT = ROOT / "hack" / "chart-readme.py"


def leaf_keys(schema: dict, path: tuple[str, ...] = ()) -> list[str]:
    out = []
    for key, node in schema.get("properties", {}).items():
        if node.get("type") == "object" and node.get("properties"):
            out += leaf_keys(node, (*path, key))
        else:
            out.append(".".join((*path, key)))
    return out


def check(chart: Path) -> subprocess.CompletedProcess:
    code = ("import runpy, sys, pathlib; m = runpy.run_path(sys.argv[1]); m['CHART'] = pathlib.Path(sys.argv[2]); "
            "old = (m['CHART'] / 'README.md').read_text(); sys.exit(old != m['render'](old, m['CHART']))")
    return subprocess.run([sys.executable, "-c", code, str(SCRIPT), str(chart)], capture_output=True, text=True)


def test_readme_values_table_is_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stderr}\n{proc.stdout[-2000:]}"


def test_every_schema_key_is_a_row_with_its_default_and_description() -> None:
    readme = (CHART / "README.md").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    for key in leaf_keys(schema):
        assert f"| `{key}` |" in readme, key
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f"| `operator.replicas` | integer | `{values['operator']['replicas']}` |" in readme
    desc = schema["properties"]["fingerprintDB"]["properties"]["podTemplate"]["properties"]["imagePullSecrets"]
    assert desc["description"] in readme


def test_a_schema_change_makes_the_readme_stale(tmp_path: Path) -> None:
    chart = tmp_path / "citywok"
    shutil.copytree(CHART, chart)
    assert check(chart).returncode == 0
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"]["tests"]["properties"]["timeoutSeconds"]["description"] = "A new description."
    (chart / "values.schema.json").write_text(json.dumps(schema))
    assert check(chart).returncode == 1


def test_chart_has_an_icon_that_is_an_svg_shipped_with_it() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["icon"].endswith("/charts/citywok/icon.svg") and meta["icon"].startswith("https://")
    root = ET.parse(CHART / "icon.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 128 128"
