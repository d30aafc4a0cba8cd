"""`citywok operator` refuses what it cannot run with, in one line (no cluster needed to be refused)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def citywok() -> list[str]:
    """The installed `citywok` command of this interpreter (its module form where none is installed)."""
    script = shutil.which("citywok", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "citywok.operator"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    argv = [*citywok(), "operator", "--standalone", "--metrics-port", "0", "--liveness", "", *args]
    if argv[1] == "-m":
        argv.remove("operator")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_missing_kubeconfig(tmp_path: Path) -> None:
    r = run("--kubeconfig", str(tmp_path / "nope.kubeconfig"))
    assert r.returncode == 1
    assert r.stderr.startswith("citywok operator: cannot reach the Kubernetes API")
    assert "Traceback" not in r.stderr


def test_unreachable_server(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    r = run("--kubeconfig", str(kc))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "cannot reach the Kubernetes API" in r.stderr and "Traceback" not in r.stderr


def test_bad_resync() -> None:
    r = run("--resync", "0")
    assert r.returncode == 1 and "--resync must be a positive" in r.stderr
