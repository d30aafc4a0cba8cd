"""The CI workflow: actionlint (pinned, built by hack/tools.sh; fails with the script's message when Go
is missing), every action pinned by full commit SHA, and publishing only on version tags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.chart.chartkit import ROOT, run, tool

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")
# Deterministic on every machine: shellcheck/pyflakes integration off here (CI's lint job runs
# actionlint with them, as GitHub's runners have shellcheck).
ACTIONLINT_FLAGS = ["-no-color", "-shellcheck=", "-pyflakes="]


def actionlint(paths: list[Path]):
    return run([tool("actionlint"), *ACTIONLINT_FLAGS, *paths], check=False)


@pytest.mark.go
def test_actionlint_passes_on_every_workflow() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = actionlint(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.go
def test_actionlint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.nope_not_a_field }}\n      - uses: actions/checkout\n")
    proc = actionlint([bad])
    assert proc.returncode == 1, proc.stdout
    assert "nope_not_a_field" in proc.stdout and "actions/checkout" in proc.stdout


def steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(name, s) for name, job in workflow["jobs"].items() for s in job.get("steps", [])]


def test_every_action_is_pinned_by_commit_sha_with_its_tag() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        for job, step in steps(yaml.safe_load(text)):
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{path.name}/{job}: {step['uses']} is not pinned by full SHA"
                assert re.search(re.escape(step["uses"]) + r" # v\d+\.\d+\.\d+", text), \
                    f"{step['uses']}: say which release the SHA is, as '# vX.Y.Z'"


def test_publishing_happens_only_on_version_tags_with_least_privilege() -> None:
    wf = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*.*.*"]
    assert wf["permissions"] == {"contents": "read"}
    for name, job in wf["jobs"].items():
        writes = job.get("permissions", {}).get("packages") == "write"
        assert writes == (name in {"image", "chart"}), name
    image = {s.get("uses", "").split("@")[0]: s for s in wf["jobs"]["image"]["steps"]}
    assert image["docker/build-push-action"]["with"]["push"] == "${{ github.ref_type == 'tag' }}"
    assert image["docker/login-action"]["if"] == "github.ref_type == 'tag'"
    assert wf["jobs"]["chart"]["if"] == "github.ref_type == 'tag'"
    assert '/helm" push' in wf["jobs"]["chart"]["steps"][-1]["run"]
    assert "make test" in [s.get("run") for s in wf["jobs"]["test"]["steps"]]
