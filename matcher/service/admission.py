"""Admission control for identify: a bounded queue, and a bound on how long a new job would wait.

A count bound alone lets the wait grow when each job gets slower (a starved CPU, a larger library);
the wait bound uses a moving average of recent job times, so overload is refused with 429 at once
instead of being answered late.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from citywok.errors import RETRY_SOON, CityWokError


class Overloaded(CityWokError):
    """No room: answered 429 with Retry-After."""

    status = 429
    code = "overloaded"
    headers = RETRY_SOON

    def __init__(self, message: str = "the server is at capacity; retry in a moment") -> None:
        super().__init__(message)


class Admission:
    """``workers`` jobs run at once, at most ``queue`` more wait, none expected to wait over ``max_wait`` s.

    Used from one thread (the event loop), so it needs no lock.
    """

    def __init__(self, workers: int, queue: int, max_wait: float | None = None, smoothing: float = 0.2) -> None:
        self.workers = workers
        self.limit = workers + queue
        self.max_wait = max_wait
        self.smoothing = smoothing
        self.admitted = 0
        self.job_seconds = 0.0  # moving average of recent job times; 0 until the first one

    def expected_wait(self) -> float:
        """Seconds a job admitted now would wait for a worker (0 while one is free)."""
        ahead = self.admitted - self.workers + 1
        return max(0, ahead) * self.job_seconds / self.workers

    @property
    def full(self) -> bool:
        if self.admitted >= self.limit:
            return True
        return self.max_wait is not None and self.expected_wait() > self.max_wait

    def record(self, seconds: float) -> None:
        """A job took ``seconds`` of worker time."""
        a = self.smoothing
        self.job_seconds = seconds if self.job_seconds == 0 else (1 - a) * self.job_seconds + a * seconds

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.full:
            raise Overloaded()
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1
