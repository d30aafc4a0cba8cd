"""Helpers for the chart tests: the pinned tools (hack/tools.sh) and `helm template` as parsed objects."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "citywok"
FULL_VALUES = Path(__file__).with_name("values-full.yaml")
KUBE_VERSION = dict(
    line.split("=", 1) for line in (ROOT / "hack/k8s/versions.env").read_text().splitlines()
    if line and not line.startswith("#")
)["K8S_VERSION"].lstrip("v")
MONITORING = "monitoring.coreos.com/v1"
RELEASE, NAMESPACE = "cw", "citywok"

Obj = dict[str, Any]


class ToolError(AssertionError):
    """A tool could not be built or failed: the message says which and why."""


@functools.cache
def tool(name: str) -> Path:
    """Path to a pinned tool, built by hack/tools.sh on first use (fails clearly without Go)."""
    proc = subprocess.run(["bash", str(ROOT / "hack/tools.sh"), name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolError(f"hack/tools.sh {name} failed:\n{proc.stderr[-3000:]}")
    path = Path(proc.stdout.strip().splitlines()[-1]) / name
    if not path.exists():
        raise ToolError(f"hack/tools.sh did not produce {path}")
    return path


def run(args: list[str | Path], *, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, input=stdin)
    if check and proc.returncode != 0:
        raise ToolError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def helm_args(values: list[Path] = (), sets: dict[str, Any] | None = None,
              api_versions: list[str] = (), crds: bool = False) -> list[str | Path]:
    args: list[str | Path] = [tool("helm"), "template", RELEASE, CHART, "--namespace", NAMESPACE,
                              "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", v]
    for key, value in (sets or {}).items():  # str: helm's --set typing; anything else: exactly that JSON
        if isinstance(value, str) and not value.startswith(("{", "[")):
            args += ["--set", f"{key}={value}"]
        else:
            args += ["--set-json", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    for api in api_versions:
        args += ["--api-versions", api]
    if crds:
        args.append("--include-crds")
    return args


def render_text(**kw: Any) -> str:
    return run(helm_args(**kw)).stdout


def render(**kw: Any) -> list[Obj]:
    """`helm template` with these values, as a list of objects."""
    return [d for d in yaml.safe_load_all(render_text(**kw)) if d]


def render_error(**kw: Any) -> str:
    """`helm template` that must fail: its error output."""
    proc = run(helm_args(**kw), check=False)
    assert proc.returncode != 0, f"helm template accepted {kw}"
    return proc.stderr


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def dashboard() -> Obj:
    return json.loads((CHART / "dashboards" / "citywok.json").read_text())
