"""The `k8s` fixture: one real Kubernetes control plane (tests/k8s/testbed.py) per test session.

Tests that use it are marked `@pytest.mark.k8s`. The binaries are built (or found in the cache) by
hack/k8s-testenv.sh once collection is done, before any test runs, so a cold build is not counted
against a test's timeout. A missing toolchain makes those tests fail with the script's message:
they are never skipped.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.testbed import TestBed, TestBedError, build_binaries

_BIN_DIR = pytest.StashKey[Path | TestBedError]()
_STARTED = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the test-bed binaries up front when a selected test needs the cluster.

    After collection, so `-m "not k8s"` and `-k` deselections are already applied.
    """
    config = session.config
    if config.option.collectonly or not any(item.get_closest_marker("k8s") for item in session.items):
        return
    try:
        config.stash[_BIN_DIR] = build_binaries()
    except TestBedError as exc:
        config.stash[_BIN_DIR] = exc


@pytest.fixture(scope="session")
def k8s(request: pytest.FixtureRequest) -> Iterator[TestBed]:
    """A running control plane with Ready fake nodes: `.kubectl()`, `.kubeconfig`, `.server`, `.env`."""
    failure = ""
    try:
        bin_dir = request.config.stash.get(_BIN_DIR, None) or build_binaries()
        if isinstance(bin_dir, TestBedError):
            raise bin_dir
        bed = TestBed(bin_dir)
        atexit.register(bed.stop)  # also on KeyboardInterrupt or an aborted session
        bed.start()
    except TestBedError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(f"Kubernetes test bed unavailable: {failure}", pytrace=False)
    started = f"Kubernetes test bed ready at {bed.server} in {bed.startup_seconds:.1f} s"
    request.config.stash[_STARTED] = started
    try:
        yield bed
    finally:
        bed.stop()
        atexit.unregister(bed.stop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print how long the control plane took to start, for CI logs."""
    if _STARTED in config.stash:
        terminalreporter.write_line(config.stash[_STARTED])
