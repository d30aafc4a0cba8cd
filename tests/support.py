"""Helpers every part of the suite shares: a free loopback port, polling for a condition instead of
sleeping a fixed time, a private copy of a built data folder, and reading one value of a /metrics page."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T], timeout: float = 60.0, what: str = "the condition",
             interval: float = 0.1, detail: Callable[[], str] | None = None) -> T:
    """Call ``check`` until it returns something true, and return that; fail the test after ``timeout``
    seconds, saying what was awaited, the last value, and ``detail()`` (a log tail, say) when given."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def private_copy(built: Path, dest: Path) -> Path:
    """A copy of a session- or module-wide built folder that one test may write into (links kept)."""
    shutil.copytree(built, dest, symlinks=True)
    return dest


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels`` on a Prometheus text page; None if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None
