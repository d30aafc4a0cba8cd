"""The Dockerfile, read with dockerfile-parse (Docker cannot run here: the image is NOT built by these
tests). What can be checked without a daemon is: its structure, the commands it embeds (run for real
here), and that it agrees with the pods the operator and the chart create."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.chart.chartkit import ROOT, render
from tests.support import free_port

DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def stages(parsed: DockerfileParser) -> list[list[dict]]:
    out: list[list[dict]] = []
    for ins in parsed.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def instructions(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_slim_python_311_base_two_stages(parsed) -> None:
    base = next(i["value"] for i in parsed.structure if i["instruction"] == "ARG" and "PYTHON_IMAGE" in i["value"])
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base)
    build, runtime = stages(parsed)
    assert instructions(build, "FROM") == ["${PYTHON_IMAGE} AS build"]
    assert instructions(runtime, "FROM") == ["${PYTHON_IMAGE}"]
    assert any("--from=build /opt/citywok" in c for c in instructions(runtime, "COPY"))


def test_runtime_is_non_root_read_only_friendly_and_has_no_ffmpeg(parsed) -> None:
    runtime = stages(parsed)[-1]
    assert instructions(runtime, "USER") == ["10001:10001"]
    assert json.loads(instructions(runtime, "VOLUME")[0]) == ["/data", "/tmp"]
    assert parsed.envs["DATA_DIR"] == "/data" and parsed.envs["TMPDIR"] == "/tmp" and parsed.envs["HOME"] == "/tmp"
    assert parsed.envs["PYTHONDONTWRITEBYTECODE"] == "1", "nothing is written beside the code at run time"
    assert json.loads(instructions(runtime, "ENTRYPOINT")[0]) == ["citywok"]
    assert instructions(runtime, "HEALTHCHECK")
    runs = " ".join(i["value"] for i in parsed.structure if i["instruction"] == "RUN")
    assert "ffmpeg" not in runs and "apt-get install" not in runs, "PyAV's wheel ships FFmpeg's libraries"
    assert "--only-binary=:all:" in runs, "every dependency from a wheel: no compilers in the image"


@pytest.mark.go
def test_image_user_and_paths_match_the_pods(parsed) -> None:
    from citywok.operator import desired
    from citywok.operator.spec import parse

    spec = parse("fp", "ns", {"version": "v1", "source": {"bucket": "abc"}})
    pod = desired.pod_template(spec, "v1")["spec"]
    uid, gid = instructions(stages(parsed)[-1], "USER")[0].split(":")
    assert pod["securityContext"]["runAsUser"] == int(uid) and pod["securityContext"]["runAsGroup"] == int(gid)
    assert parsed.envs["DATA_DIR"] == desired.DATA_DIR
    assert int(parsed.envs["PORT"]) == desired.HTTP_PORT
    op = next(o for o in render() if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert op["securityContext"]["runAsUser"] == int(uid)
    assert op["containers"][0]["command"] == json.loads(instructions(stages(parsed)[-1], "ENTRYPOINT")[0])


def test_requirements_step_installs_exactly_the_pinned_dependencies(parsed, tmp_path: Path) -> None:
    """The Python snippet that turns pyproject.toml into requirements, run as the build would run it."""
    run = next(i["value"] for i in parsed.structure if i["instruction"] == "RUN" and "tomllib" in i["value"])
    code = shlex.split(run.split(">", 1)[0])[2]
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extras, expected in (("", project["dependencies"]),
                             ("sentry", project["dependencies"] + project["optional-dependencies"]["sentry"])):
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "EXTRAS": extras}, check=True).stdout
        assert out.split() == expected
    assert all(re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[0-9][0-9A-Za-z.]*", d) for d in project["dependencies"]), \
        "every runtime dependency pinned with =="


def test_dockerignore_lets_in_exactly_what_the_copies_need(parsed) -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for p in patterns:
            neg = p.startswith("!")
            pat = p[1:].rstrip("/") if neg else p.rstrip("/")
            if fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = neg
        return keep

    sources = [src for c in instructions(stages(parsed)[0], "COPY") for src in c.split()[:-1]]
    # the folders pyproject.toml maps into the one `citywok` package; the benchmarks are not installed
    assert sources == ["pyproject.toml", "README.md", "citywok", "matcher", "fetcher", "operator"]
    for src in sources:
        assert (ROOT / src).exists(), src
        assert included(src), f"{src} is excluded by .dockerignore"
    for outside in ("tests", ".git", "data", ".venv", "charts"):
        assert not included(outside), f"{outside} would be sent to the build"


def test_healthcheck_command_passes_on_a_live_matcher_and_fails_without_one(parsed, tmp_path: Path) -> None:
    """The HEALTHCHECK's own command, run against a real `citywok serve` (empty data dir)."""
    hc = next(i["value"] for i in parsed.structure if i["instruction"] == "HEALTHCHECK")
    cmd = json.loads(hc[hc.index("CMD") + 3:].strip())
    assert cmd[0] == "python"
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "HOST": "127.0.0.1", "PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "citywok", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        check = [sys.executable, *cmd[1:]]
        url = {**os.environ, "CITYWOK_HEALTH_URL": f"http://127.0.0.1:{port}/healthz"}
        deadline = time.monotonic() + 30
        while subprocess.run(check, env=url, capture_output=True).returncode != 0:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the matcher never answered /healthz"
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=20)
    down = {**os.environ, "CITYWOK_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}
    assert subprocess.run(check, env=down, capture_output=True).returncode != 0


def test_image_records_its_revision_for_build_info(parsed) -> None:
    """citywok_build_info{revision} reads CITYWOK_REVISION, which the image sets from its REVISION build arg."""
    from citywok.buildinfo import REVISION_ENV

    runtime = stages(parsed)[-1]
    assert "REVISION=unknown" in instructions(runtime, "ARG")
    assert parsed.envs[REVISION_ENV] == "unknown", "the ENV takes the build arg (its default here)"
