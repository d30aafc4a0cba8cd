"""`make demo` on a fresh checkout: quiet, and installs only what the demo needs."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_make_demo_is_quiet_and_lean(tmp_path: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(tmp_path / "src.tar", "w") as tar:
        for f in files:
            if (ROOT / f).is_file():
                tar.add(ROOT / f, arcname=f)
    checkout = tmp_path / "checkout"
    with tarfile.open(tmp_path / "src.tar") as tar:
        tar.extractall(checkout, filter="data")
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "DATA_DIR", "PYTHONSAFEPATH"}}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    r = subprocess.run(["make", "demo"], cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Warning" not in out and "!!" not in out and "****" not in out, out
    assert 'S01E03 "Kitchen Fire", season 1, at 0:42.00' in r.stdout
    site = next((checkout / ".venv" / "lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert "citywok" in installed and not installed & {"pytest", "moto", "audfprint2", "ruff"}, installed
