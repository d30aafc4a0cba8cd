"""Regenerate the values table of charts/citywok/README.md from values.schema.json (and the defaults
in values.yaml), between the README's `<!-- values:begin -->` and `<!-- values:end -->` markers.

    python hack/chart-readme.py           # rewrite the table
    python hack/chart-readme.py --check   # exit 1, with a diff, when the README is out of date

The schema is the one source: every key the chart accepts is a row, its description is the schema's
`description`, its type and allowed values the schema's, its default what values.yaml sets.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "citywok"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"


def _type(node: dict[str, Any]) -> str:
    t = node.get("type", "any")
    text = " or ".join(t) if isinstance(t, list) else t
    if "enum" in node:
        text += ": " + ", ".join(f"`{v}`" for v in node["enum"])
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _default(values: Any, path: list[str]) -> str:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return ""
        values = values[key]
    return f"`{json.dumps(values, separators=(', ', ': '))}`"


def rows(schema: dict[str, Any], values: dict[str, Any], path: list[str] | None = None) -> list[str]:
    """One table row per leaf key (objects with listed properties are walked, maps and lists are leaves)."""
    path = path or []
    out = []
    for key, node in schema.get("properties", {}).items():
        here = [*path, key]
        if node.get("type") == "object" and node.get("properties"):
            if node.get("description"):
                out.append(f"| `{'.'.join(here)}` | object |  | {_cell(node['description'])} |")
            out.extend(rows(node, values, here))
            continue
        out.append(f"| `{'.'.join(here)}` | {_cell(_type(node))} | {_cell(_default(values, here))} | "
                   f"{_cell(node.get('description', ''))} |")
    return out


def table(chart: Path = CHART) -> str:
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text())
    head = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    return "\n".join(head + rows(schema, values))


def render(readme: str, chart: Path = CHART) -> str:
    """The README with its values table replaced by the one the schema gives."""
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {BEGIN} / {END} markers")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return f"{before}{BEGIN}\n{table(chart)}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report whether the README is up to date")
    args = p.parse_args(argv)
    path = CHART / "README.md"
    old = path.read_text()
    new = render(old)
    if args.check:
        if old != new:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       "README.md", "README.md (from values.schema.json)"))
            print("charts/citywok/README.md is out of date: run python hack/chart-readme.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
