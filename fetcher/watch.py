"""Sidecar mode: follow the desired version, fetch each new one beside the served one, flip when verified.

The desired version comes from a file (a mounted ConfigMap key, re-read every poll) or is fixed
(flag or DB_VERSION). A failing version is retried with growing pauses while the old one keeps serving,
and the failure is reported until a fetch succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from citywok.fetcher import metrics
from citywok.fetcher.report import Reporter, Status

from citywok import layout

log = logging.getLogger(__name__)
MAX_BACKOFF = 600.0


class DesiredVersion:
    """Reads the desired version from a file when given one, else returns the fixed value."""

    def __init__(self, path: Path | None, fixed: str | None) -> None:
        self.path, self.fixed = path, fixed

    def __call__(self) -> str:
        if self.path is None:
            if not self.fixed:
                raise ValueError("no desired version: pass --db-version, --version-file or set DB_VERSION")
            return layout.check_version(self.fixed)
        try:
            text = self.path.read_text().strip()
        except OSError as e:
            raise ValueError(f"cannot read the desired version from {self.path}: {e.strerror}") from None
        if not text:
            raise ValueError(f"{self.path} is empty: no desired version")
        return layout.check_version(text)


@dataclass
class Follower:
    """One poll = read the desired version, fetch it if it is not served, report the outcome."""

    fetch: Callable[[str], object]
    desired: Callable[[], str]
    data_dir: Path
    reporter: Reporter
    poll: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _failed: str | None = field(default=None, init=False)
    _failures: int = field(default=0, init=False)
    _retry_at: float = field(default=0.0, init=False)
    _error: str | None = field(default=None, init=False)

    def step(self) -> Status:
        served = layout.current_version(self.data_dir)
        try:
            want = self.desired()
        except (ValueError, layout.LayoutError) as e:
            return self._report(Status(served, None, str(e)))
        metrics.set_info(metrics.DESIRED, want)
        if want == served and layout.is_complete(layout.version_dir(self.data_dir, want)):
            self._failed, self._failures, self._error = None, 0, None
            return self._report(Status(served, want, None))
        if want == self._failed and self.clock() < self._retry_at:
            return self._report(Status(served, want, self._error))
        log.info("fetching %s (serving %s)", want, served or "nothing")
        try:
            self.fetch(want)
        except Exception as e:  # any failure: keep serving the old version, say why, retry later
            self._failures = self._failures + 1 if want == self._failed else 1
            self._failed = want
            self._error = f"{want}: {e}"
            backoff = min(MAX_BACKOFF, self.poll * 2 ** (self._failures - 1))
            self._retry_at = self.clock() + backoff
            log.error("fetch of %s failed (retry in %.0fs): %s", want, backoff, e)
            return self._report(Status(layout.current_version(self.data_dir), want, self._error))
        self._failed, self._failures, self._error = None, 0, None
        return self._report(Status(layout.current_version(self.data_dir), want, None))

    def _report(self, status: Status) -> Status:
        metrics.set_info(metrics.SERVED, status.served)
        metrics.FETCH_ERROR.set(1 if status.error else 0)
        self.reporter.report(status)
        return status

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.poll)
