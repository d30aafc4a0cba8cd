"""One installed package, `citywok`, and no folder of the repository shadowing the standard library."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-P", "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("citywok-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"citywok"}
    for expected in ("citywok/matcher/engine/identify.py", "citywok/matcher/service/static/index.html",
                     "citywok/fetcher/sync.py", "citywok/operator/handlers.py", "citywok/py.typed"):
        assert expected in names, expected
    assert not any(n.startswith(("bench/", "citywok/bench/")) for n in names)


def test_python_started_in_the_repository_root_needs_no_safe_path() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    code = "import operator; operator.eq; import citywok.operator.spec, citywok.matcher.service.server"
    for args in (["-c", code], ["-m", "citywok", "--help"]):
        r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
